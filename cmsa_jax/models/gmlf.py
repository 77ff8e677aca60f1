"""Gated multi-level fusion (Eq.6-7) and the score map.

Per level i a 1x1 conv maps the pooled CMSA feature to X^i (`dim` channels;
`relu=True` puts a ReLU after it, as the official code does); single-channel
memory and reset gates m^i = sigmoid(W_m^i X^i + b), r^i = sigmoid(W_r^i X^i + b)
(1x1 convs); a learnable scalar gamma^j per level.

  G^i   = (1 - m^i) X^i + sum_{j != i} gamma^j m^j X^j                 (Eq.6)
  F_o^i = r^i tanh(G^i) + (1 - r^i) X^i                                (Eq.6)
  P     = sigmoid(C_3x3(sum_i F_o^i))                                 (Eq.7)

The memory gate m^i decides how much of level i is written out to the other
levels and, through 1 - m^i, how much of it stays. This module returns the
logits C_3x3(...); the sigmoid is in the loss. Table 2's `fusion` ablation:
  'res5':       one level (Res5), X directly to the score conv.
  'sum':        sum_i X^i.
  'self_gated': Eq.6 with G^i = m^i X^i (no cross-level term).
  'gated':      Eq.6-7 (GMLF).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax import errors

FUSIONS = ('res5', 'sum', 'self_gated', 'gated')
GAMMA_INIT = 0.5  # As the official code's trainable alpha = 0.5.
GATE_BIAS_INIT = 1.0  # The official code's sigmoid(x + 1): gates start open.


class GMLF(nnx.Module):
  """Fuses per-level features (B, h, w, C_i) into logits (B, h, w)."""

  def __init__(self, in_dims: Sequence[int], *, dim: int = 500,
               fusion: str = 'gated', relu: bool = False, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if fusion not in FUSIONS:
      raise errors.ConfigError(f'fusion must be one of {FUSIONS}, got {fusion!r}.')
    if not in_dims or (fusion == 'res5' and len(in_dims) != 1):
      raise ValueError(f'fusion={fusion!r} got in_dims={tuple(in_dims)}: '
                       "need >= 1 level, exactly 1 for 'res5'.")
    self.in_dims, self.fusion, self.relu, self.dtype = tuple(in_dims), fusion, relu, dtype
    conv = lambda i, o, k, **kw: nnx.Conv(
        i, o, (k, k), padding='SAME', dtype=dtype,
        kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs, **kw)
    self.project = nnx.List([conv(c, dim, 1) for c in in_dims])  # X^i
    if fusion in ('self_gated', 'gated'):
      gate = lambda: conv(dim, 1, 1, bias_init=nnx.initializers.constant(GATE_BIAS_INIT))
      self.memory_gate = nnx.List([gate() for _ in in_dims])
      self.reset_gate = nnx.List([gate() for _ in in_dims])
    if fusion == 'gated':
      self.gamma = nnx.Param(jnp.full((len(in_dims),), GAMMA_INIT, jnp.float32))
    self.score = conv(dim, 1, 3)

  def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
    if len(features) != len(self.in_dims) or any(
        f.shape[-1] != c for f, c in zip(features, self.in_dims)):
      raise ValueError(f'GMLF expects {len(self.in_dims)} features with '
                       f'channels {self.in_dims}, got shapes '
                       f'{[f.shape for f in features]}.')
    xs = [proj(f.astype(self.dtype)) for proj, f in zip(self.project, features)]
    if self.relu:
      xs = [jax.nn.relu(x) for x in xs]
    if self.fusion in ('res5', 'sum'):
      return self.score(sum(xs))[..., 0].astype(jnp.float32)
    m = [jax.nn.sigmoid(g(x)) for g, x in zip(self.memory_gate, xs)]
    if self.fusion == 'self_gated':
      g_in = [m_i * x for m_i, x in zip(m, xs)]
    else:  # Eq.6: G^i = (1 - m^i) X^i + (sum_j gamma^j m^j X^j) - gamma^i m^i X^i.
      gamma = self.gamma[...].astype(self.dtype)
      shared = [g * m_j * x for g, m_j, x in zip(gamma, m, xs)]
      total = sum(shared)
      g_in = [(1 - m_i) * x + total - s for m_i, x, s in zip(m, xs, shared)]
    fused = 0
    for gate, g_i, x in zip(self.reset_gate, g_in, xs):  # Eq.6, F_o^i.
      r = jax.nn.sigmoid(gate(x))
      fused = fused + r * jnp.tanh(g_i) + (1 - r) * x
    return self.score(fused)[..., 0].astype(jnp.float32)  # Eq.7 (sigmoid in the loss).
