"""Builds A2D Sentences from a tiny manual dir in the published layout and reads it back."""

import io
import shutil

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from a2d_sentences import a2d_sentences_dataset_builder as a2d
from a2d_sentences import make_dummy_data as dummy
from cmsa_jax.records import video
from cmsa_jax.records import broken


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  return dummy.write(tmp_path_factory.mktemp('a2d'))


def _build(manual, data_dir, config='default'):
  builder = a2d.Builder(data_dir=data_dir, config=config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual), file_format='array_record')
  return builder


@pytest.fixture(scope='module')
def records(manual_dir, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('a2d_data')
  _build(manual_dir, data_dir)
  return {split: {(r['video_id'].decode(), int(r['frame_index']), int(r['sentences']['id'][0])): r
                  for r in tfds.data_source('a2d_sentences/default', split=split,
                                            data_dir=data_dir)}
          for split in ('train', 'test')}


def _decode(data):
  return np.asarray(Image.open(io.BytesIO(data)))


def test_one_record_per_expression_and_frame_with_its_instance(records):
  # Expression ids are data rows: 3 = man (instance 0), 5 = dog (instance 1), 2 = bird.
  assert sorted(records['train']) == [('trainVideo1', 2, 3), ('trainVideo1', 2, 5),
                                      ('trainVideo1', 6, 3)]
  assert sorted(records['test']) == [('test-Video2', 1, 2), ('test-Video2', 4, 2)]


def test_sentences_point_at_their_instance_among_all_frame_instances(records):
  dog = records['train']['trainVideo1', 2, 5]
  assert list(dog['objects']['id']) == [0, 1]
  assert [c.decode() for c in dog['objects']['category']] == ['adult-climbing', 'dog-walking']
  assert dog['sentences']['object_index'][0] == 1
  assert dog['sentences']['text'][0].decode() == 'a dog running on the right'
  assert records['test']['test-Video2', 1, 2]['sentences']['text'][0].decode() == 'a bird is flying'


def test_masks_match_the_transposed_h5_masks(records):
  for split in records.values():
    for (video_id, frame, _), r in split.items():
      expected = np.stack(dummy.MASKS[video_id, frame])
      masks = np.stack(r['objects']['mask'])
      assert masks.shape == expected.shape + (1,)
      np.testing.assert_array_equal(masks[..., 0], expected)
      assert (r['height'], r['width']) == (dummy.H, dummy.W)


def test_clips_are_edge_padded_and_decoded_from_the_mp4(records):
  r = records['train']['trainVideo1', 6, 3]
  assert list(r['frame_ids']) == [1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7]
  means = [frame.mean() for frame in r['frames']]
  np.testing.assert_allclose(means, [dummy.GRAY * i for i in r['frame_ids']], atol=3)
  np.testing.assert_array_equal(r['image'], r['frames'][5])


def test_pre_extracted_jpegs_pass_through(records, manual_dir):
  r = records['test']['test-Video2', 4, 2]
  assert list(r['frame_ids']) == [1, 1, 1, 2, 3, 4, 4, 4, 4, 4, 4]
  folder = manual_dir / 'Release' / 'frames' / 'test-Video2'
  for frame_id, frame in zip(r['frame_ids'], r['frames']):
    np.testing.assert_array_equal(frame, _decode((folder / f'{frame_id:05d}.jpg').read_bytes()))


def test_single_frame_config_keeps_only_the_annotated_frame(manual_dir, tmp_path):
  _build(manual_dir, tmp_path, 'single_frame')
  source = tfds.data_source('a2d_sentences/single_frame', split='train', data_dir=tmp_path)
  assert sorted((int(r['frame_index']), list(r['frame_ids'])) for r in source) == [
      (2, [2]), (2, [2]), (6, [6])]


def test_mask_size_mismatch_names_the_file(manual_dir, tmp_path):
  bad = tmp_path / 'manual'
  shutil.copytree(manual_dir, bad)
  h5 = bad / 'text_annotations/a2d_annotation_with_instances/trainVideo1/00006.h5'
  dummy.write_h5(h5, [0], [np.zeros((dummy.H + 2, dummy.W), np.uint8)], [11])
  with broken.strict_mode(), pytest.raises(ValueError, match='00006.h5'):
    _build(bad, tmp_path / 'data')


def test_missing_manual_file_names_the_path_and_source(tmp_path):
  (tmp_path / 'Release').mkdir()
  (tmp_path / 'text_annotations').mkdir()
  with pytest.raises(FileNotFoundError, match='videoset.csv.*A2D'):
    _build(tmp_path, tmp_path / 'data')


def test_h5_reader_repairs_published_defects(tmp_path):
  masks = [dummy.box_mask(0, 0), dummy.box_mask(10, 10), dummy.box_mask(20, 20)]
  dummy.write_h5(tmp_path / 'extra.h5', [4, 7], masks, [11, 36, 49])  # 3 masks, 2 ids
  frame = video.read_a2d_frame(tmp_path / 'extra.h5')
  assert frame.instance_ids == [4, 7] and frame.labels == [11, 36]
  np.testing.assert_array_equal(frame.masks, masks[:2])
  dummy.write_h5(tmp_path / 'repeat.h5', [0, 1, 1], masks, [11, 12, 13])  # instance 1 twice
  frame = video.read_a2d_frame(tmp_path / 'repeat.h5')
  assert frame.instance_ids == [0, 1] and frame.labels == [11, 12]
  np.testing.assert_array_equal(frame.masks, masks[:2])
  with h5py.File(tmp_path / 'empty.h5', 'w') as f:  # a frame without instances
    f['instance'], f['reMask'] = np.zeros((0,)), np.zeros((0,))
  assert video.read_a2d_frame(tmp_path / 'empty.h5').instance_ids == []
  dummy.write_h5(tmp_path / 'short.h5', [0, 1, 2], masks[:2], [11, 12, 13])
  with pytest.raises(ValueError, match='short.h5'):
    video.read_a2d_frame(tmp_path / 'short.h5')


def test_expressions_of_unlisted_videos_are_skipped_with_a_warning(manual_dir, tmp_path, caplog):
  extra = tmp_path / 'manual'
  shutil.copytree(manual_dir, extra)
  annotation = extra / 'text_annotations' / 'a2d_annotation.txt'
  annotation.write_text(annotation.read_text() + 'notInVideoset,0,a cat jumping\n')
  builder = _build(extra, tmp_path / 'data')
  assert builder.info.splits['train'].num_examples == 3  # As without the row.
  assert any('notInVideoset' in r.getMessage() and 'a2d_annotation.txt' in r.getMessage()
             for r in caplog.records)
