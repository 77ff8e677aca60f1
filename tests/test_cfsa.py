"""Eq.9-11: cross-frame self-attention, the blocked path against the dense one and
both against the NumPy reference written from the equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import references
from cmsa_jax.models import cfsa

B, T, H, W, C, D = 2, 5, 2, 3, 4, 6
FULL = np.ones((B, T), bool)
PADDED = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], bool)  # Clips at a video's ends.


def _visual(seed=0, t=T):
  x = np.random.default_rng(seed).normal(size=(B, t, H, W, C))
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


TOKENS_VALUES = [('position', 'linear'), ('visual', 'linear'), ('position', 'moments'),
                 ('relative', 'linear'), ('relative', 'moments')]


def _module(impl, frame_weight='temperature', tokens='position', values='linear'):
  module = cfsa.CFSA(C, attn_dim=D, impl=impl, frame_weight=frame_weight, tokens=tokens,
                     values=values, rngs=nnx.Rngs(1))
  # Larger q/k weights than Xavier's so the attention is far from uniform.
  module.query.kernel[...] = module.query.kernel[...] * 4
  if frame_weight == 'temperature':
    module.frame_log_temperature[...] = 0.6
  return module


def _run(module, visual, mask):
  return [np.asarray(x, np.float64) for x in module(jnp.asarray(visual, jnp.float32), mask)]


@pytest.mark.parametrize('frame_weight', cfsa.FRAME_WEIGHTS)
@pytest.mark.parametrize('mask', [FULL, PADDED], ids=['full', 'padded'])
def test_both_impls_match_numpy_reference_and_each_other(frame_weight, mask):
  visual = _visual()
  names = ('features', 'frame_weights', 'frame_attention')
  got = {}
  for impl in cfsa.IMPLS:
    module = _module(impl, frame_weight)
    got[impl] = _run(module, visual, mask)
    want = references.cfsa_features(module, visual, mask, frame_weight)
    for name, g, x in zip(names, got[impl], want):
      np.testing.assert_allclose(g, x, atol=1e-4, rtol=0, err_msg=f'{impl} {name}')
  for name, blocked, dense in zip(names, got['blocked'], got['dense']):
    np.testing.assert_allclose(blocked, dense, atol=1e-5, rtol=0, err_msg=name)
  weights, pair = got['blocked'][1:]
  np.testing.assert_allclose(weights.sum(1), 1, atol=1e-6)
  assert np.all(weights[~mask] == 0) and np.all(weights[mask] > 0)
  np.testing.assert_allclose(pair.sum(2), mask, atol=1e-5)  # Each valid frame's rows sum to 1.
  assert np.all(pair[np.broadcast_to(~mask[:, None], pair.shape)] == 0)  # No invalid key.


@pytest.mark.parametrize('tokens,values', TOKENS_VALUES[1:])
@pytest.mark.parametrize('mask', [FULL, PADDED], ids=['full', 'padded'])
def test_tokens_and_values_match_numpy_reference(tokens, values, mask):
  """The paper's visual tokens, the relative tokens and the time-moment values, dense
  and blocked."""
  visual = _visual(2)
  got = {}
  for impl in cfsa.IMPLS:
    module = _module(impl, 'temperature', tokens, values)
    module.value.kernel[...] = module.value.kernel[...] * 3  # Values far from 0.
    if tokens == 'relative':
      module.log_locality[...] = np.log(2.5)  # Not the initial value.
    got[impl] = _run(module, visual, mask)
    want = references.cfsa_features(module, visual, mask, 'temperature', tokens, values)
    for g, x in zip(got[impl], want):
      np.testing.assert_allclose(g, x, atol=1e-4, rtol=0, err_msg=impl)
  for blocked, dense in zip(got['blocked'], got['dense']):
    np.testing.assert_allclose(blocked, dense, atol=1e-5, rtol=0)


def test_moment_values_see_the_direction_of_time():
  """Linear values give the same V̂ for a clip and its time reversal when the
  attention is uniform; moment values (δ g) tell them apart."""
  visual = _visual(3)
  reverse = visual[:, ::-1]
  outputs = {}
  for values in cfsa.VALUES:
    module = _module('dense', 'mean', 'visual' if values == 'linear' else 'position', values)
    module.query.kernel[...] = module.query.kernel[...] * 0  # Uniform attention.
    outputs[values] = [_run(module, x, FULL)[0] for x in (visual, reverse)]
  np.testing.assert_allclose(*outputs['linear'], atol=1e-5)
  assert np.abs(outputs['moments'][0] - outputs['moments'][1]).max() > 1e-2


@pytest.mark.parametrize('tokens', cfsa.TOKENS)
def test_query_attention_is_the_annotated_frames_rows(tokens):
  """query_attention = sum_p w_p r(t'p' | cp): with one-hot w, the reference's row."""
  visual = _visual(5)
  module = _module('blocked', 'temperature', tokens)
  rows = references.cfsa_features(module, visual, PADDED, 'temperature', tokens)[3]
  for p in (0, H * W - 1):
    weights = np.zeros((B, H * W), np.float32)
    weights[:, p] = 1
    got = module.query_attention(jnp.asarray(visual, jnp.float32), PADDED,
                                 jnp.asarray(weights.reshape(B, H, W)))
    np.testing.assert_allclose(np.asarray(got).reshape(B, -1), rows[:, p], atol=1e-5)
    assert np.all(np.asarray(got)[~PADDED] == 0)  # Padded frames are never keys.


def test_relative_values_see_where_the_match_went():
  """A shape of its own look moves one cell right (or left) per frame: with relative
  tokens and moment values, V̂ at its annotated pixel tells the two apart, and a
  shape's V̂ does not depend on where the same motion happens (values built from
  x_p' - x_p, the locality term from the distance)."""
  t, h, w = 3, 1, 7
  look, ground = np.eye(C)[0], np.eye(C)[1]

  def clip(start, step):
    x = np.broadcast_to(ground, (1, t, h, w, C)).copy()
    for f in range(t):
      x[0, f, 0, start + step * (f - t // 2)] = look
    return np.repeat(x, B, 0)

  module = cfsa.CFSA(C, attn_dim=D, impl='dense', tokens='relative', values='moments',
                     frame_weight='mean', rngs=nnx.Rngs(3))
  match = jnp.zeros_like(module.query.kernel[...]).at[0, 0].set(5)  # q.k = 25 look on look.
  module.query.kernel[...], module.key.kernel[...] = match, match
  module.query.bias[...] = module.query.bias[...] * 0
  v_hat = lambda x, col: _run(module, x, np.ones((B, t), bool))[0][0, 0, col] - x[0, t // 2, 0, col]
  right, left = v_hat(clip(3, 1), 3), v_hat(clip(3, -1), 3)
  assert np.abs(right - left).max() > 1e-2
  np.testing.assert_allclose(v_hat(clip(2, 1), 2), right, atol=1e-2)


def test_zero_out_init_starts_as_the_annotated_frame():
  visual = _visual(4)
  module = cfsa.CFSA(C, attn_dim=D, impl='dense', out_init='zeros', rngs=nnx.Rngs(1))
  features = _run(module, visual, PADDED)[0]
  np.testing.assert_allclose(features, visual[:, T // 2], atol=1e-6)  # V_c + W_o·0 + 0.
  assert np.abs(_run(_module('dense'), visual, PADDED)[0] - visual[:, T // 2]).max() > 1e-2
  with pytest.raises(ValueError, match='cfsa_out_init'):
    cfsa.CFSA(C, out_init='ones', rngs=nnx.Rngs(0))


def test_weights_are_selective_and_not_uniform():
  """Column sums: frames differ in what they receive (row sums would make α uniform)."""
  weights = _run(_module('blocked', 'sum'), _visual(), FULL)[1]
  assert np.ptp(weights, axis=1).min() > 1e-3


@pytest.mark.parametrize('tokens,values', TOKENS_VALUES)
@pytest.mark.parametrize('impl', cfsa.IMPLS)
def test_padded_frames_do_not_matter(impl, tokens, values):
  """What an edge-padded frame holds changes nothing: it is neither key, query nor pooled."""
  module = _module(impl, 'temperature', tokens, values)
  visual, other = _visual(0), _visual(1)
  changed = np.where(PADDED[:, :, None, None, None], visual, other)
  a, b = _run(module, visual, PADDED), _run(module, changed, PADDED)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, atol=1e-6)
  assert not np.allclose(_run(module, changed, FULL)[0], a[0], atol=1e-3)  # They would, if valid.


def test_blocked_gradients_match_dense():
  visual = jnp.asarray(_visual(), jnp.float32)
  grads = {}
  for impl in cfsa.IMPLS:
    graphdef, state = nnx.split(_module(impl))

    def loss(state, visual):
      out = nnx.merge(graphdef, state)(visual, PADDED)
      return jnp.sum(jnp.tanh(out.features)) + jnp.sum(out.frame_weights * jnp.arange(T))

    grads[impl] = jax.grad(loss, argnums=(0, 1))(state, visual)
  flat = lambda g: np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
  dense, blocked = flat(grads['dense']), flat(grads['blocked'])
  assert np.abs(dense).max() > 1e-3
  np.testing.assert_allclose(blocked, dense, atol=1e-5 * np.abs(dense).max())


def _largest_intermediate(jaxpr):
  """Elements of the largest array any equation (nested ones too) produces."""
  largest = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      largest = max(largest, int(np.prod(getattr(var.aval, 'shape', ()))))
    for sub in jax.core.jaxprs_in_params(eqn.params):
      largest = max(largest, _largest_intermediate(sub))
  return largest


@pytest.mark.parametrize('impl', cfsa.IMPLS)
def test_blocked_never_builds_the_clip_attention_matrix(impl):
  t, h, w = 5, 6, 6
  graphdef, state = nnx.split(_module(impl))
  visual = jnp.zeros((1, t, h, w, C))

  def loss(state, visual):
    out = nnx.merge(graphdef, state)(visual, jnp.ones((1, t), bool))
    return jnp.sum(out.features) + jnp.sum(out.frame_weights)

  jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(state, visual).jaxpr
  clip_matrix = (t * h * w)**2
  largest = _largest_intermediate(jaxpr)
  if impl == 'dense':
    assert largest >= clip_matrix
  else:
    assert largest <= t * (h * w)**2 < clip_matrix  # One query frame's row of blocks.


def test_bad_shapes_and_choices_are_rejected():
  with pytest.raises(ValueError, match='T odd'):
    _module('blocked')(jnp.zeros((1, 4, H, W, C)), np.ones((1, 4), bool))
  with pytest.raises(ValueError, match='frame_weight'):
    cfsa.CFSA(C, frame_weight='max', rngs=nnx.Rngs(0))
  for name, value in (('cfsa_tokens', 'rgb'), ('cfsa_values', 'cubic')):
    with pytest.raises(ValueError, match=name):
      cfsa.CFSA(C, **{name[5:]: value}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="cfsa_values='moments' with cfsa_tokens='visual'") as e:
    cfsa.CFSA(C, tokens='visual', values='moments', rngs=nnx.Rngs(0))
  assert '\n' not in str(e.value)
