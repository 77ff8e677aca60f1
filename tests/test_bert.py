"""The BERT text encoder against a NumPy reference written from BERT's definition
(tests/references.py), with random weights written to a safetensors file here."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from cmsa_jax import errors
from cmsa_jax.models.text import wordpiece
from cmsa_jax.models.text import bert
import helpers
import references

HEADS = 4
EXPRESSIONS = ('the small red squares, left of the circle', 'the rightmost man',
               'un-wanted running triangle that is not blue')


TINY = dict(cls_id=3, sep_id=4, layers=2, hidden=32, heads=HEADS, intermediate=64,
            max_positions=64)


def _tokenizer(tmp_path, max_pieces=3, max_sequence=32):
  path = helpers.write_vocab_txt(tmp_path / 'vocab.txt')
  return bert.Bert.tokenizer(tokenizer=str(path), max_pieces=max_pieces,
                             max_sequence=max_sequence, **TINY)


def _encoder(tok, pooling='first', max_sequence=32):
  return bert.Bert(vocab_size=len(tok), tokenizer='vocab.txt', subword_pooling=pooling,
                   max_sequence=max_sequence, rngs=nnx.Rngs(0), **TINY)


@nnx.jit
def _encode(encoder, tokens, token_mask):
  return encoder(tokens, token_mask)


def _run(encoder, tokens, token_mask):
  return np.asarray(_encode(encoder, jnp.asarray(tokens), jnp.asarray(token_mask)))


def _save(tmp_path, sd, name='model.safetensors'):
  path = tmp_path / name
  save_file(sd, str(path))
  return str(path)


def _reference_words(sd, tok, expressions, max_words, pooling):
  """Per-word features from BERT run on the PACKED sequences [CLS] pieces [SEP] [PAD]..."""
  sd = {k.removeprefix('bert.'): v for k, v in sd.items()}
  encoded = [tok.encode(e, max_words) for e in expressions]
  sequences = []
  for ids, mask in encoded:
    sequences.append([tok.cls_id] + [i for row in ids[mask] for i in row if i >= 0]
                     + [tok.sep_id])
  t = max(map(len, sequences))
  packed = np.array([s + [tok.pad_id] * (t - len(s)) for s in sequences])
  attend = np.array([[j < len(s) for j in range(t)] for s in sequences])
  hidden = references.bert_encoder(sd, packed, attend, HEADS)
  out = np.zeros((len(expressions), max_words, hidden.shape[-1]))
  for b, (ids, mask) in enumerate(encoded):
    start = 1
    for n in np.flatnonzero(mask):
      count = int((ids[n] >= 0).sum())
      pieces = hidden[b, start:start + count]
      out[b, n] = pieces[0] if pooling == 'first' else pieces.mean(0)
      start += count
  return out


@pytest.mark.parametrize('pooling', ['first', 'mean'])
@pytest.mark.parametrize('prefix, legacy_norm', [('bert.', True), ('', False)])
def test_matches_reference(tmp_path, pooling, prefix, legacy_norm):
  tok = _tokenizer(tmp_path)
  sd = helpers.bert_state_dict(len(tok), prefix=prefix, legacy_norm=legacy_norm)
  encoder = _encoder(tok, pooling)
  encoder.load(_save(tmp_path, sd))
  ids, mask = map(np.stack, zip(*(tok.encode(e, 12) for e in EXPRESSIONS)))
  assert (ids[:, :, 1] >= 0).any() and (ids[:, :, 1] < 0).any()  # Multi-piece words and gaps.
  got = _run(encoder, ids, mask)
  sd = {k.replace('.gamma', '.weight').replace('.beta', '.bias'): v for k, v in sd.items()}
  want = _reference_words(sd, tok, EXPRESSIONS, 12, pooling)
  assert got.shape == (3, 12, 32)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  assert np.abs(want[mask]).min() > 0 and (got[~mask] == 0).all()
  # A later word changes an earlier word's feature: the encoder is contextual.
  other, other_mask = tok.encode('the rightmost circle', 12)
  changed = _run(encoder, other[None], other_mask[None])
  assert np.abs(changed[0, 0] - got[1, 0]).max() > 1e-3


def test_words_past_max_sequence_are_dropped_by_the_tokenizer(tmp_path):
  tok = _tokenizer(tmp_path, max_sequence=8)  # [CLS] + 6 pieces + [SEP].
  ids, mask = tok.encode(EXPRESSIONS[2], 12)
  # un [UNK](-) want ##ed runn ##ing | triangle: 'triangle' would be the 7th piece.
  assert mask.sum() == 4 and (ids[mask] >= 0).sum() == 6
  sd = helpers.bert_state_dict(len(tok))
  encoder = _encoder(tok, max_sequence=8)
  encoder.load(_save(tmp_path, sd))
  got = _run(encoder, ids[None], mask[None])
  want = _reference_words(sd, tok, EXPRESSIONS[2:], 12, 'first')
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  # Pieces past max_sequence in hand-made ids are dropped, their words get no feature.
  ids[4, 0] = ids[0, 0]
  mask[4] = True
  got = _run(encoder, ids[None], mask[None])
  np.testing.assert_allclose(got[0, :4], want[0, :4], atol=1e-4, rtol=0)
  assert (got[0, 4] == 0).all()


def test_random_init_is_not_the_checkpoint(tmp_path):
  tok = _tokenizer(tmp_path)
  sd = helpers.bert_state_dict(len(tok))
  encoder = _encoder(tok)
  ids, mask = tok.encode(EXPRESSIONS[0], 12)
  before = _run(encoder, ids[None], mask[None])
  encoder.load(_save(tmp_path, sd))
  after = _run(encoder, ids[None], mask[None])
  assert np.abs(after - before).max() > 0.1


def test_missing_and_mis_shaped_keys_are_listed_in_one_line(tmp_path):
  tok = _tokenizer(tmp_path)
  sd = helpers.bert_state_dict(len(tok))
  del sd['bert.encoder.layer.1.output.dense.bias']
  sd['bert.encoder.layer.0.intermediate.dense.weight'] = np.zeros((48, 32), np.float32)
  sd['bert.encoder.layer.2.output.dense.bias'] = np.zeros(32, np.float32)
  encoder = _encoder(tok)
  before = nnx.state(encoder)
  with pytest.raises(errors.ConfigError) as e:
    encoder.load(_save(tmp_path, sd))
  message = str(e.value)
  assert '\n' not in message and message.startswith('BERT checkpoint ')
  assert 'missing (1): encoder.layer.1.output.dense.bias' in message
  assert 'unexpected (1): encoder.layer.2.output.dense.bias' in message
  assert ('mismatched (1): encoder.layer.0.intermediate.dense.weight (48, 32) -> '
          'layers/0/intermediate/kernel: (32, 48)') in message and 'model has (32, 64)' in message
  np.testing.assert_array_equal(nnx.state(encoder)['word_embeddings']['embedding'][...],
                                before['word_embeddings']['embedding'][...])


def test_tokenizer_of_another_vocabulary_size(tmp_path):
  tok = _tokenizer(tmp_path)
  sd = helpers.bert_state_dict(len(tok) + 5)
  with pytest.raises(errors.ConfigError) as e:
    _encoder(tok).load(_save(tmp_path, sd))
  assert 'tokenizer vocab.txt' in str(e.value) and f'has {len(tok)} pieces' in str(e.value) and f'embeds {len(tok) + 5}' in str(e.value)


def test_missing_or_wrong_checkpoint_file(tmp_path):
  encoder = _encoder(_tokenizer(tmp_path))
  with pytest.raises(errors.NotFoundError, match='bert-base-uncased') as e:
    encoder.load(str(tmp_path / 'model.safetensors'))
  assert '\n' not in str(e.value)
  (tmp_path / 'model.bin').write_bytes(b'x')
  with pytest.raises(errors.ConfigError, match="Unknown weights format '.bin'"):
    encoder.load(str(tmp_path / 'model.bin'))
  (tmp_path / 'model.safetensors').write_bytes(b'not safetensors')
  with pytest.raises(errors.InputError,
                     match='model.safetensors: not a readable .safetensors weights file'):
    encoder.load(str(tmp_path / 'model.safetensors'))


def test_bad_options(tmp_path):
  tok = _tokenizer(tmp_path)
  with pytest.raises(errors.ConfigError, match=r'max_sequence must be in \[3, max_positions=64\]'):
    _encoder(tok, max_sequence=65)
  with pytest.raises(errors.ConfigError, match='subword_pooling'):
    _encoder(tok, 'last')


def test_tokenizer_special_ids_must_match_the_config(tmp_path):
  path = helpers.write_vocab_txt(tmp_path / 'vocab.txt')
  with pytest.raises(errors.ConfigError, match='text_args.cls_id=3 and sep_id=4'):
    bert.Bert.tokenizer(tokenizer=str(path))  # Google's ids 101, 102.
  with pytest.raises(errors.NotFoundError, match='text_args.tokenizer=.*bert-base-uncased') as e:
    bert.Bert.tokenizer(tokenizer=str(tmp_path / 'tokenizer.json'))
  assert '\n' not in str(e.value)


def test_empty_piece_marker_is_the_encoders():
  assert wordpiece.NO_PIECE < 0  # bert.Bert skips negative ids.


def test_fine_tuning_gradients_are_finite_and_reach_only_used_pieces(tmp_path):
  tok = _tokenizer(tmp_path)
  encoder = _encoder(tok)
  ids, mask = map(np.stack, zip(*(tok.encode(e, 12) for e in EXPRESSIONS)))
  grads = nnx.jit(lambda m, t, w: nnx.grad(lambda e: jnp.sum(e(t, w) ** 2))(m))(
      encoder, jnp.asarray(ids), jnp.asarray(mask))
  leaves = [np.asarray(g[...]) for _, g in nnx.to_flat_state(grads)]
  assert all(np.isfinite(g).all() for g in leaves) and all(np.abs(g).max() > 0 for g in leaves)
  rows = np.abs(np.asarray(grads['word_embeddings']['embedding'][...])).sum(1) > 0
  used = set(ids[ids >= 0].tolist()) | {tok.cls_id, tok.sep_id}
  assert set(np.flatnonzero(rows).tolist()) == used
