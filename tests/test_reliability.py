"""Reliability: preemption and exact resumption, numerical faults, damaged and
incompatible checkpoints, an unusable workdir."""

import logging
import os
from pathlib import Path
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboardX.proto import event_pb2

import helpers
from cmsa_jax import errors
from cmsa_jax.data import input_pipeline
from cmsa_jax.run import checkpoints
from cmsa_jax.run import dataset
from cmsa_jax.run import evaluate
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import train

ROOT = Path(__file__).resolve().parent.parent

# A config file for main.py: the tiny test config, a loss logged every step, no
# periodic checkpoint (only the one a signal asks for and the last).
_CONFIG = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    import helpers

    def get_config():
      config = helpers.make_tiny_config()
      config.num_train_steps = {steps}
      config.log_every_steps = 1
      config.checkpoint_every_steps = 1000
      return config
''')
_STEPS = 30
_LOGGED_STEP = re.compile(r'\] \[(\d+)\] ')


def scalars(workdir, tag):
  """{step: [values]} of a scalar in the TensorBoard event files of `workdir`."""
  values = {}
  for path in sorted(Path(workdir).glob('events.out.tfevents.*')):
    data, i = path.read_bytes(), 0
    while i < len(data):  # TFRecord framing: length, its CRC, the event, its CRC.
      (n,) = struct.unpack('<Q', data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
      i += 16 + n
      for value in event.summary.value:
        if value.tag == tag:
          values.setdefault(event.step, []).append(value.simple_value)
  return values


def _main(config_file, workdir):
  return [sys.executable, 'main.py', f'--config={config_file}', f'--workdir={workdir}']


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT))


def _run_interrupted(config_file, workdir, signum, at_step):
  """Runs main.py, sends `signum` once step `at_step` is logged; returns (rc, output)."""
  proc = subprocess.Popen(_main(config_file, workdir), cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  lines, sent = [], False
  for line in proc.stderr:
    lines.append(line)
    match = _LOGGED_STEP.search(line)
    if not sent and match and int(match.group(1)) >= at_step:
      proc.send_signal(signum)
      sent = True
  proc.wait(timeout=300)
  return proc.returncode, ''.join(lines)


@pytest.mark.slow  # Three training subprocesses.
def test_sigterm_saves_and_the_same_command_resumes_with_identical_losses(tmp_path):
  signum = signal.SIGTERM  # SIGINT takes the same path (test_preemption_flag_...).
  config_file = tmp_path / 'tiny.py'
  config_file.write_text(_CONFIG.format(tests=str(ROOT / 'tests'), steps=_STEPS))
  reference = subprocess.Popen(_main(config_file, tmp_path / 'reference'), cwd=ROOT, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  at_step = random.randint(2, _STEPS // 2)
  rc, output = _run_interrupted(config_file, tmp_path / 'run', signum, at_step)
  assert rc == 0, output[-3000:]
  stopped = re.search(rf'Stopped by {signum.name} at step (\d+): checkpoint saved', output)
  assert stopped, output[-3000:]
  stopped = int(stopped.group(1))
  assert at_step <= stopped < _STEPS, (at_step, stopped)
  assert checkpoints.checkpoint_step(str(tmp_path / 'run')) == stopped
  assert not (tmp_path / 'run' / 'eval').exists()  # Stopped before evaluating.

  again = subprocess.run(_main(config_file, tmp_path / 'run'), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'Resumed from checkpoint step {stopped}' in again.stderr
  _, reference_err = reference.communicate(timeout=300)
  assert reference.returncode == 0, reference_err[-3000:]

  expected, resumed = scalars(tmp_path / 'reference', 'loss'), scalars(tmp_path / 'run', 'loss')
  assert sorted(expected) == sorted(resumed) == list(range(1, _STEPS + 1))
  for step in range(1, _STEPS + 1):  # Each step logged once, with the uninterrupted loss.
    assert resumed[step] == expected[step], (step, stopped, resumed[step], expected[step])


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_preemption_flag_notes_the_signal_and_restores_the_handlers(signum):
  before = signal.getsignal(signum)
  with train.PreemptionFlag() as flag:
    assert flag.signal is None
    os.kill(os.getpid(), signum)
    assert flag.signal == signum.name
    if signum == signal.SIGINT:  # A second Ctrl-C stops at once.
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signum)
  assert signal.getsignal(signum) is before


class _InjectNaN:
  """Wraps train.model_batch: the target of the `at`-th batch becomes NaN."""

  def __init__(self, at):
    self.at, self.calls = at, 0
    self._model_batch = train.model_batch

  def __call__(self, batch, model_class):
    batch = self._model_batch(batch, model_class)
    self.calls += 1
    if self.calls == self.at:
      batch[model_class.target_key] = np.full_like(batch[model_class.target_key], np.nan)
    return batch


def _saved_state(workdir, step):
  with ocp.CheckpointManager(checkpoints.checkpoint_dir(workdir)) as mngr:
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state


@pytest.mark.slow  # Two short training runs.
def test_nonfinite_step_stops_naming_it_or_is_skipped_without_a_change(
    tiny_config, tmp_path, monkeypatch):
  tiny_config.num_train_steps, tiny_config.log_every_steps = 4, 1
  tiny_config.checkpoint_every_steps = 1
  # Stop: the error names the step and the last good checkpoint, which loads.
  monkeypatch.setattr(train, 'model_batch', _InjectNaN(at=3))
  stop_dir = str(tmp_path / 'stop')
  with pytest.raises(errors.NumericalError, match=r'at step 3 \(loss=nan.*checkpoints/2 '):
    train.train_and_evaluate(tiny_config, stop_dir)
  _, _, _, step = checkpoints.restore_model(stop_dir)
  assert step == 2
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(_saved_state(stop_dir, 2)))

  # Skip: step 3 changes no parameter and no optimizer state; it is counted.
  monkeypatch.setattr(train, 'model_batch', _InjectNaN(at=3))
  tiny_config.skip_nonfinite_steps = True
  skip_dir = str(tmp_path / 'skip')
  metrics = train.train_and_evaluate(tiny_config, skip_dir)
  assert np.isfinite(metrics['overall_iou'])
  states = {s: _saved_state(skip_dir, s) for s in (2, 3, 4)}
  for part in ('params', 'opt_state'):
    same = jax.tree.map(np.array_equal, states[2][part], states[3][part])
    assert all(jax.tree.leaves(same)), part
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, states[3]['params'],
                                              states[4]['params'])))
  assert scalars(skip_dir, 'skipped_nonfinite_steps') == {1: [0], 2: [0], 3: [1], 4: [1]}
  losses = {step: v for step, (v,) in scalars(skip_dir, 'loss').items()}
  assert [step for step, v in losses.items() if not np.isfinite(v)] == [3]


def _save_checkpoints(config, workdir, steps):
  """Checkpoints as training writes them, of a fresh state at `steps` (no training).

  Returns the state and the data iterator.
  """
  vocab = helpers.vocabulary(config, workdir)
  _, state, _ = state_lib.create_train_state(config, len(vocab))
  train_iter = input_pipeline.create_train_iterator(
      dataset.load_source(config, config.train_split), vocab, batch_size=config.batch_size,
      image_size=config.image_size, seed=config.seed)
  mngr = checkpoints.checkpoint_manager(config, workdir)
  for step in steps:
    mngr.save(step, args=checkpoints.checkpoint_items(state.replace(step=step), config, vocab,
                                                      train_iter), force=True)
  mngr.wait_until_finished()
  mngr.close()
  return state, train_iter


def _damage(workdir, step, how):
  """Truncates or overwrites every file of a checkpoint's train state."""
  for path in (Path(checkpoints.checkpoint_dir(workdir)) / str(step) / 'state').rglob('*'):
    if path.is_file():
      data = path.read_bytes()
      path.write_bytes(data[:len(data) // 2] if how == 'truncated' else b'\x00' * len(data))


@pytest.mark.parametrize('how', ['truncated', 'overwritten'])
def test_damaged_latest_checkpoint_warns_and_the_previous_one_is_used(
    tiny_config, tmp_path, caplog, how):
  workdir = str(tmp_path)
  state, train_iter = _save_checkpoints(tiny_config, workdir, [2, 4])
  _damage(workdir, 4, how)
  with caplog.at_level(logging.WARNING):
    _, _, _, step = checkpoints.restore_model(workdir)
  assert step == 2
  assert re.search(r'checkpoints/4 is damaged and is not used', caplog.text)

  # Resuming training also falls back, and moves the damaged one aside.
  mngr = checkpoints.checkpoint_manager(tiny_config, workdir)
  resumed = checkpoints.resume(mngr, workdir, state, train_iter)
  mngr.close()
  assert int(resumed.step) == 2
  assert (tmp_path / 'checkpoints_damaged' / '4').is_dir()
  assert checkpoints.checkpoint_step(workdir) == 2

  # Every checkpoint damaged: a clear error, not a traceback.
  _damage(workdir, 2, how)
  with pytest.raises(errors.NotFoundError, match='no readable checkpoint'):
    checkpoints.restore_model(workdir)


def test_incompatible_checkpoint_lists_the_mismatched_paths_and_shapes(tiny_config, tmp_path):
  _save_checkpoints(tiny_config, str(tmp_path), [2])
  tiny_config.model.text_args.dim = 24
  with pytest.raises(errors.ConfigError, match='different model config') as err:
    train.train_and_evaluate(tiny_config, str(tmp_path))
  message = str(err.value)
  assert re.search(r'params/embed/embedding: checkpoint \(\d+, 16\), config \(\d+, 24\)', message)
  assert 'optimizer-state arrays' in message  # Adam's moments of the same parameters.
  assert '\n' not in message


def test_checkpoint_of_another_text_encoder_is_a_one_line_error(tiny_config, tmp_path):
  _save_checkpoints(tiny_config, str(tmp_path), [2])
  tiny_config.model.text_encoder = 'bilstm'  # The checkpoint holds the paper's embedding.
  with pytest.raises(errors.ConfigError, match='different model config') as err:
    train.train_and_evaluate(tiny_config, str(tmp_path))
  message = str(err.value)
  assert '\n' not in message
  assert re.search(r'params/embed/forward/0/input/kernel: checkpoint absent, config \(16, 32\)',
                   message)


def test_unwritable_workdir_is_reported_before_training(tiny_config, tmp_path):
  (tmp_path / 'a_file').write_text('')
  with pytest.raises(errors.ConfigError, match='a_file/run is not writable'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'a_file' / 'run'))


def test_full_disk_is_reported_before_training(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(checkpoints.shutil, 'disk_usage',
                      lambda _: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
  monkeypatch.setattr(train, 'train_step', None)  # Training must not start.
  with pytest.raises(errors.ConfigError, match=r'has 1.0 MiB free; a checkpoint .* takes'):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  assert not list((tmp_path / 'checkpoints').iterdir())


def test_eval_names_the_checkpoint_step(tiny_config, tmp_path, caplog):
  _save_checkpoints(tiny_config, str(tmp_path), [3, 5])
  with caplog.at_level(logging.INFO):
    metrics = evaluate.evaluate(None, str(tmp_path), step=3)
  assert metrics['step'] == 3
  assert 'Using checkpoint step 3 of' in caplog.text
  with open(tmp_path / 'eval' / 'metrics.md') as f:
    assert ', step 3, ' in f.read()
