"""The model and train state built from a config: parameters split into trained
and frozen, Adam with weight decay and poly learning-rate decay."""

import inspect

from absl import logging
import flax
from flax import nnx
import jax
import jax.numpy as jnp
import optax

from cmsa_jax import errors
from cmsa_jax import models
from cmsa_jax.models import text as text_parts


def model_class(config):
  """`Model` of `cmsa_jax.models.<config.model_name>`."""
  # Configs saved before model_name existed are the image model's.
  name = config.get('model_name', 'cmsa_image')
  try:
    return models.get(name).Model
  except ModuleNotFoundError as e:
    if e.name != f'{models.__name__}.{name}':
      raise
    raise errors.ConfigError(f'config.model_name={name!r}: no module cmsa_jax/models/{name}.py') from None


# Fields of configs written before the model parts (checkpoints keep their config):
# old field -> (config.model.<args>, argument), all moved by `model_args`.
LEGACY_FIELDS = {
    'backbone_blocks': ('backbone_args', 'blocks'),
    'backbone_width': ('backbone_args', 'width'),
    'remat_backbone': ('backbone_args', 'remat'),
    'freeze_backbone': ('backbone_args', 'frozen'),  # Was a top-level field.
    'embed_dim': ('text_args', 'dim'),
}


def model_args(config):
  """The keyword arguments of the model's constructor: config.model, with the
  fields of older configs moved to their part's arguments (they win)."""
  args = {k: (v.to_dict() if hasattr(v, 'to_dict') else v) for k, v in config.model.items()}
  legacy = {k: config.model[k] for k in LEGACY_FIELDS if k in config.model}
  if 'freeze_backbone' in config:
    legacy['freeze_backbone'] = config.freeze_backbone
  for field, value in legacy.items():
    args.pop(field, None)
    group, name = LEGACY_FIELDS[field]
    args[group] = dict(args.get(group) or {}, **{name: value})
  return args


def create_model(config, vocab_size, *, seed=0):
  # A field a saved config lacks (added since) takes the constructor's default.
  cls = model_class(config)
  args = model_args(config)
  unknown = sorted(set(args) - set(inspect.signature(cls.__init__).parameters))
  if unknown:
    raise errors.ConfigError(f'config.model has fields that {cls.__module__}.Model does not '
                             f'take: {", ".join(unknown)}.')
  return cls(vocab_size=vocab_size, **args, dtype=jnp.dtype(config.dtype),
             rngs=nnx.Rngs(seed))


def text_tokenizer(config):
  """The text encoder's own tokenizer, or None: the dataset's vocabulary is used
  (see cmsa_jax/models/text/__init__.py)."""
  args = model_args(config)
  return text_parts.tokenizer(args.get('text_encoder', 'embed'), args.get('text_args'))


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
    raise errors.ConfigError(f'config.weight_decay_form must be one of {DECAY_FORMS}, got {form!r}.')
  decay_mask = jax.tree_util.tree_map_with_path(
      lambda path, _: any(getattr(k, 'key', None) == 'kernel' for k in path), params)
  decay = optax.add_decayed_weights(config.weight_decay, mask=decay_mask)
  adam = optax.scale_by_adam()
  return optax.chain(*((decay, adam) if form == 'coupled' else (adam, decay)),
                     optax.scale_by_learning_rate(learning_rate_schedule(config)))


def create_train_state(config, vocab_size):
  """Returns (graphdef, TrainState, optimizer) with the parts' pretrained weights if
  configured; the parameters of frozen parts go to TrainState.frozen."""
  model = create_model(config, vocab_size, seed=config.seed)
  paths = {'backbone': config.get('backbone_init', ''),
           'embed': config.get('text_encoder_init', '')}
  model.load_pretrained(**paths)
  for part, path in paths.items():
    if path:
      logging.info('Model part %s initialised from %s.', part, path)
  graphdef, params, frozen = nnx.split(model, model.trainable, ...)
  tx = create_optimizer(config, params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen,
                     opt_state=tx.init(params))
  return graphdef, state, tx


def merge_model(graphdef, state):
  return nnx.merge(graphdef, state.params, state.frozen)
