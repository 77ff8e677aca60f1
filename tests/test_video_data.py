"""Video input: synthetic moving-shape clips, clip batches with edge-padding masks,
and the bad-input checks that keep frames and masks aligned."""

import numpy as np
import pytest

from cmsa_jax import errors
from cmsa_jax.data import input_pipeline as ip
from cmsa_jax.data import sources
from cmsa_jax.data import synthetic_video as sv
from cmsa_jax.data import text
from cmsa_jax.run import dataset
from configs import demo_video
from tests import helpers


def test_records_are_deterministic_and_well_formed():
  a, b = sv.generate_example(0, 'train', 5), sv.generate_example(0, 'train', 5)
  np.testing.assert_array_equal(np.stack(a['frames']), np.stack(b['frames']))
  assert a['sentences']['text'] == b['sentences']['text']
  other = sv.generate_example(0, 'test', 5)
  assert not np.array_equal(np.stack(a['frames']), np.stack(other['frames']))
  assert len(a['frames']) == 5 and list(a['frame_ids']) == [1, 2, 3, 4, 5]
  assert int(a['frame_index']) == 3
  np.testing.assert_array_equal(a['frames'][2], a['image'])
  assert all(m.shape == (64, 64, 1) and m.any() for m in a['objects']['mask'])


def test_frames_move_and_both_families_occur():
  families, moved = set(), 0
  for i in range(40):
    record = sv.generate_example(1, 'validation', i, image_size=48, clip_radius=1)
    families.update(f.decode() for f in record['sentences']['family'])
    moved += not np.array_equal(record['frames'][0], record['frames'][2])
  assert families == set(sv.FAMILIES)
  assert moved > 20


def _mover(shape, motion, direction='', speed=0.0):
  return sv._Mover(shape, 'red', 'small', motion, direction, speed)


def test_motion_claims_single_out_one_of_same_looking_shapes():
  left, right = _mover('circle', 'moves', 'left', 2), _mover('circle', 'moves', 'right', 4)
  still, stops = _mover('circle', 'still'), _mover('circle', 'stops', 'up', 2)
  group = [left, right, still, stops]
  assert sv._motion_claims(left, group) == ['moving left']
  assert sv._motion_claims(right, group) == ['moving right', 'moving fastest']
  assert sv._motion_claims(still, group) == ['that does not move']
  assert sv._motion_claims(stops, group) == ['moving up', 'that stops']
  twin = _mover('circle', 'moves', 'left', 2)
  assert sv._motion_claims(left, [left, twin]) == []  # Nothing tells them apart.
  # A shape that stops is where it was from the annotated frame on.
  assert stops.centre(4, 2) == stops.centre(2, 2) != stops.centre(0, 2)


@pytest.fixture
def vocab():
  return text.Vocabulary.build(['the circle moving left', 'the red square that stops'])


def _record(frame_ids, size=(20, 24), frame_index=None):
  rng = np.random.default_rng(0)
  frames = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in frame_ids]
  mask = np.zeros(size + (1,), np.uint8)
  mask[2:8, 3:9] = 1
  c = len(frame_ids) // 2
  return {'image': frames[c], 'height': size[0], 'width': size[1], 'frames': frames,
          'frame_ids': np.asarray(frame_ids, np.int32),
          'frame_index': np.int32(frame_ids[c] if frame_index is None else frame_index),
          'video_id': b'v', 'objects': {'mask': [mask], 'id': [0], 'category': [b'x']},
          'sentences': {'text': [b'the circle moving left'], 'tokens': [b''],
                        'object_index': [np.int32(0)], 'id': [0]}}


@pytest.mark.parametrize('frame_ids, tau, want', [
    ([1, 2, 3, 4, 5], 2, [1, 1, 1, 1, 1]),
    ([1, 1, 1, 2, 3], 2, [0, 0, 1, 1, 1]),  # Annotated frame 1: padded at the start.
    ([5, 6, 7, 7, 7], 2, [1, 1, 1, 0, 0]),  # Annotated frame 7 of 7: padded at the end.
    ([1, 1, 1, 1, 1], 1, [0, 1, 0]),  # A one-frame video.
    ([1, 1, 1, 2, 3], 1, [0, 1, 1]),  # A smaller clip than the record's.
])
def test_edge_padded_frames_are_masked(vocab, frame_ids, tau, want):
  batch = next(ip.create_eval_iterator([_record(frame_ids)], vocab, batch_size=1,
                                       image_size=16, clip_radius=tau))
  np.testing.assert_array_equal(batch['frame_mask'][0], np.asarray(want, bool))
  assert batch['frames'].shape == (1, 2 * tau + 1, 16, 16, 3)
  np.testing.assert_array_equal(batch['frames'][0, tau], batch['image'][0])


def test_misaligned_clips_name_the_record(vocab):
  bad_centre = _record([1, 2, 3, 4, 5], frame_index=4)
  with pytest.raises(ValueError, match=r'record 0: the clip is not centred on .* 4'):
    next(ip.create_eval_iterator([bad_centre], vocab, batch_size=1, image_size=16, clip_radius=2))
  bad_size = _record([1, 2, 3, 4, 5])
  bad_size['frames'][0] = np.zeros((10, 24, 3), np.uint8)
  with pytest.raises(ValueError, match='record 0: clip frames of shape'):
    next(ip.create_train_iterator([bad_size], vocab, batch_size=1, image_size=16, seed=0,
                                  clip_radius=2))


def test_the_video_demo_generates_its_splits_on_the_fly():
  config = demo_video.get_config()
  source = dataset.load_source(config, 'test')
  assert isinstance(source, sv.SyntheticVideoSource) and len(source) == 300
  assert len(source[0]['frames']) == 2 * config.clip_radius + 1
  assert sources.has_all_objects(config.dataset)
  config.dataset = 'a2d_sentences/default'
  config.data_dir = '/nonexistent'
  with pytest.raises(errors.NotFoundError, match='a2d_sentences'):
    dataset.load_source(config, 'test')


def test_a_registered_builder_is_not_built_by_reading_it(monkeypatch, tmp_path):
  """With a builder's code imported (as a test or a notebook may have), reading an
  unbuilt dataset still says how to build it instead of starting a build."""
  monkeypatch.syspath_prepend(str(helpers.REPO / 'datasets'))
  from a2d_sentences import a2d_sentences_dataset_builder  # pylint: disable=g-import-not-at-top,unused-import
  config = demo_video.get_config()
  config.dataset, config.data_dir = 'a2d_sentences/default', str(tmp_path)
  with pytest.raises(errors.NotFoundError, match='build_dataset a2d_sentences/default'):
    dataset.load_source(config, 'test')
  assert not list(tmp_path.iterdir())  # Nothing was written.
