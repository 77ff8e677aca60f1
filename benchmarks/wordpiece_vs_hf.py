"""Checks cmsa_jax's pure-Python WordPiece against HuggingFace `tokenizers` (BertNormalizer +
BertPreTokenizer + WordPiece, as bert-base-uncased's tokenizer.json) on random and synthetic
texts: prints how many of them tokenize differently (expected: 0).

  pip install tokenizers  # Not a cmsa_jax requirement; only this check needs it.
  python benchmarks/wordpiece_vs_hf.py --texts=4000

The vocabulary is built here (every prefix / '##'-suffix split of some words with accents and
CJK, ASCII symbols): no BERT files are needed.
"""

import random

from absl import app
from absl import flags

from cmsa_jax.data import synthetic
from cmsa_jax.models.text import wordpiece

_TEXTS = flags.DEFINE_integer('texts', 4000, 'random texts (plus 200 synthetic scenes\' ones)')
_SEED = flags.DEFINE_integer('seed', 0, 'random seed')

WORDS = ('the a man woman left right of red blue green square circle triangle small big not '
         'that is second from leftmost rightmost running wanted unwanted café naïve 東京 über '
         'straße école').split()
CHARS = list('abcdefghijklmnopqrstuvwxyzABCXYZ ,.;!?\'"-()[]{}@#$%^&*_+=/\\|~`') + [
    'é', 'É', 'ï', 'ü', 'ß', '東', '京', '\u0301', '\t', '\n', '\u00a0', '\u200b', '\x00',
    '\ufffd', '😀', '—', '«', '»', '¿', '\u3000', '\x7f', '\u2028']


def vocabulary():
  pieces = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  for word in WORDS:
    for cut in range(1, len(word)):
      pieces += [word[:cut], '##' + word[cut:]]
    pieces.append(word)
  pieces += [chr(c) for c in range(33, 127)] + ['##' + chr(c) for c in range(97, 123)]
  pieces += ['cafe', 'naive', 'uber', 'strasse', 'ecole']
  return list(dict.fromkeys(pieces))


def texts(n, seed):
  rng = random.Random(seed)
  out = [''.join(rng.choice(CHARS) for _ in range(rng.randint(0, 40))) for _ in range(n)]
  extra = WORDS + ['Café', 'NAÏVE', 'Über', 'unwantedx', '東京タワー']
  out += [' '.join(rng.choice(extra) for _ in range(rng.randint(1, 8))) for _ in range(n // 3)]
  source = synthetic.SyntheticSource('train', 200, seed=seed, image_size=64)
  for i in range(len(source)):
    out += [t.decode() if isinstance(t, bytes) else t for t in source[i]['sentences']['text']]
  return out


def main(argv):
  del argv
  try:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit('This check needs HuggingFace tokenizers: pip install tokenizers') from None
  pieces = vocabulary()
  hf = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token='[UNK]',
                                  max_input_chars_per_word=100))
  hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                             strip_accents=None, lowercase=True)
  hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  ours = wordpiece.WordPieceTokenizer(pieces)
  all_texts, differ = texts(_TEXTS.value, _SEED.value), 0
  for text in all_texts:
    want = hf.encode(text, add_special_tokens=False).tokens
    got = [p for w in wordpiece.basic_tokenize(text) for p in ours.word_pieces(w)]
    if want != got:
      differ += 1
      if differ <= 10:
        print(f'{text!r}: tokenizers {want}, cmsa_jax {got}')
  print(f'{len(all_texts)} texts ({len(pieces)}-piece vocabulary): {differ} tokenize differently.')


if __name__ == '__main__':
  app.run(main)
