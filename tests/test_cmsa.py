"""Eq.2-5: cross-modal self-attention and word pooling, both implementations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import references
from cmsa_jax.models import cmsa

B, H, W, CV, CL, N, D = 2, 2, 3, 5, 3, 4, 6
VARIANTS = [v for v in itertools.product(
    cmsa.ATTENTION_TERMS, cmsa.POOLINGS, cmsa.WORD_WEIGHTS)
            if v[:2] != ('none', 'attention')]
MASK = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)


def _inputs(seed=0, n=N):
  rng = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  return unit(rng.normal(size=(B, H, W, CV))), unit(rng.normal(size=(B, n, CL)))


def _module(impl='factorized', attention='full', pooling='attention',
            word_weight='mean', dtype=jnp.float32):
  module = cmsa.CMSA(CV, CL, attn_dim=D, impl=impl, pooling=pooling,
                     word_weight=word_weight, attention=attention, dtype=dtype,
                     rngs=nnx.Rngs(3))
  if word_weight == 'temperature' and attention != 'none':
    module.word_log_temperature[...] = 0.7  # Not the init 0, so exp(t) is checked.
  return module


def _run(module, visual, words, mask):
  out = module(jnp.asarray(visual, jnp.float32), jnp.asarray(words, jnp.float32),
               jnp.asarray(mask))
  return [np.asarray(x, np.float64) for x in out]


@pytest.mark.parametrize('attention, pooling, word_weight', VARIANTS)
def test_both_impls_match_numpy_reference(attention, pooling, word_weight):
  visual, words = _inputs()
  names = ('features', 'word_weights', 'pixel_attention')
  dense = factorized = None
  for impl in cmsa.IMPLS:
    module = _module(impl, attention, pooling, word_weight)
    got = _run(module, visual, words, MASK)
    want = references.cmsa_features(module, visual, words, MASK, attention, pooling, word_weight)
    for name, g, x in zip(names, got, want):
      np.testing.assert_allclose(g, x, atol=1e-4, rtol=0, err_msg=f'{impl} {name}')
    dense, factorized = (got, factorized) if impl == 'dense' else (dense, got)
  for name, d, f in zip(names, dense, factorized):
    np.testing.assert_allclose(f, d, atol=1e-5, rtol=0, err_msg=name)
  np.testing.assert_allclose(factorized[1].sum(1), 1, atol=1e-6)
  assert np.all(factorized[1][~MASK] == 0)


@pytest.mark.parametrize('impl, attention, pooling, word_weight', [
    ('factorized', 'full', 'attention', 'mean'),
    ('factorized', 'full', 'attention', 'sum'),
    ('factorized', 'word_pixel', 'max', 'mean'),
    ('factorized', 'word', 'avg', 'sum'),
    ('dense', 'full', 'attention', 'sum'),
    ('dense', 'pixel', 'max', 'mean'),
])
def test_appending_padding_changes_nothing(impl, attention, pooling, word_weight):
  visual, words = _inputs(n=N + 3)  # The 3 extra words get random embeddings.
  padded_mask = np.concatenate([MASK, np.zeros((B, 3), bool)], 1)
  module = _module(impl, attention, pooling, word_weight)
  short = _run(module, visual, words[:, :N], MASK)
  long = _run(module, visual, words, padded_mask)
  np.testing.assert_allclose(long[0], short[0], atol=1e-5)
  np.testing.assert_allclose(long[1][:, :N], short[1], atol=1e-6)
  assert np.all(long[1][:, N:] == 0)
  np.testing.assert_allclose(long[2], short[2], atol=1e-6)


def test_word_weight_sum_is_sharper_than_mean():
  visual, words = _inputs()
  mean = _run(_module(word_weight='mean'), visual, words, MASK)[1]
  total = _run(_module(word_weight='sum'), visual, words, MASK)[1]
  assert total.max(1).min() > mean.max(1).max()


def test_mean_word_weight_is_capped_and_temperature_is_not():
  """Eq.4 when all queries' attention goes to one word: with 'mean' the softmax
  inputs are fractions in [0, 1], so that word gets at most e / (e + N - 1);
  'temperature' scales them by N exp(t) and can single the word out."""
  n = 4
  mask = jnp.ones((1, n), bool)
  received = jnp.array([[7.0 * n, 0, 0, 0]])  # hw = 7 pixels x n query words.
  mean = cmsa.word_weights(received, mask, 7, 'mean')
  np.testing.assert_allclose(mean[0, 0], np.e / (np.e + n - 1), rtol=1e-6)
  for t, want in [(0.0, np.exp(n) / (np.exp(n) + n - 1)),
                  (1.0, np.exp(n * np.e) / (np.exp(n * np.e) + n - 1))]:
    got = cmsa.word_weights(received, mask, 7, 'temperature', jnp.float32(t))
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-6)


def test_word_temperature_is_a_learnable_parameter_per_level():
  visual, words = _inputs()
  module = _module(word_weight='temperature')
  assert 'word_log_temperature' in nnx.state(module, nnx.Param)

  def top_weight(module):
    return module(jnp.asarray(visual, jnp.float32), jnp.asarray(words, jnp.float32),
                  jnp.asarray(MASK)).word_weights.max()
  grads = nnx.grad(top_weight)(module)
  assert abs(float(grads['word_log_temperature'][...])) > 1e-4


@pytest.mark.parametrize('attention, pooling', [
    ('full', 'attention'), ('word_pixel', 'attention'), ('full', 'max'),
    ('pixel', 'avg')])
def test_factorized_gradients_match_dense(attention, pooling):
  visual, words = _inputs()
  cotangents = [np.random.default_rng(i).normal(size=s) for i, s in
                enumerate([(B, H, W, CV + CL + 8), (B, N), (B, H, W)])]

  def grads(impl):
    module = _module(impl, attention, pooling)
    graphdef, params = nnx.split(module)
    def loss(params, visual, words):
      out = nnx.merge(graphdef, params)(visual, words, jnp.asarray(MASK))
      return sum(jnp.sum(o * c) for o, c in zip(out, cotangents))
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(
        params, jnp.asarray(visual, jnp.float32), jnp.asarray(words, jnp.float32))

  dense, factorized = grads('dense'), grads('factorized')
  leaves = zip(jax.tree.leaves(dense), jax.tree.leaves(factorized))
  for d, f in leaves:
    np.testing.assert_allclose(f, d, atol=1e-4, rtol=1e-4)
  assert np.abs(np.asarray(dense[1])).max() > 1e-3  # Not vacuous.
  assert np.abs(np.asarray(dense[0]['query']['kernel'][...])).max() > 1e-3


def test_bfloat16_compute_is_close_to_float32():
  visual, words = _inputs()
  f32 = _run(_module(), visual, words, MASK)
  bf16_module = _module(dtype=jnp.bfloat16)
  assert bf16_module.query.kernel[...].dtype == jnp.float32
  bf16 = _run(bf16_module, visual, words, MASK)
  for a, b in zip(bf16, f32):
    np.testing.assert_allclose(a, b, atol=5e-2 * np.abs(b).max())


def test_rejects_bad_inputs():
  visual, words = _inputs()
  module = _module()
  v, e, m = (jnp.asarray(visual, jnp.float32), jnp.asarray(words, jnp.float32),
             jnp.asarray(MASK))
  with pytest.raises(ValueError, match='visual'):
    module(v[..., :-1], e, m)
  with pytest.raises(ValueError, match='words'):
    module(v, e[..., :-1], m)
  with pytest.raises(ValueError, match='mask'):
    module(v, e, m[:, :-1])
  with pytest.raises(ValueError, match='mismatched'):
    module(v, e[:1], m[:1])


@pytest.mark.parametrize('kwargs, match', [
    (dict(impl='flash'), 'impl'),
    (dict(pooling='median'), 'pooling'),
    (dict(word_weight='max'), 'word_weight'),
    (dict(attention='cross'), 'attention'),
    (dict(attention='none', pooling='attention'), 'attention'),
    (dict(qk_init_scale=0.0), 'qk_init_scale'),
])
def test_rejects_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    cmsa.CMSA(CV, CL, rngs=nnx.Rngs(0), **kwargs)


def test_qk_init_scale_scales_only_query_and_key_kernels():
  make = lambda scale: cmsa.CMSA(CV, CL, attn_dim=D, qk_init_scale=scale, rngs=nnx.Rngs(3))
  flat = lambda m: dict(nnx.to_flat_state(nnx.state(m, nnx.Param)))
  base, scaled = flat(make(1.0)), flat(make(4.0))
  assert base.keys() == scaled.keys()
  for path, x in base.items():
    factor = 4.0 if path[0] in ('query', 'key') and path[-1] == 'kernel' else 1.0
    np.testing.assert_allclose(np.asarray(scaled[path].get_value()),
                               factor * np.asarray(x.get_value()), rtol=1e-6, err_msg=str(path))
