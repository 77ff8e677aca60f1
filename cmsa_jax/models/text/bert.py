"""A pretrained BERT encoder (Devlin et al., 2019) as Eq.1's word features e_n.

The encoder is BERT's: embeddings (word + position + token type 0, LayerNorm),
then post-LN transformer layers (multi-head self-attention, residual,
LayerNorm; GELU feed-forward (erf form), residual, LayerNorm), LayerNorm eps
1e-12, padding masked out of every attention. No dropout: the encoder is used
frozen or fine-tuned without it.

Input: piece ids (B, N, K) from the tokenizer (wordpiece.py) -- the first K
WordPiece ids of each of the N words, negative ids on empty slots -- and the
word mask (B, N). The encoder packs them into BERT's input [CLS] pieces
[SEP] [PAD]... of static length min(N K + 2, max_sequence) (the tokenizer
drops the words that would not fit), runs BERT with the padding masked, and
gathers each word's pieces back: a batch keeps its static (B, N, K) shape,
Eq.1 sees at most N words, and BERT's cost is that of the packed length, not
of N K.

Per word, e_n is the output of its FIRST piece (`subword_pooling='first'`),
as Devlin et al. (Sec. 5.3) do for per-word tagging: a word's first piece
attends to its other pieces and to the whole expression, and the choice
does not depend on how many pieces were kept. 'mean' (the mean over the
word's kept pieces) is the switch for comparing.

Weights: `load(path)` reads a HuggingFace/PyTorch `model.safetensors` with
BERT's key names, with or without the `bert.` prefix, LayerNorm as
weight/bias or gamma/beta (bert-base-uncased's own file uses gamma/beta);
the pooler and pre-training/classifier heads are ignored. Nothing is
downloaded: a missing file is an error saying where to get one.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models import weights
from cmsa_jax.models.text import wordpiece

LAYER_NORM_EPS = 1e-12
POOLINGS = ('first', 'mean')
CHECKPOINT_HELP = (
    'Download a BERT checkpoint on a machine with internet, e.g. model.safetensors from the '
    'files of bert-base-uncased (https://huggingface.co/google-bert/bert-base-uncased/tree/main), '
    'with its tokenizer.json or vocab.txt, and set config.text_encoder_init to it.')
# Keys of BERT checkpoints with no counterpart in the encoder (after the `bert.` prefix).
IGNORED = {
    'pooler': ('pooler.*',),
    'pre-training and task heads': ('cls.*', 'classifier.*', 'qa_outputs.*'),
    'position-id buffer': ('*position_ids',),
}
PREFIX = 'bert.'


def _init(key, shape, dtype=jnp.float32):
  """BERT's initializer: normal, stddev 0.02."""
  return 0.02 * jax.random.normal(key, shape, dtype)


class Layer(nnx.Module):
  """One post-LN transformer layer of BERT."""

  def __init__(self, hidden, heads, intermediate, *, dtype, rngs):
    dense = lambda i, o: nnx.Linear(i, o, kernel_init=_init, dtype=dtype, rngs=rngs)
    norm = lambda: nnx.LayerNorm(hidden, epsilon=LAYER_NORM_EPS, dtype=dtype, rngs=rngs)
    self.heads = heads
    self.query, self.key, self.value = (dense(hidden, hidden) for _ in range(3))
    self.attention_output, self.attention_norm = dense(hidden, hidden), norm()
    self.intermediate, self.output = dense(hidden, intermediate), dense(intermediate, hidden)
    self.output_norm = norm()

  def __call__(self, x, mask):
    """x: (B, T, D); mask: (B, T) bool, False on slots no one attends to."""
    b, t, d = x.shape
    split = lambda y: y.reshape(b, t, self.heads, d // self.heads)
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) / np.sqrt(d // self.heads)
    scores = jnp.where(mask[:, None, None, :], scores, -jnp.inf)
    attention = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
    context = jnp.einsum('bhqk,bkhd->bqhd', attention, v).reshape(b, t, d)
    x = self.attention_norm(x + self.attention_output(context))
    return self.output_norm(x + self.output(jax.nn.gelu(self.intermediate(x), approximate=False)))


class Bert(nnx.Module):
  """BERT over each expression's pieces -> per-word features (B, N, hidden).

  Args (config.model.text_args, shared with `tokenizer`):
    tokenizer: path of the checkpoint's tokenizer.json or vocab.txt (read by
      `tokenizer` at training; checkpoints keep its vocabulary).
    max_pieces, max_sequence, lowercase: the tokenizer's (pieces kept per word;
      BERT's input length; None: as the tokenizer file says or implies).
    cls_id, sep_id: ids of [CLS] and [SEP] (Google's vocabularies: 101, 102).
    layers, hidden, heads, intermediate, max_positions, type_vocab: the
      checkpoint's size (defaults: bert-base).
    subword_pooling: 'first' (default) or 'mean' piece of each word.
    frozen: True keeps the pretrained weights; False fine-tunes them.
  """

  def __init__(self, *, vocab_size: int, tokenizer: str = '', max_pieces: int = 4,
               max_sequence: int = 32, lowercase: bool | None = None, cls_id: int = 101,
               sep_id: int = 102,
               layers: int = 12, hidden: int = 768, heads: int = 12, intermediate: int = 3072,
               max_positions: int = 512, type_vocab: int = 2, subword_pooling: str = 'first',
               frozen: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
    del max_pieces, lowercase  # The tokenizer's (see `tokenizer`).
    if subword_pooling not in POOLINGS:
      raise errors.ConfigError(f'subword_pooling must be one of {POOLINGS}, got '
                               f'{subword_pooling!r}')
    if not 3 <= max_sequence <= max_positions:
      raise errors.ConfigError(f'max_sequence must be in [3, max_positions={max_positions}], '
                               f'got {max_sequence}')
    if hidden % heads:
      raise errors.ConfigError(f'BERT hidden size {hidden} is not a multiple of heads {heads}')
    embed = lambda n: nnx.Embed(n, hidden, embedding_init=_init, dtype=dtype, rngs=rngs)
    self.word_embeddings = embed(vocab_size)
    self.position_embeddings = embed(max_positions)
    self.token_type_embeddings = embed(type_vocab)
    self.embeddings_norm = nnx.LayerNorm(hidden, epsilon=LAYER_NORM_EPS, dtype=dtype, rngs=rngs)
    self.layers = nnx.List([Layer(hidden, heads, intermediate, dtype=dtype, rngs=rngs)
                            for _ in range(layers)])
    self.cls_id, self.sep_id = cls_id, sep_id
    self.tokenizer_path = tokenizer
    self.subword_pooling = subword_pooling
    self.frozen = frozen
    self.width = hidden
    self.max_sequence = max_sequence

  @classmethod
  def tokenizer(cls, *, tokenizer: str = '', max_pieces: int = 4, max_sequence: int = 32,
                lowercase: bool | None = None, cls_id: int = 101, sep_id: int = 102,
                **unused_args):
    """The WordPiece tokenizer of file `tokenizer` (tokenizer.json or vocab.txt).

    Its [CLS] and [SEP] ids must be `cls_id` and `sep_id` (those of Google's
    BERT vocabularies by default), which the config keeps, so a checkpoint of
    the model restores without the tokenizer file.
    """
    if not tokenizer or not os.path.isfile(tokenizer):
      raise errors.NotFoundError(
          f'config.model.text_args.tokenizer={tokenizer!r}: no such file. '
          f'{wordpiece.TOKENIZER_HELP}')
    tok = wordpiece.WordPieceTokenizer.load(tokenizer, max_pieces=max_pieces,
                                            max_sequence=max_sequence, lowercase=lowercase)
    if (tok.cls_id, tok.sep_id) != (cls_id, sep_id):
      raise errors.ConfigError(
          f'the tokenizer {tokenizer} has [CLS] id {tok.cls_id} and [SEP] id {tok.sep_id}, the '
          f'config {cls_id} and {sep_id}: set config.model.text_args.cls_id={tok.cls_id} and '
          f'sep_id={tok.sep_id}.')
    return tok

  def __call__(self, tokens: jax.Array, token_mask: jax.Array) -> jax.Array:
    """tokens: (B, N, K) int piece ids, negative on empty slots; token_mask: (B, N)
    bool, True on words. Returns (B, N, hidden), 0 on padding words."""
    if tokens.ndim != 3 or token_mask.shape != tokens.shape[:2]:
      raise ValueError(f'BERT takes piece ids (B, N, K) and a word mask (B, N); got tokens '
                       f'{tokens.shape}, token_mask {token_mask.shape}.')
    b, n, k = tokens.shape
    length = min(n * k + 2, self.max_sequence)  # Static: [CLS] pieces [SEP] [PAD]...
    valid = (tokens >= 0) & token_mask[..., None]
    slot = jnp.cumsum(valid.reshape(b, n * k), 1).reshape(b, n, k)  # [CLS] is slot 0.
    valid &= slot <= length - 2  # Pieces past max_sequence (the tokenizer never makes them).
    count = jnp.sum(valid, (1, 2))
    rows = jnp.arange(b)
    ids = jnp.zeros((b, length), jnp.int32).at[:, 0].set(self.cls_id)
    ids = ids.at[rows[:, None], jnp.where(valid, slot, length).reshape(b, n * k)].set(
        tokens.reshape(b, n * k), mode='drop')
    ids = ids.at[rows, count + 1].set(self.sep_id)
    mask = jnp.arange(length)[None] <= (count + 1)[:, None]
    x = (self.word_embeddings(ids) + self.position_embeddings(jnp.arange(length))[None]
         + self.token_type_embeddings(jnp.zeros_like(ids)))
    x = self.embeddings_norm(x)
    for layer in self.layers:
      x = layer(x, mask)
    pieces = jnp.take_along_axis(x, jnp.where(valid, slot, 0).reshape(b, n * k, 1), 1)
    pieces = pieces.reshape(b, n, k, self.width)
    if self.subword_pooling == 'first':
      words = pieces[:, :, 0]
    else:
      weight = valid[..., None].astype(x.dtype)
      words = jnp.sum(pieces * weight, 2) / jnp.maximum(jnp.sum(weight, 2), 1)
    return jnp.where((token_mask & valid[:, :, 0])[..., None], words, 0)

  def key_table(self) -> weights.KeyTable:
    """Checkpoint key (without `bert.`) -> (nnx path, transform) for every parameter."""
    table = {f'embeddings.{name}.weight': ((name, 'embedding'), weights.IDENTITY)
             for name in ('word_embeddings', 'position_embeddings', 'token_type_embeddings')}
    table.update(_norm('embeddings.LayerNorm', ('embeddings_norm',)))
    for i in range(len(self.layers)):
      key, path = f'encoder.layer.{i}', ('layers', i)
      for torch_name, name in (('attention.self.query', 'query'), ('attention.self.key', 'key'),
                               ('attention.self.value', 'value'),
                               ('attention.output.dense', 'attention_output'),
                               ('intermediate.dense', 'intermediate'),
                               ('output.dense', 'output')):
        table[f'{key}.{torch_name}.weight'] = (path + (name, 'kernel'), weights.TRANSPOSE)
        table[f'{key}.{torch_name}.bias'] = (path + (name, 'bias'), weights.IDENTITY)
      table.update(_norm(f'{key}.attention.output.LayerNorm', path + ('attention_norm',)))
      table.update(_norm(f'{key}.output.LayerNorm', path + ('output_norm',)))
    return table

  def load(self, path: str) -> weights.ImportReport:
    """Copies a BERT checkpoint into the encoder through `key_table`, every tensor
    shape-checked (`weights.import_state_dict`).

    Raises errors.NotFoundError for a missing file, errors.ConfigError naming
    both sizes when the checkpoint's vocabulary differs from the tokenizer's,
    and a one-line errors.ConfigError naming every missing, unexpected and
    mis-shaped key; the encoder is then unchanged.
    """
    state_dict = read_checkpoint(path)
    rows = np.shape(state_dict.get('embeddings.word_embeddings.weight', ()))[:1]
    vocab_size = self.word_embeddings.embedding.shape[0]
    if rows and rows[0] != vocab_size:
      raise errors.ConfigError(
          f'the tokenizer {self.tokenizer_path} has {vocab_size} pieces but the BERT checkpoint '
          f'{path} embeds {rows[0]}: use the tokenizer file of that checkpoint.')
    return weights.import_state_dict(
        state_dict, self, self.key_table(), what=f'BERT encoder ({len(self.layers)} layers, '
        f'hidden {self.width})', source=f'BERT checkpoint {path}', ignored=IGNORED)


def _norm(key, path):
  """A LayerNorm's keys (as `read_checkpoint` names them: weight/bias)."""
  return {f'{key}.{name}': (path + (param,), weights.IDENTITY)
          for name, param in (('weight', 'scale'), ('bias', 'bias'))}


_LEGACY_NORM = {'.LayerNorm.gamma': '.LayerNorm.weight', '.LayerNorm.beta': '.LayerNorm.bias'}


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
  """{key: array} of a BERT checkpoint (.safetensors; .npz, .pth too), keys without the
  `bert.` prefix, LayerNorm gamma/beta (bert-base-uncased's own file) as weight/bias."""
  if not path or not os.path.isfile(path):
    raise errors.NotFoundError(f'no BERT checkpoint at {path!r}. {CHECKPOINT_HELP}')
  # A damaged file is an InputError naming it (weights.load_state_dict, fuzzed).
  state_dict = weights.load_state_dict(path, CHECKPOINT_HELP)
  if any(k.startswith(PREFIX + 'embeddings.') for k in state_dict):
    state_dict = {k.removeprefix(PREFIX): v for k, v in state_dict.items()}
  out = {}
  for key, value in state_dict.items():
    for old, new in _LEGACY_NORM.items():
      key = key[:-len(old)] + new if key.endswith(old) else key
    out[key] = value
  return out
