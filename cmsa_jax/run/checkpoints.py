"""Checkpoints of a workdir.

A workdir holds `checkpoints/<step>/` (orbax: train state, data-iterator
state, config, vocabulary) and `vocab.json`.
"""

import os

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp

from cmsa_jax import errors
from cmsa_jax.data import text
from cmsa_jax.run import state as state_lib


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


def checkpoint_step(workdir, step=None):
  """The checkpoint step to restore: `step`, or the latest; clear error if none."""
  directory = checkpoint_dir(workdir)
  steps = ocp.utils.checkpoint_steps(directory) if os.path.isdir(directory) else []
  if not steps:
    raise errors.NotFoundError(
        f'no checkpoint in {directory}: train first with '
        f'`python main.py --config=... --workdir={workdir}` (mode train).')
  if step is None:
    return max(steps)
  if step not in steps:
    raise errors.NotFoundError(f'no checkpoint for step {step} in {directory}; '
                            f'available steps: {sorted(steps)}')
  return step


def restore_config_and_vocab(workdir, step=None):
  """The config and vocabulary saved with a checkpoint (no model needed)."""
  step = checkpoint_step(workdir, step)
  with ocp.CheckpointManager(checkpoint_dir(workdir)) as mngr:
    restored = mngr.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore(), vocab=ocp.args.JsonRestore()))
  config = ml_collections.ConfigDict(restored.config)
  return config, text.Vocabulary.from_dict(restored.vocab), step


def restore_model(workdir, step=None):
  """Rebuilds the model of a checkpoint from its own config and vocabulary.

  Returns (model, config, vocab, step).
  """
  config, vocab, step = restore_config_and_vocab(workdir, step)
  config.backbone_init = ''  # The checkpoint holds the weights.
  graphdef, state, _ = state_lib.create_train_state(config, len(vocab))
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  with ocp.CheckpointManager(checkpoint_dir(workdir)) as mngr:
    state = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract))).state
  logging.info('Restored step %d from %s.', step, workdir)
  return state_lib.merge_model(graphdef, state), config, vocab, step
