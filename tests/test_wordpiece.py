"""BERT's WordPiece tokenizer on hand-written cases (expected outputs from BERT's
published algorithm and its README / tokenization tests)."""

import json

import numpy as np
import pytest

from cmsa_jax import errors
from cmsa_jax.data import text
from cmsa_jax.models.text import wordpiece
import helpers

# The vocabulary of google-research/bert tokenization_test.py's WordPiece test.
BERT_TEST_PIECES = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', 'want', '##want', '##ed', 'wa', 'un',
                    'runn', '##ing', ',', 'low', 'lowest')


@pytest.mark.parametrize('sentence, words', [
    (' \tHeLLo!how  \n Are yoU?  ', ['hello', '!', 'how', 'are', 'you', '?']),
    ('H\u00e9llo', ['hello']),  # Accents stripped (composed é).
    ('He\u0301llo', ['hello']),  # ... and decomposed e + combining acute.
    ("John Johanson's house", ['john', 'johanson', "'", 's', 'house']),
    ('ah\u535a\u63a8zz', ['ah', '\u535a', '\u63a8', 'zz']),  # CJK ideographs split.
    ('a\x00b\u200bc \ufffd', ['abc']),  # NUL, zero-width space (Cf), U+FFFD removed.
    ('left\u00a0man', ['left', 'man']),  # No-break space (Zs) is whitespace.
    (b'red car', ['red', 'car']),
    ('', []),
])
def test_basic_tokenize_uncased(sentence, words):
  assert wordpiece.basic_tokenize(sentence) == words


def test_basic_tokenize_cased_keeps_case_and_accents():
  assert wordpiece.basic_tokenize('HéLLo, World', lowercase=False) == ['HéLLo', ',', 'World']
  assert wordpiece.basic_tokenize('HéLLo', lowercase=True, strip_accents=False) == ['héllo']


def _tokenizer(tmp_path, pieces=BERT_TEST_PIECES, **kwargs):
  return wordpiece.WordPieceTokenizer.load(
      str(helpers.write_vocab_txt(tmp_path / 'vocab.txt', pieces)), **kwargs)


@pytest.mark.parametrize('word, pieces', [
    ('unwanted', ['un', '##want', '##ed']),
    ('running', ['runn', '##ing']),
    ('unwantedx', ['[UNK]']),  # No split of the whole word: one [UNK], not a partial split.
    ('lowest', ['lowest']),  # Longest match first.
    ('wanted', ['want', '##ed']),
    ('x' * 101, ['[UNK]']),  # Longer than max_input_chars_per_word.
])
def test_word_pieces(tmp_path, word, pieces):
  assert _tokenizer(tmp_path).word_pieces(word) == pieces


def test_encode_per_word_pieces(tmp_path):
  tok = _tokenizer(tmp_path, max_pieces=2)
  ids, mask = tok.encode('UnWanted, running XYZ.', max_len=6)
  piece = {p: i for i, p in enumerate(BERT_TEST_PIECES)}
  no = wordpiece.NO_PIECE
  # 'unwanted' keeps its first 2 of 3 pieces; the trailing '.' is dropped as by text.tokenize.
  np.testing.assert_array_equal(ids, [[piece['un'], piece['##want']], [piece[','], no],
                                      [piece['runn'], piece['##ing']], [piece['[UNK]'], no],
                                      [no, no], [no, no]])
  np.testing.assert_array_equal(mask, [True] * 4 + [False] * 2)
  assert ids.dtype == np.int32 and mask.dtype == bool
  assert tok.tokenize('UnWanted, running XYZ.') == ['unwanted', ',', 'running', 'xyz']
  ids, mask = tok.encode('want ' * 30, max_len=5)
  assert mask.all() and (ids[:, 0] == piece['want']).all() and (ids[:, 1] == no).all()
  assert 'unwanted' in tok and 'xyz' not in tok
  # [CLS] + 3 pieces + [SEP]: 'running' keeps the one piece that fits, 'want' is dropped.
  short = _tokenizer(tmp_path, max_pieces=2, max_sequence=5)
  ids, mask = short.encode('unwanted running want', max_len=6)
  np.testing.assert_array_equal(ids[:3], [[piece['un'], piece['##want']], [piece['runn'], no],
                                          [no, no]])
  np.testing.assert_array_equal(mask, [True, True] + [False] * 4)


def test_encode_empty_and_unknown(tmp_path):
  tok = _tokenizer(tmp_path)
  ids, mask = tok.encode('', max_len=3)
  assert ids[0, 0] == tok.unk_id and (ids[0, 1:] == wordpiece.NO_PIECE).all()
  np.testing.assert_array_equal(mask, [True, False, False])
  with pytest.raises(errors.InputError, match='empty'):
    tok.encode('  .', strict=True)
  with pytest.raises(errors.InputError, match='no word in the WordPiece vocabulary'):
    tok.encode('zebra giraffe', strict=True)
  assert tok.encode('zebra want', max_len=2, strict=True)[1].all()


def test_tokenizer_json_equals_vocab_txt(tmp_path):
  vocab = {p: i for i, p in enumerate(helpers.TINY_PIECES)}
  content = {'normalizer': {'type': 'BertNormalizer', 'clean_text': True,
                            'handle_chinese_chars': True, 'strip_accents': None,
                            'lowercase': True},
             'pre_tokenizer': {'type': 'BertPreTokenizer'},
             'model': {'type': 'WordPiece', 'unk_token': '[UNK]',
                       'continuing_subword_prefix': '##', 'max_input_chars_per_word': 100,
                       'vocab': vocab}}
  (tmp_path / 'tokenizer.json').write_text(json.dumps(content))
  from_json = wordpiece.WordPieceTokenizer.load(str(tmp_path / 'tokenizer.json'))
  from_txt = _tokenizer(tmp_path, helpers.TINY_PIECES)
  assert from_json.words == from_txt.words == helpers.TINY_PIECES
  for sentence in ('The small RED squares, left of the Circle', 'the rightmost man'):
    for a, b in zip(from_json.encode(sentence), from_txt.encode(sentence)):
      np.testing.assert_array_equal(a, b)
  ids, _ = from_json.encode('the rightmost man')
  assert list(ids[1, :2]) == [vocab['right'], vocab['##most']]
  assert (from_json.cls_id, from_json.sep_id, from_json.pad_id) == (3, 4, 0)


def test_vocab_txt_case_is_inferred(tmp_path):
  uncased = _tokenizer(tmp_path)
  assert uncased.tokenize('WANT') == ['want']
  cased = _tokenizer(tmp_path, BERT_TEST_PIECES + ('Want',))
  assert cased.tokenize('Want') == ['Want'] and cased.word_pieces('Want') == ['Want']


def test_round_trip_through_the_checkpoint_dict(tmp_path):
  tok = _tokenizer(tmp_path, helpers.TINY_PIECES, max_pieces=3)
  restored = wordpiece.WordPieceTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
  assert restored.words == tok.words and restored.max_pieces == 3
  for a, b in zip(restored.encode('the leftmost circle'), tok.encode('the leftmost circle')):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match='expected a dict with format'):
    wordpiece.WordPieceTokenizer.from_dict(text.Vocabulary.build(['a b']).to_dict())


@pytest.mark.parametrize('content, match', [
    ({'model': {'type': 'BPE', 'vocab': {}}}, 'holds a BPE tokenizer'),
    ({'nothing': 1}, 'not a HuggingFace tokenizer.json'),
    ({'model': {'type': 'WordPiece', 'vocab': {'[PAD]': 0, 'a': 1}}}, r"lacks \['\[UNK\]'"),
    ({'model': {'type': 'WordPiece', 'vocab': {'[PAD]': 0, 'a': 5}}}, 'ids are not'),
])
def test_bad_tokenizer_files(tmp_path, content, match):
  path = tmp_path / 'tokenizer.json'
  path.write_text(json.dumps(content))
  with pytest.raises(errors.ConfigError, match=match):
    wordpiece.WordPieceTokenizer.load(str(path))


def test_missing_tokenizer_says_where_to_get_it(tmp_path):
  with pytest.raises(errors.NotFoundError, match='bert-base-uncased') as e:
    wordpiece.WordPieceTokenizer.load(str(tmp_path / 'vocab.txt'))
  assert '\n' not in str(e.value)
