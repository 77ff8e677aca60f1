"""What the contextual text encoders share: the word table of the paper's encoder
(embed.Encoder) under a layer that mixes the words of one expression.

A `Contextual` encoder subclasses it and defines `contextualize(x, token_mask)`
on the embedded words (B, N, dim); its output is e_n of Eq.1 at the valid
positions and 0 at padded ones. Padded positions never reach a valid word
(`masked` / the layers' own masks), so changing them changes nothing.
"""

import jax
import jax.numpy as jnp

from cmsa_jax.models.text import embed


def masked(x: jax.Array, token_mask: jax.Array) -> jax.Array:
  """x (B, N, C) with 0 at padded positions (token_mask False)."""
  return jnp.where(token_mask[..., None], x, jnp.zeros((), x.dtype))


class Contextual(embed.Encoder):
  """embed.Encoder's table, then `contextualize`: each word sees the whole expression."""

  def contextualize(self, x: jax.Array, token_mask: jax.Array) -> jax.Array:
    raise NotImplementedError

  def __call__(self, tokens: jax.Array, token_mask: jax.Array) -> jax.Array:
    token_mask = jnp.asarray(token_mask, bool)
    x = masked(self.embed(tokens), token_mask)
    return masked(self.contextualize(x, token_mask), token_mask)
