"""The model and optimizer built from a config: Adam with coupled (L2) or
decoupled (AdamW) weight decay; config mistakes as ConfigError."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import helpers

from cmsa_jax import errors
from cmsa_jax.run import state as state_lib

LR, WD = 0.01, 0.5


def _config(form):
  return ml_collections.ConfigDict(dict(
      learning_rate=LR, end_learning_rate=LR, lr_power=0.9, num_train_steps=10,
      weight_decay=WD, weight_decay_form=form))


def _first_update(form, grad):
  params = {'conv': {'kernel': jnp.array([1.0, -2.0])}, 'embed': {'embedding': jnp.array([3.0])}}
  grads = {'conv': {'kernel': jnp.full(2, grad)}, 'embed': {'embedding': jnp.array([grad])}}
  tx = state_lib.create_optimizer(_config(form), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return np.asarray(updates['conv']['kernel']), np.asarray(updates['embed']['embedding'])


def test_coupled_decay_is_normalised_by_adam():
  # Zero loss gradient: L2 adds WD * w to it, Adam's first step divides that by
  # its own magnitude, so every decayed weight moves by the full lr, sign(w).
  kernel, embedding = _first_update('coupled', 0.0)
  np.testing.assert_allclose(kernel, [-LR, LR], rtol=1e-5)
  np.testing.assert_allclose(embedding, [0.0])  # Embeddings are not decayed.


def test_decoupled_decay_shrinks_by_lr_times_decay():
  # AdamW: the decay step is lr * WD * w whatever the gradient's scale.
  kernel, embedding = _first_update('decoupled', 0.0)
  np.testing.assert_allclose(kernel, [-LR * WD * 1.0, LR * WD * 2.0], rtol=1e-5)
  np.testing.assert_allclose(embedding, [0.0])
  kernel, _ = _first_update('decoupled', 1e-3)  # Adam step -lr, plus the decay.
  np.testing.assert_allclose(kernel, [-LR - LR * WD, -LR + LR * WD * 2.0], atol=1e-6)


def test_unknown_decay_form_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='weight_decay_form'):
    _first_update('l1', 0.0)


def test_unknown_model_field_is_a_config_error():
  config = helpers.make_tiny_config()
  config.model.no_such_field = 3
  with pytest.raises(errors.ConfigError, match='no_such_field'):
    state_lib.create_model(config, vocab_size=10)
