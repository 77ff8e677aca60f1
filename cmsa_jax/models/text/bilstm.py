"""The 'bilstm' text encoder: word table + bidirectional LSTM, trained from scratch.

e_n = [h_n(forward), h_n(backward)], each direction `dim // 2` wide (width =
dim), `layers` stacked. The LSTM cell as Hochreiter & Schmidhuber (1997) with a
forget gate (Gers et al., 2000), in the form of PyTorch's nn.LSTM:
  i = σ(W_i x + U_i h + b_i)    f = σ(W_f x + U_f h + b_f)
  g = tanh(W_g x + U_g h + b_g) o = σ(W_o x + U_o h + b_o)
  c' = f ⊙ c + i ⊙ g            h' = o ⊙ tanh(c')
Each direction starts from h = c = 0 and skips padded positions (its state
passes them unchanged), so a word's feature depends on every valid word and
on no padding. The forget-gate bias starts at 1 (Jozefowicz et al., 2015).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models.text import contextual

GATES = ('i', 'f', 'g', 'o')  # Order of the 4 blocks of the input/hidden kernels.


class LSTM(nnx.Module):
  """One direction of one layer: `input` (W, b) and `hidden` (U) maps to the 4 gates."""

  def __init__(self, in_dim: int, hidden: int, *, dtype, rngs: nnx.Rngs):
    self.hidden_dim = hidden
    self.input = nnx.Linear(in_dim, 4 * hidden, dtype=dtype, rngs=rngs,
                            bias_init=lambda *_: jnp.zeros(4 * hidden).at[hidden:2 * hidden].set(1))
    self.hidden = nnx.Linear(hidden, 4 * hidden, use_bias=False, dtype=dtype, rngs=rngs,
                             kernel_init=nnx.initializers.orthogonal())
    self.dtype = dtype

  def __call__(self, x: jax.Array, token_mask: jax.Array, *, reverse: bool) -> jax.Array:
    """x (B, N, in) -> h (B, N, hidden); padded positions carry the state through."""
    b, n, _ = x.shape
    projected = self.input(x)  # W x + b for every position at once.
    u = self.hidden.kernel[...].astype(self.dtype)

    def step(carry, inputs):
      h, c = carry
      wx, valid = inputs
      i, f, g, o = jnp.split(wx + h @ u, 4, axis=-1)
      c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
      h, c = jnp.where(valid, h_new, h), jnp.where(valid, c_new, c)
      return (h, c), h

    zeros = jnp.zeros((b, self.hidden_dim), projected.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros),
                         (projected.swapaxes(0, 1), token_mask.T[..., None]), reverse=reverse)
    return hs.swapaxes(0, 1)


class Encoder(contextual.Contextual):
  """Word table (vocab_size, dim) + `layers` bidirectional LSTM layers -> (B, N, dim)."""

  def __init__(self, *, vocab_size: int, dim: int = 1000, layers: int = 1,
               frozen: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % 2 or layers < 1:
      raise errors.ConfigError(f'bilstm needs an even dim and layers >= 1, got dim={dim}, '
                               f'layers={layers}.')
    super().__init__(vocab_size=vocab_size, dim=dim, frozen=frozen, dtype=dtype, rngs=rngs)
    self.forward = nnx.List([LSTM(dim, dim // 2, dtype=dtype, rngs=rngs) for _ in range(layers)])
    self.backward = nnx.List([LSTM(dim, dim // 2, dtype=dtype, rngs=rngs) for _ in range(layers)])

  def contextualize(self, x, token_mask):
    for forward, backward in zip(self.forward, self.backward):
      x = jnp.concatenate([forward(x, token_mask, reverse=False),
                           backward(x, token_mask, reverse=True)], axis=-1)
    return x
