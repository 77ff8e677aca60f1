"""The full image model: shapes at paper scale, a tiny model's forward and
gradient, padding invariance, input checks and the Eq.8 loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cmsa_jax.models import cmsa_image as model_lib
from cmsa_jax.models import resnet

TINY = dict(backbone_args=dict(blocks=(1, 1, 1, 1), width=8), text_args=dict(dim=16),
            attn_dim=8, fusion_dim=8)
VOCAB = 50


@pytest.fixture(scope='module')
def tiny_model():
  return model_lib.Model(vocab_size=VOCAB, **TINY, rngs=nnx.Rngs(0))


def _batch(b=2, size=32, n=5, seed=0):
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.uniform(0, 255, (b, size, size, 3)), jnp.float32)
  tokens = jnp.asarray(rng.integers(1, VOCAB, (b, n)), jnp.int32)
  mask = jnp.asarray(np.arange(n)[None] < np.array([3, n])[:b, None])
  return images, tokens.at[~mask].set(0), mask


def _abstract_call(model, *inputs):
  specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in inputs]
  return nnx.eval_shape(lambda m, *x: m(*x), model, *specs)


def test_paper_scale_shapes():
  abstract = nnx.eval_shape(lambda: model_lib.Model(vocab_size=12112, rngs=nnx.Rngs(0)))
  assert isinstance(abstract.backbone, resnet.ResNet)
  out = _abstract_call(abstract, jnp.zeros((1, 320, 320, 3)),
                       jnp.zeros((1, 20), jnp.int32), jnp.zeros((1, 20), bool))
  assert out['logits'].shape == (1, 320, 320) and out['logits'].dtype == jnp.float32
  assert out['word_attention'].shape == (1, 3, 20)
  assert out['heatmap'].shape == (1, 40, 40)
  widths = [layer.visual_dim + layer.word_dim + 8 for layer in abstract.cmsa]
  assert widths == [512 + 1008, 1024 + 1008, 2048 + 1008]  # 3056 for Res5.


def test_res5_fusion_uses_one_level():
  abstract = nnx.eval_shape(lambda: model_lib.Model(
      vocab_size=VOCAB, **TINY, fusion='res5', rngs=nnx.Rngs(0)))
  assert len(abstract.cmsa) == 1 and abstract.cmsa[0].visual_dim == 8 * 4 * 8
  out = _abstract_call(abstract, *_batch())
  assert out['word_attention'].shape == (2, 1, 5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  abstract = nnx.eval_shape(lambda: model_lib.Model(
      vocab_size=VOCAB, **TINY, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
  dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.float32)}
  assert _abstract_call(abstract, *_batch())['logits'].dtype == jnp.float32


def test_tiny_forward_and_gradient(tiny_model):
  images, tokens, mask = _batch()
  targets = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 32, 32)) > 0.5)

  @nnx.jit
  def step(model):
    def loss_fn(model):
      out = model(images, tokens, mask)
      return model_lib.bce_loss(out['logits'], targets), out
    return nnx.value_and_grad(loss_fn, has_aux=True)(model)

  (loss, out), grads = step(tiny_model)
  assert out['logits'].shape == (2, 32, 32)
  assert np.isfinite(float(loss))
  weights = np.asarray(out['word_attention'])
  assert weights.shape == (2, 3, 5)
  np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-5)
  assert np.all(weights[0, :, 3:] == 0)
  heatmap = np.asarray(out['heatmap'])
  assert heatmap.shape == (2, 4, 4)
  np.testing.assert_allclose(heatmap.min((1, 2)), 0, atol=1e-6)
  np.testing.assert_allclose(heatmap.max((1, 2)), 1, atol=1e-5)
  for part in ('backbone', 'embed', 'cmsa', 'fusion'):
    norm = sum(float(jnp.sum(jnp.square(g))) for g in jax.tree.leaves(
        nnx.state(getattr(grads, part))))
    assert norm > 0, part


def test_padding_and_padded_token_ids_change_nothing(tiny_model):
  images, tokens, mask = _batch(n=5)
  forward = nnx.jit(lambda m, *x: m(*x))
  out = forward(tiny_model, images, tokens, mask)
  longer = jnp.concatenate([tokens, jnp.full((2, 3), 7, jnp.int32)], 1)
  longer_mask = jnp.concatenate([mask, jnp.zeros((2, 3), bool)], 1)
  out_long = forward(tiny_model, images, longer, longer_mask)
  np.testing.assert_allclose(out_long['logits'], out['logits'], atol=1e-5)
  np.testing.assert_allclose(out_long['word_attention'][..., :5],
                             out['word_attention'], atol=1e-6)
  assert np.all(out_long['word_attention'][..., 5:] == 0)
  np.testing.assert_allclose(out_long['heatmap'], out['heatmap'], atol=1e-5)
  assert np.abs(out['logits'][0] - out['logits'][1]).max() > 0


def test_normalize_images():
  images = np.random.default_rng(0).uniform(0, 255, (2, 3, 4, 3))
  got = model_lib.normalize_images(jnp.asarray(images, jnp.float32))
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(got, (images / 255 - mean) / std, atol=1e-5)


@pytest.mark.parametrize('which, bad, match', [
    ('images', jnp.zeros((32, 32, 3)), 'images'),
    ('images', jnp.zeros((2, 32, 32, 4)), 'images'),
    ('images', jnp.zeros((2, 32, 32, 3), jnp.int32), 'images'),
    ('tokens', jnp.zeros((2, 5), jnp.float32), 'tokens'),
    ('tokens', jnp.zeros((2, 5, 1), jnp.int32), 'tokens'),
    ('mask', jnp.ones((2, 5), jnp.int32), 'token_mask'),
    ('mask', jnp.ones((2, 4), bool), 'token_mask'),
    ('batch', None, 'batch size'),
])
def test_rejects_bad_inputs(tiny_model, which, bad, match):
  images, tokens, mask = _batch()
  if which == 'images':
    images = bad
  elif which == 'tokens':
    tokens = bad
  elif which == 'mask':
    mask = bad
  else:
    images = images[:1]
  with pytest.raises(ValueError, match=match):
    _abstract_call(tiny_model, images, tokens, mask)


def test_bce_loss_matches_definition():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=4, size=(2, 6, 7))
  masks = rng.uniform(size=(2, 6, 7)) > 0.5
  p = 1 / (1 + np.exp(-logits))
  want = -np.mean(masks * np.log(p) + (1 - masks) * np.log(1 - p))
  got = model_lib.bce_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(masks))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_bce_loss_is_stable_for_large_logits():
  logits = jnp.array([[200.0, -200.0, 200.0, -200.0]])
  masks = jnp.array([[1, 0, 0, 1]], jnp.float32)
  np.testing.assert_allclose(float(model_lib.bce_loss(logits, masks)), 100.0, rtol=1e-6)
  grad = jax.grad(model_lib.bce_loss)(logits, masks)
  np.testing.assert_allclose(grad, [[0, 0, 0.25, -0.25]], atol=1e-6)


def test_bce_loss_rejects_shape_mismatch():
  with pytest.raises(ValueError, match='masks'):
    model_lib.bce_loss(jnp.zeros((2, 4, 4)), jnp.zeros((2, 4, 5)))
