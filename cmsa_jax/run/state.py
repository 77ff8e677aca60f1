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
from cmsa_jax.models import weights


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


def create_model(config, vocab_size, *, seed=0):
  # A field a saved config lacks (added since) takes the constructor's default.
  cls = model_class(config)
  unknown = sorted(set(config.model) - set(inspect.signature(cls.__init__).parameters))
  if unknown:
    raise errors.ConfigError(f'config.model has fields that {cls.__module__}.Model does not '
                             f'take: {", ".join(unknown)}.')
  return cls(vocab_size=vocab_size, **config.model, dtype=jnp.dtype(config.dtype),
             rngs=nnx.Rngs(seed))


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
    raise errors.ConfigError(f'config.weight_decay_form must be one of {DECAY_FORMS}, got {form!r}.')
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
