"""Checkpoints of a workdir.

A workdir holds `checkpoints/<step>/` (orbax: train state, data-iterator
state, config, vocabulary) and `vocab.json`. Orbax writes each checkpoint to a
temporary directory and renames it when complete, so a crash mid-save leaves
the previous checkpoints as they were. A finished checkpoint damaged later
(truncated copy, bad disk) is skipped with a warning for the one before it.
"""

import os
import shutil
import tempfile

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cmsa_jax import errors
from cmsa_jax.data import text
from cmsa_jax.models.text import wordpiece
from cmsa_jax.run import state as state_lib

# Room a save needs beyond the checkpoint itself (config, metadata, file-system slack).
_SAVE_MARGIN_BYTES = 16 << 20
_MAX_LISTED = 20  # Mismatched parameters listed in an incompatible-checkpoint error.


def checkpoint_dir(workdir):
  return os.path.abspath(os.path.join(workdir, 'checkpoints'))


def checkpoint_manager(config, workdir):
  return ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True))


def checkpoint_items(state, config, vocab, data_iter=None):
  items = {'state': ocp.args.StandardSave(state),
           'config': ocp.args.JsonSave(config.to_dict()),
           'vocab': ocp.args.JsonSave(vocab.to_dict())}
  if data_iter is not None:
    import grain  # pylint: disable=g-import-not-at-top
    items['data_iter'] = grain.checkpoint.CheckpointSave(data_iter)
  return ocp.args.Composite(**items)


def check_writable(workdir):
  """ConfigError unless files can be created in the workdir's checkpoint directory."""
  directory = checkpoint_dir(workdir)
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix='.write_test_'):
      pass
  except OSError as e:
    raise errors.ConfigError(f'--workdir={workdir} is not writable ({e}); training could not '
                             'save checkpoints. Choose another --workdir.') from None


def check_free_space(workdir, state):
  """ConfigError unless the workdir's disk holds two more checkpoints of `state`.

  Orbax writes a new checkpoint before it deletes the oldest, so a save needs
  room for one while the others stay.
  """
  size = sum(np.dtype(x.dtype).itemsize * x.size for x in jax.tree.leaves(state))
  needed = 2 * size + _SAVE_MARGIN_BYTES
  free = shutil.disk_usage(checkpoint_dir(workdir)).free
  if free < needed:
    raise errors.ConfigError(
        f'--workdir={workdir} has {free / 2**20:.1f} MiB free; a checkpoint of this model takes '
        f'{size / 2**20:.1f} MiB and a save needs {needed / 2**20:.1f} MiB. Free disk space or '
        'choose another --workdir.')


def _candidate_steps(workdir, step=None):
  """`[step]`, or every checkpoint step from the latest down; clear error if none."""
  directory = checkpoint_dir(workdir)
  steps = ocp.utils.checkpoint_steps(directory) if os.path.isdir(directory) else []
  if not steps:
    raise errors.NotFoundError(
        f'no checkpoint in {directory}: train first with '
        f'`python main.py --config=... --workdir={workdir}` (mode train).')
  if step is None:
    return sorted(steps, reverse=True)
  if step not in steps:
    raise errors.NotFoundError(f'no checkpoint for step {step} in {directory}; '
                               f'available steps: {sorted(steps)}')
  return [step]


def checkpoint_step(workdir, step=None):
  """The checkpoint step to restore: `step`, or the latest; clear error if none."""
  return _candidate_steps(workdir, step)[0]


def restore_readable(workdir, restore_fn, step=None, *, on_unreadable=None):
  """(restore_fn(s), s) for s = `step`, or the latest checkpoint that reads back.

  A damaged checkpoint gives a warning and the one before it is tried;
  `on_unreadable(s)` is called for each damaged one. User errors (e.g. an
  incompatible config) propagate at once.
  """
  directory = checkpoint_dir(workdir)
  failures = []
  for s in _candidate_steps(workdir, step):
    try:
      return restore_fn(s), s
    except errors.UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # Orbax/tensorstore raise many kinds.
      failures.append(f'step {s}: {type(e).__name__}: {str(e)[:300]}')
      logging.warning('Checkpoint %s/%d is damaged and is not used (%s).', directory, s,
                      failures[-1])
      if on_unreadable is not None:
        on_unreadable(s)
  raise errors.NotFoundError(f'no readable checkpoint in {directory}: ' + '; '.join(failures))


def _path_names(path):
  names = [str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path]
  return '/'.join(names[:-1] if names[-1] == 'value' else names)  # nnx.Variable's 'value'.


def _shapes(tree):
  """{'a/b/c': shape} of a pytree of arrays or orbax array metadata."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {_path_names(path): tuple(leaf.shape) for path, leaf in leaves}


def check_compatible(workdir, step, abstract_state):
  """ConfigError listing the parameter paths and shapes where checkpoint `step` differs."""
  directory = checkpoint_dir(workdir)
  with ocp.CheckpointManager(
      directory, item_handlers={'state': ocp.StandardCheckpointHandler()}) as mngr:
    saved = _shapes(mngr.item_metadata(step)['state'].tree)
  wanted = _shapes(abstract_state)
  differ = [p for p in sorted(saved.keys() | wanted.keys()) if saved.get(p) != wanted.get(p)]
  if not differ:
    return
  parameters = [p for p in differ if not p.startswith('opt_state/')]
  listed = '; '.join(f'{p}: checkpoint {saved.get(p, "absent")}, config {wanted.get(p, "absent")}'
                     for p in parameters[:_MAX_LISTED])
  if len(parameters) > _MAX_LISTED:
    listed += f'; ... and {len(parameters) - _MAX_LISTED} more'
  raise errors.ConfigError(  # One line, as every user error.
      f'checkpoint {directory}/{step} was written with a different model config (e.g. another '
      f'model part); {len(parameters)} parameter arrays differ (path: checkpoint shape, config '
      f'shape): {listed} (and {len(differ) - len(parameters)} optimizer-state arrays). Train in '
      'a new --workdir, or use the config the checkpoint was trained with.')


def _set_aside(workdir, step):
  """Moves a damaged checkpoint to WORKDIR/checkpoints_damaged/ so training can save that step."""
  target = os.path.join(os.path.abspath(workdir), 'checkpoints_damaged', str(step))
  shutil.rmtree(target, ignore_errors=True)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  os.rename(os.path.join(checkpoint_dir(workdir), str(step)), target)
  logging.warning('Moved it to %s (move it back to use it again).', target)


def resume(mngr, workdir, state, data_iter):
  """The train state (and `data_iter`'s position) of the latest readable checkpoint.

  Returns `state` unchanged when the workdir has no checkpoint yet.
  """
  if not mngr.all_steps():
    return state
  import grain  # pylint: disable=g-import-not-at-top
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)

  def restore(step):
    check_compatible(workdir, step, abstract)
    return mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data_iter=grain.checkpoint.CheckpointRestore(data_iter))).state

  def set_aside(step):
    if jax.process_index() == 0:
      _set_aside(workdir, step)
    mngr.reload()

  state, step = restore_readable(workdir, restore, on_unreadable=set_aside)
  logging.info('Resumed from checkpoint step %d in %s.', step, workdir)
  return state


def restore_config_and_vocab(workdir, step=None):
  """The config and vocabulary saved with a checkpoint (no model needed)."""

  def restore(s):
    with ocp.CheckpointManager(checkpoint_dir(workdir)) as mngr:
      return mngr.restore(s, args=ocp.args.Composite(
          config=ocp.args.JsonRestore(), vocab=ocp.args.JsonRestore()))

  restored, step = restore_readable(workdir, restore, step)
  config = ml_collections.ConfigDict(restored.config)
  return config, vocabulary_from_dict(restored.vocab), step


def vocabulary_from_dict(content):
  """The dataset's Vocabulary or a text encoder's own tokenizer, as saved with a checkpoint
  (so eval and predict need no tokenizer file)."""
  if isinstance(content, dict) and content.get('format') == wordpiece.FORMAT:
    return wordpiece.WordPieceTokenizer.from_dict(content)
  return text.Vocabulary.from_dict(content)


def _abstract_train_state(config, vocab_size):
  """(graphdef, train state of shapes and dtypes only): the model traced, not built, so
  nothing is initialised (1-2 s instead of a minute of eager initialiser ops on a busy CPU)."""
  graphdefs = []

  def create():
    graphdef, state, _ = state_lib.create_train_state(config, vocab_size)
    graphdefs.append(graphdef)
    return state

  abstract = jax.eval_shape(create)
  return graphdefs[0], abstract


def restore_model(workdir, step=None):
  """Rebuilds the model of a checkpoint from its own config and vocabulary.

  Without `step`, the latest checkpoint that reads back. Returns (model,
  config, vocab, step).
  """

  def restore(s):
    config, vocab, _ = restore_config_and_vocab(workdir, s)
    config.backbone_init = config.text_encoder_init = ''  # The checkpoint holds the weights.
    graphdef, abstract = _abstract_train_state(config, len(vocab))
    check_compatible(workdir, s, abstract)
    with ocp.CheckpointManager(checkpoint_dir(workdir)) as mngr:
      state = mngr.restore(s, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract))).state
    return state_lib.merge_model(graphdef, state), config, vocab

  (model, config, vocab), step = restore_readable(workdir, restore, step)
  logging.info('Using checkpoint step %d of %s.', step, checkpoint_dir(workdir))
  return model, config, vocab, step
