"""BERT's WordPiece tokenizer, read from a user's `tokenizer.json` or `vocab.txt`.

The algorithm of Devlin et al.'s BERT (google-research/bert, tokenization.py),
which HuggingFace's BertNormalizer + BertPreTokenizer + WordPiece reproduce:

1. Basic tokenization: drop NUL, U+FFFD and control characters, whitespace to
   ' ', a space around each CJK ideograph, split on whitespace; uncased models
   lower-case and strip accents (NFD, then drop combining marks, Mn); every
   punctuation character (ASCII symbols and Unicode category P*) is a token.
2. WordPiece: each such word is split greedily longest-match-first into
   vocabulary pieces, continuations prefixed with '##'; a word with no such
   split, or longer than `max_input_chars_per_word`, is one [UNK].

The words of step 1 are Eq.1's words (a trailing '.' or '?' is dropped, as by
`cmsa_jax.data.text.tokenize`): `encode` returns, per word, the ids of its
first `max_pieces` pieces, so a batch is static-shaped (max_words,
max_pieces) and Eq.1 still sees at most max_words words; words stop where
BERT's input [CLS] pieces [SEP] would exceed `max_sequence`. -1 fills the
empty piece slots.

Pure Python, no `tokenizers` dependency: the algorithm is ~60 lines and runs
once per expression in the data pipeline; benchmarks/wordpiece_vs_hf.py
checks it against HuggingFace `tokenizers` (0 of 5830 texts differ). It lives
with the encoder that owns it (models never import cmsa_jax.data).
"""

import json
import os
import unicodedata

from absl import logging
import numpy as np

from cmsa_jax import errors

NO_PIECE = -1  # Fills the piece slots of a word past its last piece, and of padding words.
SPECIAL = ('[PAD]', '[UNK]', '[CLS]', '[SEP]')
FORMAT = 'cmsa_jax.wordpiece/1'
TOKENIZER_HELP = (
    'Download the tokenizer of the checkpoint on a machine with internet, e.g. tokenizer.json '
    'or vocab.txt from the files of bert-base-uncased '
    '(https://huggingface.co/google-bert/bert-base-uncased/tree/main).')
# CJK Unified Ideographs blocks, as in BERT's _is_chinese_char.
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_whitespace(c):
  return c in ' \t\n\r' or unicodedata.category(c) == 'Zs'


def _is_control(c):
  return c not in '\t\n\r' and unicodedata.category(c) in ('Cc', 'Cf')


def _is_punctuation(c):
  cp = ord(c)
  return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
          or unicodedata.category(c).startswith('P'))


def _is_cjk(c):
  return any(low <= ord(c) <= high for low, high in _CJK)


def _strip_accents(word):
  return ''.join(c for c in unicodedata.normalize('NFD', word)
                 if unicodedata.category(c) != 'Mn')


def _split_punctuation(word):
  out, current = [], ''
  for c in word:
    if _is_punctuation(c):
      out += [current] if current else []
      out.append(c)
      current = ''
    else:
      current += c
  return out + ([current] if current else [])


def basic_tokenize(text, *, lowercase=True, strip_accents=None, chinese_chars=True):
  """BERT's BasicTokenizer: the words of `text` (str or UTF-8 bytes).

  `strip_accents=None` strips them exactly when lower-casing (BERT uncased).
  """
  if isinstance(text, bytes):
    text = text.decode('utf-8')
  strip = lowercase if strip_accents is None else strip_accents
  chars = []
  for c in text:
    if c in ('\x00', '\ufffd') or _is_control(c):
      continue
    if chinese_chars and _is_cjk(c):
      chars += [' ', c, ' ']
    else:
      chars.append(' ' if _is_whitespace(c) else c)
  words = []
  for word in ''.join(chars).split():
    word = word.lower() if lowercase else word
    word = _strip_accents(word) if strip else word
    words += _split_punctuation(word)
  return words


class WordPieceTokenizer:
  """Words -> WordPiece ids; the same interface as `text.Vocabulary`.

  Args:
    pieces: the vocabulary, piece of id i at position i; must hold [PAD],
      [UNK], [CLS] and [SEP] (or the given `unk_token`).
    max_pieces: piece slots per word in `encode` (longer words keep their first
      `max_pieces` pieces).
    max_sequence: the length of BERT's input [CLS] pieces [SEP]; `encode`
      keeps the words whose pieces fit.
  """

  def __init__(self, pieces, *, max_pieces=4, max_sequence=512, lowercase=True, strip_accents=None,
               chinese_chars=True, unk_token='[UNK]', prefix='##',
               max_input_chars_per_word=100, source=''):
    pieces = list(pieces)
    self._ids = {p: i for i, p in enumerate(pieces)}
    where = f' of {source}' if source else ''
    if len(self._ids) != len(pieces):
      raise errors.ConfigError(f'the WordPiece vocabulary{where} repeats pieces.')
    missing = [t for t in (SPECIAL[0], unk_token) + SPECIAL[2:] if t not in self._ids]
    if missing:
      raise errors.ConfigError(f'the WordPiece vocabulary{where} lacks {missing}; '
                               'a BERT tokenizer needs [PAD], [UNK], [CLS] and [SEP].')
    if max_pieces < 1 or max_sequence < 3:
      raise errors.ConfigError(f'need max_pieces >= 1 and max_sequence >= 3, got {max_pieces} '
                               f'and {max_sequence}')
    self._pieces = tuple(pieces)
    self.max_pieces, self.max_sequence = max_pieces, max_sequence
    self._options = dict(lowercase=bool(lowercase), strip_accents=strip_accents,
                         chinese_chars=bool(chinese_chars))
    self._unk, self._prefix = unk_token, prefix
    self._max_chars = max_input_chars_per_word
    self.unk_id = self._ids[unk_token]
    self.pad_id, self.cls_id, self.sep_id = (self._ids[t] for t in (SPECIAL[0],) + SPECIAL[2:])

  @property
  def words(self):
    """The pieces, by id (as `Vocabulary.words`)."""
    return self._pieces

  def __len__(self):
    return len(self._pieces)

  def tokenize(self, text):
    """Eq.1's words: BERT's basic tokens, without a trailing '.' or '?'."""
    words = basic_tokenize(text, **self._options)
    if words and words[-1] in ('.', '?'):
      words.pop()
    return words

  def word_pieces(self, word):
    """WordPiece of one basic token: its pieces, greedy longest match first."""
    if len(word) > self._max_chars:
      return [self._unk]
    pieces, start = [], 0
    while start < len(word):
      end = len(word)
      while end > start:
        piece = word[start:end] if start == 0 else self._prefix + word[start:end]
        if piece in self._ids:
          break
        end -= 1
      if end == start:
        return [self._unk]
      pieces.append(piece)
      start = end
    return pieces

  def __contains__(self, word):
    """Whether `word` is not [UNK] (it splits into pieces of the vocabulary)."""
    return self.word_pieces(word) != [self._unk] or word == self._unk

  def encode(self, text, max_len=20, *, strict=False):
    """Returns piece ids int32 (max_len, max_pieces) and the word mask bool (max_len,).

    Word n's pieces fill row n from the left, NO_PIECE after them and on the
    padding rows. Words past `max_len`, or whose pieces would take BERT's input
    past `max_sequence`, are dropped. An expression with no word encodes as
    one [UNK] word; with `strict=True` (prediction) it raises
    errors.InputError, as does one whose words are all [UNK], and dropped
    words are logged.
    """
    if max_len < 1:
      raise ValueError(f'max_len must be >= 1, got {max_len}')
    words = self.tokenize(text)
    if strict and not words:
      raise errors.InputError(f'expression {text!r} is empty; describe the object to segment '
                              '(e.g. "man on the left")')
    pieces, budget = [], self.max_sequence - 2  # [CLS] and [SEP].
    for word in words[:max_len]:
      word = self.word_pieces(word)[:min(self.max_pieces, budget)]
      if not word:
        break
      pieces.append(word)
      budget -= len(word)
    if strict and len(pieces) < len(words):
      logging.warning('The expression has %d words; the model reads the first %d (max_words, '
                      'max_sequence) and ignores %s.', len(words), len(pieces),
                      words[len(pieces):])
    pieces = pieces or [[self._unk]]
    if strict and all(p == [self._unk] for p in pieces):
      raise errors.InputError(
          f'expression {text!r} has no word in the WordPiece vocabulary ({len(self)} pieces); '
          'rephrase it with common words (e.g. "man on the left")')
    ids = np.full((max_len, self.max_pieces), NO_PIECE, np.int32)
    for n, word in enumerate(pieces):
      ids[n, :len(word)] = [self._ids[p] for p in word]
    return ids, np.arange(max_len) < len(pieces)

  def to_dict(self):
    return {'format': FORMAT, 'pieces': list(self._pieces), 'max_pieces': self.max_pieces,
            'max_sequence': self.max_sequence, 'unk_token': self._unk, 'prefix': self._prefix,
            'max_input_chars_per_word': self._max_chars, **self._options}

  @classmethod
  def from_dict(cls, content):
    """Inverse of `to_dict`; ValueError if `content` is not such a dict."""
    if not isinstance(content, dict) or content.get('format') != FORMAT:
      raise ValueError(f'expected a dict with format {FORMAT!r}, got {str(content)[:80]}')
    content = dict(content)
    del content['format']
    return cls(content.pop('pieces'), **content)

  @classmethod
  def load(cls, path, *, max_pieces=4, max_sequence=512, lowercase=None):
    """Reads a HuggingFace `tokenizer.json` (WordPiece model) or a `vocab.txt`.

    A tokenizer.json states its normalization; for a vocab.txt, `lowercase`
    None infers it from the vocabulary: uncased vocabularies have no upper-case
    letter outside the [...] special tokens.
    """
    if not path or not os.path.isfile(path):
      raise errors.NotFoundError(f'no tokenizer file at {path!r}. {TOKENIZER_HELP}')
    if path.endswith('.json'):
      return cls._from_tokenizer_json(path, max_pieces=max_pieces, max_sequence=max_sequence)
    with open(path, encoding='utf-8') as f:
      pieces = [line.rstrip('\n').rstrip('\r') for line in f]
    while pieces and not pieces[-1]:
      pieces.pop()
    if lowercase is None:
      lowercase = not any(p != p.lower() for p in pieces
                          if not (p.startswith('[') and p.endswith(']')))
      logging.info('%s: %s vocabulary (no lower_case in a vocab.txt; inferred).', path,
                   'uncased' if lowercase else 'cased')
    return cls(pieces, max_pieces=max_pieces, max_sequence=max_sequence, lowercase=lowercase,
               source=path)

  @classmethod
  def _from_tokenizer_json(cls, path, **sizes):
    try:
      with open(path, encoding='utf-8') as f:
        content = json.load(f)
      model = content['model']
      kind = model.get('type')
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise errors.ConfigError(f'{path} is not a HuggingFace tokenizer.json ({e!r}).') from None
    if kind != 'WordPiece':
      raise errors.ConfigError(f'{path} holds a {kind} tokenizer; the BERT encoder needs '
                               f'WordPiece. {TOKENIZER_HELP}')
    vocab = model['vocab']
    pieces = [None] * len(vocab)
    for piece, i in vocab.items():
      if not 0 <= i < len(pieces) or pieces[i] is not None:
        raise errors.ConfigError(f'{path}: WordPiece ids are not 0..{len(vocab) - 1} '
                                 f'(piece {piece!r} has id {i}).')
      pieces[i] = piece
    normalizer = content.get('normalizer') or {}
    if normalizer.get('type', 'BertNormalizer') != 'BertNormalizer':
      raise errors.ConfigError(f'{path}: normalizer {normalizer.get("type")!r} is not '
                               "BERT's (BertNormalizer); this tokenizer is not supported.")
    return cls(pieces, **sizes, lowercase=normalizer.get('lowercase', True),
               strip_accents=normalizer.get('strip_accents'),
               chinese_chars=normalizer.get('handle_chinese_chars', True),
               unk_token=model.get('unk_token', '[UNK]'),
               prefix=model.get('continuing_subword_prefix', '##'),
               max_input_chars_per_word=model.get('max_input_chars_per_word', 100), source=path)
