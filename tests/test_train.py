"""Training: sharded step == single-device step, checkpoints, resumption, learning."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
from PIL import Image
import pytest

import helpers
from cmsa_jax import models
from cmsa_jax.data import input_pipeline
from cmsa_jax.data import synthetic
from cmsa_jax.run import checkpoints
from cmsa_jax.run import dataset
from cmsa_jax.run import evaluate
from cmsa_jax.run import predict
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import train

pytestmark = pytest.mark.slow  # End to end: training runs and subprocesses.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SHARDED_SCRIPT = textwrap.dedent('''
    import functools, json
    import jax, numpy as np
    from configs import demo
    from cmsa_jax.run import state as state_lib, train
    config = demo.get_config()
    config.model.backbone_args.update(width=4, frozen=False)  # Every gradient goes through the mesh.
    config.backbone_init = ''  # The demo's pretrained file is for width 16.
    config.model.text_args.dim = config.model.attn_dim = config.model.fusion_dim = 16
    config.image_size = 32
    config.learning_rate = 2.5e-4  # The paper's.
    graphdef, state, tx = state_lib.create_train_state(config, vocab_size=30)
    rng = np.random.default_rng(0)
    batch = {'image': rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32),
             'tokens': rng.integers(2, 30, (8, 20)).astype(np.int32),
             'token_mask': np.arange(20)[None] < rng.integers(1, 21, (8, 1)),
             'mask': (rng.uniform(size=(8, 32, 32)) > 0.6).astype(np.float32)}
    step = functools.partial(train.train_step, graphdef=graphdef, tx=tx)
    single, m1 = jax.jit(step)(jax.device_put(state, jax.devices()[0]), batch)
    mesh = train.make_mesh()
    repl, data = train.shardings(mesh)
    sharded_step = jax.jit(step, in_shardings=(repl, data), out_shardings=(repl, repl))
    sharded, m8 = sharded_step(jax.device_put(state, repl), train.global_batch(batch, data))
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                                         single.params, sharded.params))
    print(json.dumps({'devices': jax.device_count(),
                      'batch_shards': len(train.global_batch(batch, data)['image'].addressable_shards),
                      'loss_single': float(m1['loss']), 'loss_sharded': float(m8['loss']),
                      'max_param_diff': max(diffs)}))
''')


def test_sharded_step_equals_single_device_step():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', _SHARDED_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r['devices'] == 8 and r['batch_shards'] == 8
  assert abs(r['loss_single'] - r['loss_sharded']) <= 1e-5
  assert r['max_param_diff'] <= 1e-5


def test_batch_size_must_divide_over_devices(tiny_config, tmp_path):
  tiny_config.batch_size = 0
  with pytest.raises(ValueError, match='batch_size=0 must be a positive multiple'):
    train.train_and_evaluate(tiny_config, str(tmp_path))


def test_few_demo_steps_lower_the_loss(tiny_config, tmp_path):
  tiny_config.learning_rate = 3e-3
  vocab = helpers.vocabulary(tiny_config, str(tmp_path))
  graphdef, state, tx = state_lib.create_train_state(tiny_config, len(vocab))
  it = input_pipeline.create_train_iterator(
      dataset.load_source(tiny_config, 'train'), vocab, batch_size=8, image_size=tiny_config.image_size, seed=0)
  batch = train.model_batch(next(it), state_lib.model_class(tiny_config))
  step = jax.jit(lambda s, b: train.train_step(s, b, graphdef=graphdef, tx=tx))
  losses = []
  for _ in range(15):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.8 * losses[0], losses


def _predictions(model, vocab, config):
  source = dataset.load_source(config, config.eval_split)
  batch = next(iter(input_pipeline.create_eval_iterator(
      source, vocab, batch_size=4, image_size=config.image_size)))
  return np.asarray(evaluate.predict_probabilities(model, models.inputs(model, batch)))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny model trained (and evaluated) for a few steps: (config, workdir, metrics)."""
  config = helpers.make_tiny_config()
  config.eval_every_steps = 2  # At step 2, then at the end (step 4).
  workdir = str(tmp_path_factory.mktemp('trained') / 'run')
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_checkpoint_restore_resume_and_eval(trained, tmp_path):
  tiny_config, workdir, metrics = trained
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:
    assert json.load(f)['overall_iou'] == pytest.approx(metrics['overall_iou'])
  with open(os.path.join(workdir, 'eval', 'metrics.md')) as f:
    assert 'CMSA by expression family' in f.read()
  # Synthetic expressions are also scored per family.
  families = {k for k in metrics if k.startswith('family_')}
  known = {f'family_{name}_{method}overall_iou' for name in synthetic.FAMILY_WEIGHTS
           for method in ('', 'baseline_all_objects_', 'baseline_largest_object_')}
  assert families and families <= known
  assert {k.replace('_baseline_all_objects', '') for k in families if 'all_objects' in k} == {
      k for k in families if 'baseline' not in k}

  # Save -> restore gives identical predictions, vocabulary and config.
  model, config, vocab, step = checkpoints.restore_model(workdir)
  assert step == tiny_config.num_train_steps
  assert config.model.backbone_args.width == tiny_config.model.backbone_args.width
  saved_vocab = helpers.vocabulary(tiny_config, workdir)  # Loads vocab.json.
  assert vocab.to_dict() == saved_vocab.to_dict()

  # --mode=eval reproduces the final metrics from the checkpoint alone.
  again = evaluate.evaluate(None, workdir)
  for k in ('overall_iou', 'mean_iou', 'prec@0.5', 'num_examples'):
    assert again[k] == metrics[k]

  # Killed after the step-2 checkpoint: resuming replays the same data and
  # reaches the same weights as the uninterrupted run.
  resumed_dir = tmp_path / 'resumed'
  shutil.copytree(workdir, resumed_dir)
  shutil.rmtree(resumed_dir / 'checkpoints' / str(tiny_config.num_train_steps))
  shutil.rmtree(resumed_dir / 'eval')
  train.train_and_evaluate(tiny_config, str(resumed_dir))
  resumed, *_ = checkpoints.restore_model(str(resumed_dir))
  np.testing.assert_allclose(_predictions(resumed, vocab, tiny_config),
                             _predictions(model, vocab, tiny_config), atol=1e-6)


def _paper_metrics(samples, prefix=''):
  """The paper's definitions (README "Metrics"), written out again for the check."""
  inter = [s[prefix + 'intersection'] for s in samples]
  union = [s[prefix + 'union'] for s in samples]
  ious = [i / u if u else 1.0 for i, u in zip(inter, union)]
  out = {'overall_iou': sum(inter) / sum(union), 'mean_iou': sum(ious) / len(ious),
         'num_examples': len(ious)}
  out.update({f'prec@{t}': sum(x >= t for x in ious) / len(ious)
              for t in (0.5, 0.6, 0.7, 0.8, 0.9)})
  return out


def test_metrics_json_is_recomputed_from_samples_jsonl(trained):
  _, workdir, metrics = trained
  with open(os.path.join(workdir, 'eval', 'samples.jsonl')) as f:
    samples = [json.loads(line) for line in f]
  assert [s['position'] for s in samples] == list(range(metrics['num_examples']))
  for s in samples:  # Each line is consistent in itself.
    assert s['union'] == s['pred_area'] + s['true_area'] - s['intersection']
    assert s['iou'] == (s['intersection'] / s['union'] if s['union'] else 1.0)
    assert s['expression'] and s['family'] in synthetic.FAMILY_WEIGHTS
  want = dict(_paper_metrics(samples), step=metrics['step'])
  baselines = ('all_objects', 'largest_object')
  for b in baselines:
    want[f'baseline_{b}_overall_iou'] = _paper_metrics(samples, f'baseline_{b}_')['overall_iou']
  for family in {s['family'] for s in samples}:
    members = [s for s in samples if s['family'] == family]
    want[f'family_{family}_overall_iou'] = _paper_metrics(members)['overall_iou']
    for b in baselines:
      want[f'family_{family}_baseline_{b}_overall_iou'] = _paper_metrics(
          members, f'baseline_{b}_')['overall_iou']
  assert metrics == pytest.approx(want, abs=1e-12)
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:
    assert json.load(f) == pytest.approx(want, abs=1e-12)


def test_evaluation_writes_legal_scalars_and_pictures_to_tensorboard(trained):
  _, workdir, metrics = trained
  events = b''.join(open(os.path.join(workdir, name), 'rb').read()
                    for name in os.listdir(workdir) if name.startswith('events.'))
  assert b'eval/prec_at_0.5' in events and b'prec@' not in events
  # config.eval_every_steps: steps 2 and 4 (and --mode=eval, if a test ran it before).
  evaluations = events.count(b'eval/overall_iou')
  assert evaluations >= 2
  for p in range(4):  # The same first held-out expressions, as pictures, at each evaluation.
    assert events.count(f'eval_pictures/{p}'.encode()) == evaluations


def test_predict_writes_pictures_for_any_image(trained, tmp_path):
  _, workdir, _ = trained
  for name, size, mode in (('photo.jpg', (45, 70), 'RGB'), ('gray.png', (33, 20), 'L')):
    path = tmp_path / name
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size + ((3,) if mode == 'RGB' else ()),
                                                      dtype=np.uint8), mode).save(path)
    out = predict.predict(None, workdir, str(path), 'the red circle', str(tmp_path / name[:-4]))
    assert sorted(out) == ['heatmap', 'mask', 'overlay', 'word_attention']
    with Image.open(out['mask']) as mask, Image.open(out['overlay']) as overlay:
      assert mask.size == overlay.size == size[::-1]
    assert os.path.getsize(out['word_attention']) > 1000


@pytest.mark.parametrize('image, expression, error, match', [
    ('missing.jpg', 'the red circle', FileNotFoundError, 'no such file'),
    ('notes.jpg', 'the red circle', ValueError, 'not a readable image'),
    ('ok.png', '', ValueError, 'is empty'),
    ('ok.png', 'zebra xylophone', ValueError, 'no word in the vocabulary'),
])
def test_predict_bad_input(trained, tmp_path, image, expression, error, match):
  _, workdir, _ = trained
  (tmp_path / 'notes.jpg').write_text('not an image')
  Image.new('RGB', (8, 8)).save(tmp_path / 'ok.png')
  with pytest.raises(error, match=match):
    predict.predict(None, workdir, str(tmp_path / image), expression, str(tmp_path / 'out'))


@pytest.mark.parametrize('args, message', [
    (['--config=configs/nope.py', '--workdir={tmp}'], 'nope.py'),
    (['--config=configs/demo.py', '--workdir={tmp}', '--mode=eval'], 'Error: no checkpoint in'),
    (['--config=configs/demo.py', '--workdir={tmp}', '--config.no_such_key=1'], 'no_such_key'),
])
def test_main_reports_user_mistakes_without_a_traceback(tmp_path, args, message):
  out = subprocess.run([sys.executable, 'main.py'] + [a.format(tmp=tmp_path) for a in args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode != 0
  assert message in out.stderr
  assert 'Traceback' not in out.stderr
