import io
import types

from absl import flags
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from cmsa_jax.data import input_pipeline as ip
from cmsa_jax.data import text
from cmsa_jax.records.features import referring_features

WORDS = ('red', 'blue', 'left', 'right', 'big', 'small', 'dog', 'car', 'man', 'cup')
SIZES = ((24, 32), (32, 20), (17, 29), (30, 30), (20, 26))
NUM_SENTENCES = (3, 2, 0, 2, 1)  # 8 expressions; record 2 has none
TAU_MAX = 2


def _records(video=False):
  """Records in the decoded form of `tfds.data_source`, all texts distinct."""
  rng = np.random.default_rng(0)
  records, k = [], 0
  for r, ((h, w), num_sentences) in enumerate(zip(SIZES, NUM_SENTENCES)):
    num_objects = 1 + r % 3
    masks = []
    for j in range(num_objects):  # object j is a box of growing size
      mask = np.zeros((h, w, 1), np.uint8)
      mask[j:j + 4 + 3 * j, 2 * j:2 * j + 5 + 2 * j] = 1
      masks.append(mask)
    texts, objects = [], []
    for s in range(num_sentences):
      words = WORDS[k % 10], WORDS[(3 * k + 1) % 10], WORDS[k // 3 % 10]
      texts.append(' '.join(words).encode() + b'.')
      objects.append(np.int32((s + r) % num_objects))
      k += 1
    record = {
        'image': rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        'height': h, 'width': w,
        'objects': {'mask': masks, 'id': list(range(num_objects)),
                    'category': [b'x'] * num_objects},
        'sentences': {'text': texts, 'tokens': [b''] * num_sentences, 'object_index': objects,
                      'id': list(range(num_sentences))},
    }
    if video:
      frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2 * TAU_MAX + 1)]
      frames[TAU_MAX] = record['image']
      record.update(frames=frames, frame_ids=list(range(1, 2 * TAU_MAX + 2)),
                    video_id=b'v', frame_index=TAU_MAX + 1)
    records.append(record)
  return records


def _png(array):
  buf = io.BytesIO()
  PIL.Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buf, 'PNG')
  return buf.getvalue()


class _TinyRef(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The test records as a TFDS dataset (PNG everywhere, so decoding is exact)."""
  name = 'tiny_ref'
  VERSION = tfds.core.Version('1.0.0')
  VIDEO = False

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=referring_features(
        image_format='png', video=self.VIDEO, frame_format='png'))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for r, rec in enumerate(_records(self.VIDEO)):
      example = dict(rec, image=_png(rec['image']))
      example['objects'] = [{'mask': _png(m), 'id': i, 'category': 'x'}
                            for i, m in enumerate(rec['objects']['mask'])]
      example['sentences'] = [{'text': t, 'tokens': '', 'object_index': o, 'id': i}
                              for i, (t, o) in enumerate(zip(rec['sentences']['text'],
                                                             rec['sentences']['object_index']))]
      if self.VIDEO:
        example['frames'] = [_png(f) for f in rec['frames']]
      yield r, example


class _TinyVideo(_TinyRef, skip_registration=True):
  name = 'tiny_video'
  VIDEO = True


@pytest.fixture(scope='module')
def tfds_sources(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  sources = {}
  for cls in (_TinyRef, _TinyVideo):
    builder = cls(data_dir=data_dir)
    builder.download_and_prepare(file_format='array_record')
    sources[cls.VIDEO] = builder.as_data_source(split='train')
  return sources


@pytest.fixture(scope='module')
def vocab():
  return text.Vocabulary.build(t for rec in _records() for t in rec['sentences']['text'])


def _expressions():
  """(record, sentence) pairs in index order, as built by hand."""
  return [(r, s) for r, n in enumerate(NUM_SENTENCES) for s in range(n)]


def _key(tokens):
  return tuple(tokens.tolist())


def _token_keys(vocab):
  """Maps each expression's token ids to its (record, sentence)."""
  records = _records()
  keys = {_key(vocab.encode(records[r]['sentences']['text'][s])[0]): (r, s)
          for r, s in _expressions()}
  assert len(keys) == len(_expressions())  # The texts are distinct.
  return keys


# Geometry.

@pytest.mark.parametrize('shape, size, window', [
    ((30, 60), 40, (10, 0, 20, 40)),  # scale 2/3
    ((25, 10), 32, (0, 9, 32, 13)),  # scale 1.28, width 12.8 -> 13
    ((7, 7), 7, (0, 0, 7, 7)),
])
def test_resize_and_pad_geometry(shape, size, window):
  padded, info = ip.resize_and_pad(np.full(shape + (3,), 200, np.uint8), size)
  top, left, rh, rw = window
  assert info == ip.ResizeInfo(shape[0], shape[1], top, left, rh, rw)
  assert padded.shape == (size, size, 3) and padded.dtype == np.uint8
  inside = np.zeros((size, size), bool)
  inside[top:top + rh, left:left + rw] = True
  assert (padded[inside] == 200).all() and (padded[~inside] == 0).all()


def test_mask_round_trip_upsampling():
  mask = np.random.default_rng(1).random((15, 10)) > 0.5
  resized = ip._resize_mask(mask, 30)  # scale 2
  assert resized.dtype == np.float32 and set(np.unique(resized)) == {0.0, 1.0}
  _, info = ip.resize_and_pad(mask.astype(np.float32), 30)
  np.testing.assert_array_equal(ip.unpad_and_resize(resized, info) >= 0.5, mask)


def test_mask_round_trip_downsampling_aligned_blocks():
  blocks = np.random.default_rng(2).random((10, 20)) > 0.5
  mask = blocks.repeat(2, 0).repeat(2, 1)  # (20, 40), constant on 2x2 blocks
  resized = ip._resize_mask(mask, 20)  # scale 1/2 -> (10, 20) at top 5
  np.testing.assert_array_equal(resized[5:15], blocks)
  _, info = ip.resize_and_pad(mask.astype(np.float32), 20)
  np.testing.assert_array_equal(ip.unpad_and_resize(resized, info) >= 0.5, mask)


def test_resize_functions_check_inputs():
  with pytest.raises(ValueError, match='bool'):
    ip.resize_and_pad(np.zeros((4, 4), bool), 8)
  with pytest.raises(ValueError, match='method'):
    ip.resize_and_pad(np.zeros((4, 4), np.uint8), 8, method='cubic')
  _, info = ip.resize_and_pad(np.zeros((10, 20), np.float32), 40)
  assert ip.unpad_and_resize(np.zeros((40, 40)), info).shape == (10, 20)
  planes = np.random.default_rng(3).random((10, 12, 4)).astype(np.float32)
  padded, info = ip.resize_and_pad(planes, 24)  # Channels resize independently.
  for c in range(4):
    np.testing.assert_array_equal(padded[..., c], ip.resize_and_pad(planes[..., c], 24)[0])
  assert ip.unpad_and_resize(padded, info).shape == (10, 12, 4)
  with pytest.raises(ValueError, match='window'):
    ip.unpad_and_resize(np.zeros((20, 20)), info)


# Index and validation.

def test_sentence_index(tfds_sources):
  records = _records()
  for source in (records, tfds_sources[False]):
    index = ip.sentence_index(source)
    assert [tuple(p) for p in index.pairs] == _expressions()
    assert index.texts == tuple(records[r]['sentences']['text'][s].decode()
                                for r, s in _expressions())


def test_bad_inputs(vocab):
  records = _records()
  records[3]['sentences']['object_index'][1] = np.int32(7)
  with pytest.raises(ValueError, match='record 3, sentence 1: object_index 7'):
    ip.sentence_index(records)
  with pytest.raises(ValueError, match='empty'):
    ip.sentence_index([])
  with pytest.raises(ValueError, match='batch_size'):
    ip.create_train_iterator(_records(), vocab, batch_size=0, image_size=8, seed=0)
  with pytest.raises(ValueError, match='shard_index'):
    ip.create_train_iterator(_records(), vocab, batch_size=1, image_size=8, seed=0,
                             shard_index=2, shard_count=2)


def test_stale_index(vocab):
  index = ip.sentence_index(_records())
  records = _records()
  del records[0]['sentences']['text'][2:]
  with pytest.raises(ValueError, match='record 0 has 2 sentences, the index wants sentence 2'):
    list(ip.create_eval_iterator(records, vocab, batch_size=8, image_size=8, index=index))


@pytest.mark.parametrize('image', [np.zeros((17, 29), np.uint8), np.zeros((17, 29, 3), np.float32)])
def test_bad_image_names_record(vocab, image):
  records = _records()
  records[1]['image'] = image
  it = ip.create_eval_iterator(records, vocab, batch_size=8, image_size=8)
  with pytest.raises(ValueError, match=r'record 1: image must be uint8 \(H, W, 3\)'):
    next(it)


# Training iterator.

def test_train_epochs_are_permutations(vocab):
  keys = _token_keys(vocab)
  it = ip.create_train_iterator(_records(), vocab, batch_size=4, image_size=16, seed=3)
  batches = [next(it) for _ in range(6)]  # three epochs of 8
  b = batches[0]
  assert b['image'].shape == (4, 16, 16, 3) and b['image'].dtype == np.uint8
  assert b['mask'].shape == (4, 16, 16) and b['mask'].dtype == np.float32
  assert b['tokens'].shape == (4, 20) and b['tokens'].dtype == np.int32
  assert b['token_mask'].dtype == bool and set(b) == {'image', 'mask', 'tokens', 'token_mask'}
  assert set(np.unique(b['mask'])) <= {0.0, 1.0}
  order = [keys[_key(t)] for batch in batches for t in batch['tokens']]
  epochs = [order[:8], order[8:16], order[16:]]
  assert all(sorted(e) == _expressions() for e in epochs)
  assert epochs[0] != epochs[1] != epochs[2]


def test_train_example_content(vocab):
  records, keys = _records(), _token_keys(vocab)
  batch = next(ip.create_train_iterator(records, vocab, batch_size=8, image_size=24, seed=0))
  for image, mask, tokens in zip(batch['image'], batch['mask'], batch['tokens']):
    r, s = keys[_key(tokens)]
    obj = records[r]['sentences']['object_index'][s]
    np.testing.assert_array_equal(image, ip.resize_and_pad(records[r]['image'], 24)[0])
    want = ip._resize_mask(records[r]['objects']['mask'][obj][..., 0], 24)
    np.testing.assert_array_equal(mask, want)


def test_train_seed_and_sharding(vocab):
  def stream(num_examples, **kwargs):
    it = ip.create_train_iterator(_records(), vocab, batch_size=2, image_size=8, **kwargs)
    return [_key(t) for _ in range(num_examples // 2) for t in next(it)['tokens']]
  assert stream(8, seed=0) == stream(8, seed=0)
  assert stream(8, seed=0) != stream(8, seed=1)
  full = stream(8, seed=5)
  assert stream(4, seed=5, shard_index=0, shard_count=2) == full[0::2]
  assert stream(4, seed=5, shard_index=1, shard_count=2) == full[1::2]


def test_train_state_restores(vocab):
  make = lambda: ip.create_train_iterator(_records(), vocab, batch_size=3, image_size=8, seed=7)
  it = make()
  for _ in range(4):  # crosses an epoch boundary
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  restored = make()
  restored.set_state(state)
  _assert_batches_equal(expected, [next(restored) for _ in range(3)])


def test_workers_need_parsed_flags(vocab, monkeypatch):
  unparsed = types.SimpleNamespace(FLAGS=types.SimpleNamespace(is_parsed=lambda: False))
  monkeypatch.setattr(ip, 'flags', unparsed)  # As in a script not run by absl.app.run.
  with pytest.raises(ValueError, match='absl.app.run'):
    ip.create_train_iterator(_records(), vocab, batch_size=3, image_size=8, seed=1, num_workers=2)


def _assert_batches_equal(want, got):
  assert len(want) == len(got)
  for a, b in zip(want, got):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_workers_give_same_batches_and_restore(vocab):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  make = lambda num_workers: ip.create_train_iterator(
      _records(), vocab, batch_size=3, image_size=8, seed=1, num_workers=num_workers)
  it = make(0)
  want = [next(it) for _ in range(4)]
  it = make(2)
  got = [next(it) for _ in range(2)]
  state = it.get_state()
  got += [next(it) for _ in range(2)]
  _assert_batches_equal(want, got)
  restored = make(2)
  restored.set_state(state)
  _assert_batches_equal(want[2:], [next(restored) for _ in range(2)])


# Evaluation iterator.

def test_eval_pass(vocab):
  records = _records()
  batches = list(ip.create_eval_iterator(records, vocab, batch_size=3, image_size=16,
                                         with_baselines=True))
  assert len(batches) == 3
  np.testing.assert_array_equal(batches[-1]['valid'], [True, True, False])
  assert all(b['image'].shape == (3, 16, 16, 3) for b in batches)
  assert [i for b in batches for i in b['index']] == _expressions()
  examples = [dict(zip(b, values)) for b in batches
              for values in zip(*(b[k] for k in b))]
  for ex in examples:  # zip stops at the valid examples of host-side lists
    r, s = ex['index']
    rec = records[r]
    masks = np.stack(rec['objects']['mask'])[..., 0].astype(bool)
    obj = rec['sentences']['object_index'][s]
    assert ex['text'] == rec['sentences']['text'][s].decode()
    np.testing.assert_array_equal(ex['orig_image'], rec['image'])
    np.testing.assert_array_equal(ex['orig_mask'], masks[obj])
    np.testing.assert_array_equal(ex['baseline_all_objects'], masks.any(0))
    np.testing.assert_array_equal(ex['baseline_largest_object'], masks[-1])  # boxes grow
    assert (ex['resize_info'].height, ex['resize_info'].width) == SIZES[r]
    np.testing.assert_array_equal(ex['tokens'], vocab.encode(ex['text'])[0])
  assert len(examples) == 8


def test_eval_without_originals(vocab):
  batch = next(ip.create_eval_iterator(_records(), vocab, batch_size=8, image_size=8,
                                       with_originals=False))
  assert batch['valid'].all()
  assert set(batch) == {'image', 'mask', 'tokens', 'token_mask', 'valid', 'index', 'text',
                        'resize_info'}


# Sources: video clips, TFDS, SyntheticSource.

def test_video_frames(vocab):
  records = _records(video=True)
  batch = next(ip.create_eval_iterator(records, vocab, batch_size=8, image_size=16,
                                       clip_radius=1))
  assert batch['frames'].shape == (8, 3, 16, 16, 3)
  for frames, image, (r, _) in zip(batch['frames'], batch['image'], batch['index']):
    np.testing.assert_array_equal(frames[1], image)  # the annotated frame is the centre
    np.testing.assert_array_equal(frames[0], ip.resize_and_pad(records[r]['frames'][1], 16)[0])
  with pytest.raises(ValueError, match='clip_radius 3 needs'):
    next(ip.create_eval_iterator(records, vocab, batch_size=8, image_size=16, clip_radius=3))


@pytest.mark.parametrize('video', [False, True])
def test_tfds_source_matches_in_memory(tfds_sources, vocab, video):
  kwargs = dict(batch_size=4, image_size=16, with_baselines=True,
                clip_radius=1 if video else None)
  batches = zip(ip.create_eval_iterator(_records(video), vocab, **kwargs),
                ip.create_eval_iterator(tfds_sources[video], vocab, **kwargs))
  for want, got in batches:
    assert set(got) == set(want)
    for k in want:
      for a, b in zip(want[k], got[k]):  # lists or arrays
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_synthetic_source(vocab):
  synthetic = pytest.importorskip('cmsa_jax.data.synthetic')
  source = synthetic.SyntheticSource('train', 6, seed=0, image_size=32)
  index = ip.sentence_index(source)
  vocab = text.Vocabulary.build(index.texts)
  train = ip.create_train_iterator(source, vocab, batch_size=2, image_size=16, seed=0, index=index)
  batch = next(train)
  assert batch['image'].shape == (2, 16, 16, 3) and batch['mask'].max() == 1.0
  assert batch['token_mask'][:, 0].all()
  valid = [b['valid'].sum() for b in ip.create_eval_iterator(source, vocab, batch_size=4,
                                                             image_size=16, index=index)]
  assert sum(valid) == len(index)
