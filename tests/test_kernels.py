"""The hand-written backward passes equal plain autodiff (config.model.custom_gradients)."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from cmsa_jax.models import cmsa_image

TINY = dict(vocab_size=12, backbone_args=dict(blocks=(1, 1, 1, 1), width=4),
            text_args=dict(dim=8), attn_dim=8, fusion_dim=8)


def _loss_and_grads(custom_gradients, batch):
  model = cmsa_image.Model(**TINY, custom_gradients=custom_gradients, rngs=nnx.Rngs(0))

  def loss_fn(model):
    outputs = model(*(batch[k] for k in model.input_keys))
    return model.loss(outputs, batch), outputs['logits']

  (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  return loss, logits, grads


def test_custom_gradients_equal_autodiff():
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.uniform(0, 255, (2, 32, 32, 3)), jnp.float32),
           'tokens': jnp.asarray(rng.integers(2, 12, (2, 5)), jnp.int32),
           'token_mask': jnp.arange(5)[None] < jnp.array([[3], [5]]),
           'mask': jnp.asarray(rng.uniform(size=(2, 32, 32)) > 0.6, jnp.float32)}
  custom = _loss_and_grads(True, batch)
  plain = _loss_and_grads(False, batch)
  np.testing.assert_allclose(custom[0], plain[0], rtol=1e-6)
  np.testing.assert_allclose(custom[1], plain[1], rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.tree.leaves(custom[2]), jax.tree.leaves(plain[2])):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
