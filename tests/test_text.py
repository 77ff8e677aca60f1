import json

import numpy as np
import pytest

from cmsa_jax.data import text


@pytest.mark.parametrize('sentence, tokens', [
    ('The man, on the LEFT.', ['the', 'man', ',', 'on', 'the', 'left']),
    ("who's that?", ['who', "'", 's', 'that']),
    ('left  -- guy . . ', ['left', '--', 'guy', '. .']),
    (b'red car', ['red', 'car']),
    ('  ', []),
    ('.', []),
])
def test_tokenize(sentence, tokens):
  assert text.tokenize(sentence) == tokens


def test_build_orders_by_count_then_alphabet():
  vocab = text.Vocabulary.build(['b a', 'a c.', 'C A', 'z y'])
  assert vocab.words == ('<pad>', '<unk>', 'a', 'c', 'b', 'y', 'z')
  assert len(vocab) == 7
  assert text.Vocabulary.build(['b a', 'a c', 'c a'], min_count=2).words == (
      '<pad>', '<unk>', 'a', 'c')


def test_encode_pads_at_end_and_truncates():
  vocab = text.Vocabulary.build(['man on left'])
  ids, mask = vocab.encode('Man on the left', max_len=6)
  man, on, left = (vocab.words.index(w) for w in ('man', 'on', 'left'))
  np.testing.assert_array_equal(ids, [man, on, text.UNK, left, text.PAD, text.PAD])
  np.testing.assert_array_equal(mask, [True] * 4 + [False] * 2)
  assert ids.dtype == np.int32 and mask.dtype == bool
  ids, mask = vocab.encode('left ' * 30)
  assert ids.shape == (20,) and mask.all() and (ids == left).all()


def test_empty_and_unknown_expressions():
  vocab = text.Vocabulary.build(['man on left'])
  for sentence in ('', 'zebra ?'):
    ids, mask = vocab.encode(sentence, max_len=4)
    np.testing.assert_array_equal(ids, [text.UNK, 0, 0, 0])
    np.testing.assert_array_equal(mask, [True, False, False, False])
    with pytest.raises(ValueError, match='no word in the vocabulary|is empty'):
      vocab.encode(sentence, strict=True)
  ids, _ = vocab.encode('zebra on', max_len=2, strict=True)
  np.testing.assert_array_equal(ids, [text.UNK, vocab.words.index('on')])
  with pytest.raises(ValueError, match='max_len'):
    vocab.encode('man', max_len=0)


def test_save_load_round_trip(tmp_path):
  vocab = text.Vocabulary.build(['the man on the left', 'a red car , right'])
  path = tmp_path / 'vocab.json'
  vocab.save(path)
  loaded = text.Vocabulary.load(path)
  assert loaded.words == vocab.words
  for a, b in zip(loaded.encode('the red man'), vocab.encode('the red man')):
    np.testing.assert_array_equal(a, b)
  assert text.Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))).words == vocab.words
  assert 'red' in loaded and 'blue' not in loaded


@pytest.mark.parametrize('content', [
    'not json',
    json.dumps(['<pad>', '<unk>']),
    json.dumps({'format': 'other', 'words': ['<pad>', '<unk>']}),
    json.dumps({'format': 'cmsa_jax.vocabulary/1', 'words': ['<unk>', '<pad>']}),
    json.dumps({'format': 'cmsa_jax.vocabulary/1', 'words': ['<pad>', '<unk>', 'a', 'a']}),
    json.dumps({'format': 'cmsa_jax.vocabulary/1', 'words': ['<pad>', '<unk>', 3]}),
])
def test_load_malformed_names_file(tmp_path, content):
  path = tmp_path / 'bad.json'
  path.write_text(content)
  with pytest.raises(ValueError, match='bad.json'):
    text.Vocabulary.load(path)


def test_load_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing.json'):
    text.Vocabulary.load(tmp_path / 'missing.json')
