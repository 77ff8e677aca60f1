"""Text encoders by name: `config.model.text_encoder`, built with `config.model.text_args`.

A text encoder is an nnx.Module with
  __call__(tokens (B, N) int, token_mask (B, N) bool) -> (B, N, width)
      (tokens (B, N, K) for a part whose tokenizer gives K sub-word ids per word)
      one feature per word: e_n of Eq.1 (the model L2-normalises it, as Eq.1
      says, then joins it to every pixel's visual feature). Word n's feature may
      depend on the other valid words (a contextual encoder) but never on padded
      positions (token_mask False) nor on the ids stored there; the model
      ignores the features at padded positions.
  width: int       the feature width C_l.
  frozen: bool     whether training leaves its parameters as they are.
  load(path)       pretrained weights, key table + shape check per tensor.
  tokenizer(**text_args) (classmethod)
      None: the encoder reads the ids of the dataset's vocabulary
      (cmsa_jax/data/text.py: the training words, 0 <pad>, 1 <unk>), whose size
      the model passes as `vocab_size`. A part with a vocabulary of its own (e.g.
      a pretrained WordPiece model, whose ids are sub-tokens it maps back to
      words) returns its tokenizer instead: an object with the interface of
      data.text.Vocabulary (`encode(text, max_len, strict=)`, `len()`,
      `to_dict()`, `tokenize(text)` -> words); the run loop then encodes every
      expression with it, builds the part with `vocab_size=len(tokenizer)` and
      saves `to_dict()` with each checkpoint (restored by
      cmsa_jax.run.checkpoints.vocabulary_from_dict, no tokenizer file needed).
It is built as `cls(**text_args, vocab_size=..., dtype=..., rngs=...)`.

Adding a text encoder: a module here defining such a class, and one line below.
"""

from cmsa_jax.models import parts
from cmsa_jax.models.text import bert
from cmsa_jax.models.text import bilstm
from cmsa_jax.models.text import embed
from cmsa_jax.models.text import transformer

REGISTRY = parts.Registry('text_encoder', {
    'embed': embed.Encoder,  # The paper's: one learned vector per word, no context.
    'bert': bert.Bert,  # Pretrained BERT (the user's checkpoint), its own WordPiece tokenizer.
    'bilstm': bilstm.Encoder,  # Bidirectional LSTM over the words, from scratch.
    'transformer': transformer.Encoder,  # Small pre-LN transformer encoder, from scratch.
})


def tokenizer(name: str, args=None):
  """The tokenizer the text encoder `name` brings with `args`, or None (see above)."""
  return REGISTRY.get(name).tokenizer(**dict(args or {}))
