"""bf16 mixed precision (config.dtype='bfloat16') and rematerialization switches.

bf16: parameters and optimizer state float32, convolutions and matmuls in bfloat16,
softmax statistics, logits and the loss float32. bfloat16 keeps 8 significant
bits (relative rounding 2^-9 = 0.2 % per operation), so after the backbone, three
CMSA levels and GMLF the forward pass may differ from float32 by a few percent of
its values; the tolerances below say how much.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from cmsa_jax import errors
from cmsa_jax import models
from cmsa_jax.data import input_pipeline
from cmsa_jax.run import dataset
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import train


@pytest.fixture(scope='module')
def demo_batch(tmp_path_factory):
  """A batch of 8 synthetic demo scenes and the vocabulary size."""
  config = helpers.make_tiny_config()
  vocab = helpers.vocabulary(config, str(tmp_path_factory.mktemp('vocab')))
  it = input_pipeline.create_train_iterator(
      dataset.load_source(config, 'train'), vocab, batch_size=8, image_size=config.image_size,
      seed=0)
  return train.model_batch(next(it), state_lib.model_class(config)), len(vocab)


def _train_state(dtype, vocab_size, freeze_backbone=True, remat_backbone='none', **model):
  config = helpers.make_tiny_config()
  config.learning_rate = 3e-3
  config.dtype = dtype
  config.model.backbone_args.update(frozen=freeze_backbone, remat=remat_backbone)
  config.model.update(model)
  return state_lib.create_train_state(config, vocab_size)


def test_bf16_computes_in_bf16_and_keeps_float32_state(demo_batch):
  batch, vocab_size = demo_batch
  graphdef, state, _ = _train_state('bfloat16', vocab_size)
  assert {x.dtype for x in jax.tree.leaves((state.params, state.frozen, state.opt_state))} <= {
      jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}
  grads_of = functools.partial(train.loss_and_grads, graphdef=graphdef)
  jaxpr = str(jax.make_jaxpr(grads_of)(state, batch))  # Nested jaxprs included.
  for op in ('conv_general_dilated', 'dot_general'):  # bf16 in, bf16 out.
    assert re.search(rf'bf16\[[0-9,]*\] = {op}\[', jaxpr), op
  (loss, _), grads = jax.jit(grads_of)(state, batch)
  assert loss.dtype == jnp.float32
  assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_bf16_forward_agrees_with_float32(demo_batch):
  batch, vocab_size = demo_batch
  outputs = {}
  for dtype in ('float32', 'bfloat16'):
    graphdef, state, _ = _train_state(dtype, vocab_size)
    outputs[dtype] = jax.jit(lambda s: (lambda m: m(*models.inputs(m, batch)))(
        state_lib.merge_model(graphdef, s)))(state)
  f32, bf16 = outputs['float32'], outputs['bfloat16']
  for key in f32:
    assert bf16[key].dtype == jnp.float32, key
  # Same parameters (float32 in both), compute in bf16: logits within 0.05
  # (they span about +-1 here), probabilities within 0.01, and the Eq.4 word
  # weights and Fig.7 heatmap within 0.01 and 0.02.
  np.testing.assert_allclose(bf16['logits'], f32['logits'], atol=0.05)
  np.testing.assert_allclose(jax.nn.sigmoid(bf16['logits']), jax.nn.sigmoid(f32['logits']),
                             atol=0.01)
  np.testing.assert_allclose(bf16['word_attention'], f32['word_attention'], atol=0.01)
  np.testing.assert_allclose(bf16['heatmap'], f32['heatmap'], atol=0.02)
  assert np.mean((bf16['logits'] > 0) == (f32['logits'] > 0)) >= 0.99
  assert not np.array_equal(bf16['logits'], f32['logits'])  # bf16 did run.


def test_bf16_steps_lower_the_loss_like_float32(demo_batch):
  batch, vocab_size = demo_batch
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    graphdef, state, tx = _train_state(dtype, vocab_size)
    step = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx))
    losses[dtype] = []
    for _ in range(10):
      state, metrics = step(state, batch)
      losses[dtype].append(float(metrics['loss']))
  for dtype, curve in losses.items():
    assert curve[-1] < 0.8 * curve[0], (dtype, curve)
  # The same descent: within 0.02 at every step (the drop is ~0.4).
  np.testing.assert_allclose(losses['bfloat16'], losses['float32'], atol=0.02)


def test_remat_changes_neither_loss_nor_gradients(demo_batch):
  batch, vocab_size = demo_batch
  model_class = state_lib.model_class(helpers.make_tiny_config())
  results, checkpoints = [], []
  for policy in ('none', 'full'):
    # A trained backbone: its remat only matters where gradients flow through it.
    graphdef, state, _ = _train_state('float32', vocab_size, freeze_backbone=False,
                                      remat_backbone=policy, remat_cmsa=policy)
    grads_of = functools.partial(train.loss_and_grads, graphdef=graphdef)
    forward = lambda s: state_lib.merge_model(graphdef, s)(*models.inputs(model_class, batch))
    checkpoints.append(str(jax.make_jaxpr(forward)(state)).count(' = remat'))
    results.append(jax.jit(grads_of)(state, batch))
  # Checkpointed parts: 4 backbone stages and 3 CMSA levels (beyond the CMSA's own scan).
  assert checkpoints[1] - checkpoints[0] == 7
  (loss, _), grads = results[0]
  for (other_loss, _), other_grads in results[1:]:
    assert float(other_loss) == pytest.approx(float(loss), abs=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), grads, other_grads)


def test_unknown_remat_policy_is_a_config_error():
  config = helpers.make_tiny_config()
  config.model.remat_cmsa = 'everything'
  with pytest.raises(errors.ConfigError, match="remat_cmsa must be one of"):
    state_lib.create_model(config, 30)
