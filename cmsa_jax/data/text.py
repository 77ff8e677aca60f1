"""Expression tokenization and vocabulary, as in the official code.

text_objseg / CMSA split a lower-cased expression with the regex `(\\W+)`,
keep punctuation as tokens, drop whitespace-only tokens and a trailing '.'.
We also drop a trailing '?' and strip whitespace around punctuation tokens
(the official code keeps e.g. ', ' with its space, which then maps to <unk>).
Text is NFKC-normalised first, so composed and decomposed accents (and
full-width letters) give the same word; letters of any script are word
characters, emoji and other symbols are tokens of their own.

Word ids: 0 is <pad>, 1 is <unk>, then the training words by decreasing count
(ties alphabetical), so a vocabulary is a deterministic function of its texts.
Sequences are padded at the end and come with a boolean mask.
"""

import collections
import json
import os
import re
import unicodedata

from absl import logging
import numpy as np

from cmsa_jax import errors

PAD, UNK = 0, 1
_SPECIAL = ('<pad>', '<unk>')
_SPLIT = re.compile(r'(\W+)')
_FORMAT = 'cmsa_jax.vocabulary/1'


def tokenize(text):
  """Returns the list of tokens of `text` (str or UTF-8 bytes)."""
  if isinstance(text, bytes):
    text = text.decode('utf-8')
  tokens = [t.strip() for t in _SPLIT.split(unicodedata.normalize('NFKC', text).lower())]
  tokens = [t for t in tokens if t]
  if tokens and tokens[-1] in ('.', '?'):
    tokens.pop()
  return tokens


def _encodes(text):
  try:
    text.encode('utf-8')
    return True
  except UnicodeEncodeError:
    return False


class Vocabulary:
  """Maps tokens to ids; ids 0 and 1 are <pad> and <unk>."""

  def __init__(self, words):
    words = list(words)
    if tuple(words[:2]) != _SPECIAL:
      raise ValueError(f'words must start with {list(_SPECIAL)}, got {words[:2]}')
    if len(set(words)) != len(words):
      dup = sorted(w for w, c in collections.Counter(words).items() if c > 1)
      raise ValueError(f'words must be unique, duplicated: {dup[:10]}')
    self._words = tuple(words)
    self._ids = {w: i for i, w in enumerate(words)}

  @classmethod
  def build(cls, texts, min_count=1):
    """Vocabulary of the tokens occurring at least `min_count` times in `texts`."""
    if min_count < 1:
      raise ValueError(f'min_count must be >= 1, got {min_count}')
    counts = collections.Counter(t for text in texts for t in tokenize(text))
    kept = sorted((w for w, c in counts.items() if c >= min_count and w not in _SPECIAL),
                  key=lambda w: (-counts[w], w))
    return cls(_SPECIAL + tuple(kept))

  @property
  def words(self):
    return self._words

  @staticmethod
  def tokenize(text):
    """The words `encode` reads (module-level `tokenize`)."""
    return tokenize(text)

  def __len__(self):
    return len(self._words)

  def encode(self, text, max_len=20, *, strict=False):
    """Returns ids int32 (max_len,) and mask bool (max_len,), padded at the end.

    Tokens beyond `max_len` are dropped; unknown tokens map to <unk>. An
    expression with no token at all encodes as a single <unk> so that every
    example has at least one valid word (masked averages stay defined). With
    `strict=True` (prediction on user input) an empty expression, one with no
    known word, or one that is not UTF-8 text (lone surrogates) raises
    errors.InputError instead, and dropped words are logged.
    """
    if max_len < 1:
      raise ValueError(f'max_len must be >= 1, got {max_len}')
    if strict and isinstance(text, str) and not _encodes(text):
      # Lone surrogates: bytes that were not UTF-8 on the command line (surrogateescape);
      # matplotlib, logs and JSON cannot write them.
      raise errors.InputError(f'expression {text!r} is not valid UTF-8 text')
    tokens = tokenize(text)
    if strict and not tokens:
      raise errors.InputError(f'expression {text!r} is empty; describe the object to segment '
                              '(e.g. "man on the left")')
    if strict and len(tokens) > max_len:
      ignored = tokens[max_len:]
      logging.warning('The expression has %d words; the model reads the first %d and ignores '
                      '%s%s.', len(tokens), max_len, ' '.join(ignored[:20]),
                      f' … ({len(ignored) - 20} more)' if len(ignored) > 20 else '')
    ids = [self._ids.get(t, UNK) for t in tokens][:max_len]
    if strict and all(i == UNK for i in ids):
      raise errors.InputError(
          f'expression {text!r} has no word in the vocabulary ({len(self)} words); '
          'rephrase it with common words (e.g. "man on the left")')
    ids = ids or [UNK]
    out = np.full((max_len,), PAD, np.int32)
    out[:len(ids)] = ids
    return out, np.arange(max_len) < len(ids)

  def __contains__(self, word):
    return word in self._ids

  def to_dict(self):
    return {'format': _FORMAT, 'words': list(self._words)}

  @classmethod
  def from_dict(cls, content):
    """Inverse of `to_dict`; ValueError if `content` is not such a dict."""
    if not isinstance(content, dict) or content.get('format') != _FORMAT:
      raise ValueError(f'expected a dict with format {_FORMAT!r}, got {str(content)[:80]}')
    words = content.get('words')
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
      raise ValueError('words must be a list of strings')
    return cls(words)

  def save(self, path):
    with open(path, 'w') as f:
      json.dump(self.to_dict(), f, indent=0)

  @classmethod
  def load(cls, path):
    if not os.path.exists(path):
      raise FileNotFoundError(
          f'vocabulary file {path} not found; it is written next to the '
          'checkpoint by training (or by Vocabulary.save)')
    try:
      with open(path) as f:
        return cls.from_dict(json.load(f))
    except ValueError as e:  # json.JSONDecodeError is one too.
      raise ValueError(f'malformed vocabulary file {path}: {e}') from e
