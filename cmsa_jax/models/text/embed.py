"""The 'embed' text encoder, the paper's: one learned vector per word (Eq.1's e_n).

No context: a word's feature is the same whatever the other words are. Its
table is `embedding` (vocab_size, dim), initialised uniform in [-0.08, 0.08)
as the official code; the contextual encoders start from the same table
(`Encoder.embed`) and add their layers on top.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax.models import weights


def embedding_init(key, shape, dtype=jnp.float32):
  """Uniform in [-0.08, 0.08), as the official code."""
  return jax.random.uniform(key, shape, dtype, -0.08, 0.08)


class Encoder(nnx.Module):
  """Word embedding: tokens (B, N) -> (B, N, dim); `dim` is C_l (the paper: 1000)."""

  def __init__(self, *, vocab_size: int, dim: int = 1000, frozen: bool = False,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.embedding = nnx.Param(embedding_init(rngs.params(), (vocab_size, dim)))
    self.vocab_size, self.width = vocab_size, dim
    self.frozen = frozen
    self.dtype = dtype

  @classmethod
  def tokenizer(cls, **unused_args):
    """None: the dataset's vocabulary (see cmsa_jax/models/text/__init__.py)."""
    return None

  def embed(self, tokens: jax.Array) -> jax.Array:
    """The table's rows for `tokens` (B, N) int, in the compute dtype."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f'tokens must be integer (B, N) word ids, got {tokens.dtype} '
                       f'{tokens.shape}.')
    return jnp.take(self.embedding[...].astype(self.dtype), tokens, axis=0)

  def __call__(self, tokens: jax.Array, token_mask: jax.Array) -> jax.Array:
    del token_mask  # Each word is embedded alone.
    return self.embed(tokens)

  def load(self, path: str) -> None:
    """A `weights.save_npz` file of this encoder (key 'embedding', shape checked)."""
    state_dict = weights.load_state_dict(
        path, 'Write one with cmsa_jax.models.weights.save_npz(model.embed, path).')
    weights.load_npz(self, state_dict, what=f'{type(self).__module__} text encoder',
                     source=f'weights file {path}')
