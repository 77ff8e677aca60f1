"""What training, evaluation and prediction share: data sources, the vocabulary,
the model and train state built from a config, and checkpoints.

A workdir holds `checkpoints/<step>/` (orbax: train state, data-iterator
state, config, vocabulary) and `vocab.json`.
"""

import os

from absl import logging
import flax
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds

from cmsa_jax import model as model_lib
from cmsa_jax import text
from cmsa_jax import weights

SYNTHETIC = 'synthetic_ref'


# ----------------------------------------------------------------------------
# Data.


def load_source(config, split):
  """A random-access source of records (see cmsa_jax/data/features.py).

  The synthetic dataset is generated on the fly when it has not been built, so
  the demo needs no set-up step.
  """
  try:
    return tfds.data_source(config.dataset, split=split, data_dir=config.data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    name = config.dataset.split('/')[0]
    if name != SYNTHETIC:
      raise FileNotFoundError(
          f'TFDS dataset {config.dataset!r} is not built in data_dir '
          f'{config.data_dir or "~/tensorflow_datasets"}. Build it from the authors\' files with\n'
          f'  python -m cmsa_jax.tools.build_dataset {config.dataset} --manual_dir=M '
          f'--data_dir=D\n(see datasets/{name}/README.md for the layout of M) and set '
          f'--config.data_dir=D.') from None
  from cmsa_jax import synthetic  # pylint: disable=g-import-not-at-top
  sizes = {config.train_split: config.synthetic.num_train}
  sizes.setdefault(config.eval_split, config.synthetic.num_eval)
  if split not in sizes:
    raise ValueError(f'unknown split {split!r} of the on-the-fly synthetic dataset; '
                     f'known: {sorted(sizes)}')
  logging.info('%s is not built; generating split %r (%d examples) on the fly.',
               SYNTHETIC, split, sizes[split])
  return synthetic.SyntheticSource(split, sizes[split], seed=config.synthetic.seed,
                                   image_size=config.synthetic.image_size)


def has_all_objects(config):
  """Whether records list every object of the scene (so trivial baselines are defined)."""
  return config.dataset.split('/')[0] == SYNTHETIC


def build_vocabulary(config, workdir, index=None):
  """Loads `workdir/vocab.json`, or builds it from the training split and saves it.

  `index`: the training source's `input_pipeline.sentence_index`, if already built.
  """
  path = os.path.join(workdir, 'vocab.json')
  if os.path.exists(path):
    return text.Vocabulary.load(path)
  if index is None:
    from cmsa_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    index = input_pipeline.sentence_index(load_source(config, config.train_split))
  vocab = text.Vocabulary.build(index.texts)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    vocab.save(path)
  logging.info('Vocabulary of %d words from %s/%s saved to %s.', len(vocab),
               config.dataset, config.train_split, path)
  return vocab


# ----------------------------------------------------------------------------
# Model and state.


def create_model(config, vocab_size, *, seed=0):
  m = config.model
  return model_lib.CMSAModel(
      vocab_size,
      backbone_blocks=tuple(m.backbone_blocks), backbone_width=m.backbone_width,
      embed_dim=m.embed_dim, attn_dim=m.attn_dim, fusion_dim=m.fusion_dim,
      cmsa_impl=m.cmsa_impl, pooling=m.pooling, word_weight=m.word_weight,
      attention=m.attention, fusion=m.fusion, fusion_relu=m.get('fusion_relu', False),
      dtype=jnp.dtype(config.dtype),
      # Init only (restored weights replace it); configs saved before it existed lack it.
      qk_init_scale=m.get('qk_init_scale', 1.0), rngs=nnx.Rngs(seed))


def trainable_filter(config):
  """nnx filter of the parameters the optimizer updates."""
  if config.freeze_backbone:
    return nnx.All(nnx.Param, nnx.Not(nnx.PathContains('backbone')))
  return nnx.Param


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: nnx.State  # Trained parameters.
  frozen: nnx.State  # Everything else: frozen parameters, batch-norm statistics.
  opt_state: optax.OptState


def learning_rate_schedule(config):
  """Polynomial ("poly") decay, power 0.9, to end_learning_rate at the last step."""
  return optax.polynomial_schedule(
      init_value=config.learning_rate, end_value=config.end_learning_rate,
      power=config.lr_power, transition_steps=config.num_train_steps)


DECAY_FORMS = ('coupled', 'decoupled')


def create_optimizer(config, params):
  """Adam, weight decay on conv/linear kernels, poly learning-rate decay.

  config.weight_decay_form:
    'coupled':   the official code's L2: weight_decay * Σ‖W‖²/2 over kernels is
                 added to the loss, so the decay enters Adam's moments and is
                 normalised with the gradient (Adam + L2).
    'decoupled': AdamW: w -= lr * weight_decay * w beside the Adam step.
  Embeddings, biases and batch-norm parameters are not decayed.
  """
  form = config.get('weight_decay_form', 'coupled')
  if form not in DECAY_FORMS:
    raise ValueError(f'config.weight_decay_form must be one of {DECAY_FORMS}, got {form!r}.')
  decay_mask = jax.tree_util.tree_map_with_path(
      lambda path, _: any(getattr(k, 'key', None) == 'kernel' for k in path), params)
  decay = optax.add_decayed_weights(config.weight_decay, mask=decay_mask)
  adam = optax.scale_by_adam()
  return optax.chain(*((decay, adam) if form == 'coupled' else (adam, decay)),
                     optax.scale_by_learning_rate(learning_rate_schedule(config)))


def create_train_state(config, vocab_size):
  """Returns (graphdef, TrainState, optimizer) with pretrained weights if configured."""
  model = create_model(config, vocab_size, seed=config.seed)
  if config.backbone_init:
    weights.load_backbone(model.backbone, config.backbone_init)
    logging.info('Backbone initialised from %s.', config.backbone_init)
  graphdef, params, frozen = nnx.split(model, trainable_filter(config), ...)
  tx = create_optimizer(config, params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen,
                     opt_state=tx.init(params))
  return graphdef, state, tx


def merge_model(graphdef, state):
  return nnx.merge(graphdef, state.params, state.frozen)


# ----------------------------------------------------------------------------
# Checkpoints.


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
    raise FileNotFoundError(
        f'no checkpoint in {directory}: train first with '
        f'`python main.py --config=... --workdir={workdir}` (mode train).')
  if step is None:
    return max(steps)
  if step not in steps:
    raise FileNotFoundError(f'no checkpoint for step {step} in {directory}; '
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
  graphdef, state, _ = create_train_state(config, len(vocab))
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  with ocp.CheckpointManager(checkpoint_dir(workdir)) as mngr:
    state = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract))).state
  logging.info('Restored step %d from %s.', step, workdir)
  return merge_model(graphdef, state), config, vocab, step
