"""Gated multi-level fusion (Eq.6-7) and the score map.

Per level i a 1x1 conv maps the pooled CMSA feature to X^i (`dim` channels);
single-channel memory and reset gates m^i = sigmoid(W_m^i X^i + b),
r^i = sigmoid(W_r^i X^i + b) (1x1 convs); a learnable scalar gamma^j per level.

  F_o^i = m^i X^i + sum_{j != i} gamma^j m^j X^j                      (Eq.6)
  C^i   = r^i * tanh(F_o^i) + (1 - r^i) * X^i                        (Eq.7)

The fused map sum_i C^i goes through a 3x3 conv to one logit per pixel.
Table 2's `fusion` ablation:
  'res5':       one level (Res5), X directly to the score conv.
  'sum':        sum_i X^i.
  'self_gated': Eq.7 with F_o^i = m^i X^i (no cross-level term).
  'gated':      Eq.6-7 (GMLF).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

FUSIONS = ('res5', 'sum', 'self_gated', 'gated')
GAMMA_INIT = 0.5  # As the official code's trainable alpha = 0.5.
GATE_BIAS_INIT = 1.0  # The official code's sigmoid(x + 1): gates start open.


class GMLF(nnx.Module):
  """Fuses per-level features (B, h, w, C_i) into logits (B, h, w)."""

  def __init__(self, in_dims: Sequence[int], *, dim: int = 500,
               fusion: str = 'gated', dtype=jnp.float32, rngs: nnx.Rngs):
    if fusion not in FUSIONS:
      raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}.')
    if not in_dims or (fusion == 'res5' and len(in_dims) != 1):
      raise ValueError(f'fusion={fusion!r} got in_dims={tuple(in_dims)}: '
                       "need >= 1 level, exactly 1 for 'res5'.")
    self.in_dims, self.fusion, self.dtype = tuple(in_dims), fusion, dtype
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
    if self.fusion in ('res5', 'sum'):
      fused = sum(xs)
    else:
      memory = [jax.nn.sigmoid(g(x)) * x for g, x in zip(self.memory_gate, xs)]
      if self.fusion == 'gated':  # Eq.6: F_o^i = total - gamma^i m^i X^i + m^i X^i.
        gamma = self.gamma[...].astype(self.dtype)
        total = sum(g * mx for g, mx in zip(gamma, memory))
        memory = [mx + total - g * mx for g, mx in zip(gamma, memory)]
      fused = 0
      for gate, f_o, x in zip(self.reset_gate, memory, xs):  # Eq.7
        r = jax.nn.sigmoid(gate(x))
        fused = fused + r * jnp.tanh(f_o) + (1 - r) * x
    return self.score(fused)[..., 0].astype(jnp.float32)
