"""The 'transformer' text encoder: word table + a small transformer encoder, from scratch.

Vaswani et al. (2017), with the layer norm before each sub-layer (Xiong et
al., 2020: trains without warm-up) and a final one:
  x_0 = E[tokens] + P[0..N)                       (learned positions, max_len)
  x' = x + MHA(LN(x)),  x'' = x' + W_2 GELU(W_1 LN(x') + b_1) + b_2
  MHA(y) = [head_1, ..., head_H] W_O + b_O,
  head_h = softmax(Q_h K_h^T / sqrt(d_h) + M) V_h, Q_h = y W_Q^h + b_Q^h (likewise K, V),
M = -inf on padded keys, so no word attends to padding and changing it
changes nothing. e_n = LN(x_L)_n, width = dim.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models.text import contextual


def attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
  """Scaled dot-product attention per head: q, k, v (B, N, H, d), key_mask (B, N)."""
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) / jnp.sqrt(q.shape[-1])
  logits = jnp.where(key_mask[:, None, None, :], logits, -jnp.inf)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum('bhqk,bkhd->bqhd', weights, v)


class Layer(nnx.Module):
  """One pre-LN encoder layer: multi-head self-attention, then the MLP."""

  def __init__(self, dim: int, heads: int, mlp_dim: int, *, dtype, rngs: nnx.Rngs):
    linear = lambda i, o: nnx.Linear(i, o, dtype=dtype, rngs=rngs)
    self.heads = heads
    self.attention_norm = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.query, self.key, self.value = linear(dim, dim), linear(dim, dim), linear(dim, dim)
    self.out = linear(dim, dim)
    self.mlp_norm = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.mlp_in, self.mlp_out = linear(dim, mlp_dim), linear(mlp_dim, dim)

  def __call__(self, x: jax.Array, token_mask: jax.Array) -> jax.Array:
    b, n, dim = x.shape
    y = self.attention_norm(x)
    split = lambda t: t.reshape(b, n, self.heads, dim // self.heads)
    heads = attention(split(self.query(y)), split(self.key(y)), split(self.value(y)),
                      token_mask)
    x = x + self.out(heads.reshape(b, n, dim))
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(x)), approximate=False))


class Encoder(contextual.Contextual):
  """Word table (vocab_size, dim) + positions + `layers` encoder layers -> (B, N, dim)."""

  def __init__(self, *, vocab_size: int, dim: int = 1000, layers: int = 2, heads: int = 4,
               mlp_dim: int | None = None, max_len: int = 64, frozen: bool = False,
               dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % heads or layers < 1:
      raise errors.ConfigError(f'transformer needs dim divisible by heads and layers >= 1, '
                               f'got dim={dim}, heads={heads}, layers={layers}.')
    super().__init__(vocab_size=vocab_size, dim=dim, frozen=frozen, dtype=dtype, rngs=rngs)
    self.position = nnx.Param(jax.random.normal(rngs.params(), (max_len, dim)) * 0.02)
    self.layers = nnx.List([Layer(dim, heads, mlp_dim or 4 * dim, dtype=dtype, rngs=rngs)
                            for _ in range(layers)])
    self.norm = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)

  def contextualize(self, x, token_mask):
    n, max_len = x.shape[1], self.position.shape[0]
    if n > max_len:
      raise ValueError(f'transformer text encoder: {n} tokens, more than max_len={max_len}.')
    x = x + self.position[...][:n].astype(x.dtype)
    for layer in self.layers:
      x = layer(x, token_mask)
    return self.norm(x)
