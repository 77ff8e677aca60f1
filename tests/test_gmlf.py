"""Eq.6-7: gated multi-level fusion and its ablations."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import references
from cmsa_jax.models import gmlf

B, H, W, DIM = 2, 4, 5, 6
IN_DIMS = (3, 7, 4)


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('fusion', gmlf.FUSIONS)
def test_matches_numpy_reference(fusion, relu):
  in_dims = IN_DIMS[-1:] if fusion == 'res5' else IN_DIMS
  module = gmlf.GMLF(in_dims, dim=DIM, fusion=fusion, relu=relu, rngs=nnx.Rngs(0))
  if fusion == 'gated':  # Distinct gammas, so a swapped index would show.
    module.gamma[...] = jnp.array([0.3, -0.7, 1.2])
  rng = np.random.default_rng(1)
  features = [rng.normal(size=(B, H, W, c)) for c in in_dims]
  got = module([jnp.asarray(f, jnp.float32) for f in features])
  assert got.shape == (B, H, W) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, references.gmlf_logits(module, features, fusion, relu),
                             atol=1e-4, rtol=0)


def test_memory_gate_moves_a_level_out_of_its_own_path():
  """Eq.6 with m^i = 1 everywhere: G^i = sum_{j != i} gamma^j X^j, no own X^i."""
  module = gmlf.GMLF(IN_DIMS, dim=DIM, fusion='gated', rngs=nnx.Rngs(0))
  for gate in module.memory_gate:  # sigmoid(40) == 1 in float32.
    gate.kernel[...] = jnp.zeros_like(gate.kernel[...])
    gate.bias[...] = jnp.full_like(gate.bias[...], 40.0)
  module.gamma[...] = jnp.array([0.3, -0.7, 1.2])
  rng = np.random.default_rng(3)
  features = [rng.normal(size=(B, H, W, c)) for c in IN_DIMS]
  xs = [references.conv_same(f, p) for f, p in zip(features, module.project)]
  r = [references.sigmoid(references.conv_same(x, g)) for x, g in zip(xs, module.reset_gate)]
  gamma = [0.3, -0.7, 1.2]
  fused = sum(r[i] * np.tanh(sum(gamma[j] * xs[j] for j in range(3) if j != i))
              + (1 - r[i]) * xs[i] for i in range(3))
  want = references.conv_same(fused, module.score)[..., 0]
  got = module([jnp.asarray(f, jnp.float32) for f in features])
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_variants_differ():
  rng = np.random.default_rng(2)
  features = [jnp.asarray(rng.normal(size=(B, H, W, c)), jnp.float32) for c in IN_DIMS]
  outs = {f: np.asarray(gmlf.GMLF(IN_DIMS, dim=DIM, fusion=f, rngs=nnx.Rngs(0))(features))
          for f in ('sum', 'self_gated', 'gated')}
  assert np.abs(outs['gated'] - outs['self_gated']).max() > 1e-3
  assert np.abs(outs['self_gated'] - outs['sum']).max() > 1e-3


def test_gamma_is_learnable_per_level():
  module = gmlf.GMLF(IN_DIMS, dim=DIM, rngs=nnx.Rngs(0))
  params = nnx.state(module, nnx.Param)
  assert params['gamma'][...].shape == (3,)
  np.testing.assert_allclose(params['gamma'][...], gmlf.GAMMA_INIT)


@pytest.mark.parametrize('in_dims, fusion, match', [
    (IN_DIMS, 'res5', 'exactly 1'),
    ((), 'gated', '>= 1'),
    (IN_DIMS, 'concat', 'fusion'),
])
def test_rejects_bad_options(in_dims, fusion, match):
  with pytest.raises(ValueError, match=match):
    gmlf.GMLF(in_dims, dim=DIM, fusion=fusion, rngs=nnx.Rngs(0))


def test_rejects_bad_features():
  module = gmlf.GMLF(IN_DIMS, dim=DIM, rngs=nnx.Rngs(0))
  ok = [jnp.zeros((B, H, W, c)) for c in IN_DIMS]
  with pytest.raises(ValueError, match='3 features'):
    module(ok[:2])
  with pytest.raises(ValueError, match='channels'):
    module(ok[:2] + [jnp.zeros((B, H, W, 5))])
