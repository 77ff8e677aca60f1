"""Expression categories of the real datasets (RefCOCO family, ReferIt, A2D, JHMDB),
so results can be read per kind of expression, as the synthetic sets' families.

An expression is tokenized as the model reads it (`text.tokenize`) and gets every
category whose rule matches (none, one or several), plus one length bucket:

  spatial     a word placing the object in the picture or relative to the viewer:
              left, right, top, bottom, middle, centre, front, back, closest,
              farthest, far, corner, upper, lower, ... (SPATIAL_WORDS; "near" is
              a relation).
  ordinal     an ordinal word or number: first ... tenth, 1st ... 10th, last
              ("second from left", "third guy").
  relational  a preposition (RELATIONS; also "next to", "in front of", "on top
              of", "close to") between two noun phrases: some word before it, and
              after it (skipping determiners) a word that is neither a spatial word
              nor an attribute nor a frame-of-reference noun (picture, image,
              photo, screen, ...). "cup on the table" is relational; "man on the
              left", "guy in red", "left side of the picture" are not. "of" counts
              only after a spatial word ("left of the car").
  attribute   a colour (COLOURS) or size (SIZES) word.
  length      1-3, 4-6, 7-10 or 11+ tokens (punctuation tokens included).
"""

from cmsa_jax.data import text

SPATIAL_WORDS = frozenset(
    'left right leftmost rightmost top bottom topmost bottommost middle center centre central '
    'front back closest nearest closer nearer farthest furthest farther further far corner '
    'upper lower edge background foreground'.split())
ORDINALS = frozenset(
    'first second third fourth fifth sixth seventh eighth ninth tenth last '
    '1st 2nd 3rd 4th 5th 6th 7th 8th 9th 10th'.split())
RELATIONS = frozenset(
    'on in at under below above behind beside besides near by with without beneath between '
    'inside outside against over across along around among onto into toward towards from '
    'underneath atop holding'.split())
MULTIWORD_RELATIONS = (('next', 'to'), ('in', 'front', 'of'), ('on', 'top', 'of'),
                       ('close', 'to'))
COLOURS = frozenset(
    'red blue green yellow black white gray grey brown orange pink purple violet beige tan '
    'silver gold golden blond blonde dark light maroon navy teal'.split())
SIZES = frozenset(
    'big bigger biggest small smaller smallest large larger largest little tiny huge tall '
    'taller tallest short shorter shortest long longer longest giant'.split())
DETERMINERS = frozenset('the a an his her its their this that these those some'.split())
FRAME_NOUNS = frozenset('picture image photo pic pict frame screen scene view shot'.split())
CATEGORIES = ('spatial', 'ordinal', 'relational', 'attribute')
LENGTH_BUCKETS = ((1, 3), (4, 6), (7, 10), (11, None))


def length_bucket(num_tokens):
  """'1-3', '4-6', '7-10' or '11+'."""
  for low, high in LENGTH_BUCKETS:
    if high is None:
      return f'{low}+'
    if num_tokens <= high:
      return f'{low}-{high}'
  raise AssertionError('unreachable')


def _is_relation(words, i, width):
  """Whether the preposition words[i:i + width] joins two noun phrases."""
  if i == 0:
    return False
  after = [w for w in words[i + width:] if w.isalnum() and w not in DETERMINERS]
  if not after or after[0] in SPATIAL_WORDS or after[0] in FRAME_NOUNS:
    return False
  if all(w in COLOURS or w in SIZES for w in after):
    return False  # "guy in red": an attribute, no second noun phrase.
  if words[i] == 'of':
    return words[i - 1] in SPATIAL_WORDS
  return True


def _relational(words):
  for i in range(len(words)):
    for phrase in MULTIWORD_RELATIONS:
      if tuple(words[i:i + len(phrase)]) == phrase and _is_relation(words, i, len(phrase)):
        return True
    if (words[i] in RELATIONS or words[i] == 'of') and _is_relation(words, i, 1):
      if words[i] == 'in' and tuple(words[i:i + 3]) == ('in', 'front', 'of'):
        continue  # Judged as the multi-word relation.
      return True
  return False


def categories(expression):
  """The CATEGORIES an expression (str or UTF-8 bytes) belongs to, in CATEGORIES order."""
  words = text.tokenize(expression)
  found = set()
  if any(w in SPATIAL_WORDS for w in words):
    found.add('spatial')
  if any(w in ORDINALS for w in words):
    found.add('ordinal')
  if _relational(words):
    found.add('relational')
  if any(w in COLOURS or w in SIZES for w in words):
    found.add('attribute')
  return [c for c in CATEGORIES if c in found]


def groups(expression):
  """Every group an expression is scored in: its categories and 'length_<bucket>'."""
  return categories(expression) + [f'length_{length_bucket(len(text.tokenize(expression)))}']
