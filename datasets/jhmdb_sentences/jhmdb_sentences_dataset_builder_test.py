"""Builds JHMDB Sentences from a tiny manual dir in the published layout and reads it back."""

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from cmsa_jax.records import video
from jhmdb_sentences import jhmdb_sentences_dataset_builder as jhmdb
from jhmdb_sentences import make_dummy_data as dummy


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  return dummy.write(tmp_path_factory.mktemp('jhmdb'))


def _records(manual, data_dir, config):
  builder = jhmdb.Builder(data_dir=data_dir, config=config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual), file_format='array_record')
  assert list(builder.info.splits) == ['test']
  return {(r['video_id'].decode(), int(r['frame_index'])): r for r in tfds.data_source(
      f'jhmdb_sentences/{config}', split='test', data_dir=data_dir)}


@pytest.fixture(scope='module')
def records(manual_dir, tmp_path_factory):
  return _records(manual_dir, tmp_path_factory.mktemp('jhmdb_data'), 'default')


def test_default_evaluates_first_middle_and_last_masked_frame(records):
  assert sorted(records) == [(dummy.PULLUP, 1), (dummy.PULLUP, 2), (dummy.PULLUP, 3),
                             (dummy.CLAP, 1), (dummy.CLAP, 3), (dummy.CLAP, 5)]


def test_all_frames_evaluates_every_masked_frame(manual_dir, tmp_path):
  records = _records(manual_dir, tmp_path, 'all_frames')
  assert sorted(records) == [(dummy.PULLUP, 1), (dummy.PULLUP, 2), (dummy.PULLUP, 3)] + [
      (dummy.CLAP, i) for i in range(1, 6)]


def test_masks_and_sentences_match_the_source(records):
  for (video_id, frame), r in records.items():
    action, _, part_mask, _ = dummy.VIDEOS[video_id]
    np.testing.assert_array_equal(r['objects']['mask'][0][..., 0], part_mask[..., frame - 1])
    assert r['objects']['category'][0].decode() == action
    assert r['sentences']['object_index'][0] == 0
    assert (r['height'], r['width']) == (dummy.H, dummy.W)
  assert records[dummy.CLAP, 3]['sentences']['text'][0].decode() == 'girl clapping her hands'
  assert records[dummy.CLAP, 3]['sentences']['id'][0] == 2


def test_clips_are_edge_padded_over_all_frames_of_the_folder(records):
  r = records[dummy.CLAP, 5]
  assert list(r['frame_ids']) == [1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6]  # frame 6 has no mask
  np.testing.assert_allclose([f.mean() for f in r['frames']],
                             [dummy.GRAY * i for i in r['frame_ids']], atol=1)
  np.testing.assert_array_equal(r['image'], r['frames'][5])


def test_puppet_mask_reader_agrees_on_v5_and_v73(tmp_path):
  part_mask = dummy.part_mask(2, 4)
  dummy.write_mat_v5(tmp_path / 'v5.mat', part_mask)
  dummy.write_mat_v73(tmp_path / 'v73.mat', part_mask)
  assert scipy.io.matlab.matfile_version(tmp_path / 'v73.mat') == (2, 0)
  for name in ('v5.mat', 'v73.mat'):
    np.testing.assert_array_equal(video.read_puppet_mask(tmp_path / name),
                                  np.moveaxis(part_mask, -1, 0))


def test_missing_masks_name_the_path(manual_dir, tmp_path):
  (tmp_path / 'jhmdb_annotation.txt').write_text(dummy.ANNOTATION)
  (tmp_path / 'Rename_Images').symlink_to(manual_dir / 'Rename_Images')
  with pytest.raises(FileNotFoundError, match='puppet_mask.*J-HMDB'):
    _records(tmp_path, tmp_path / 'data', 'default')


def test_no_annotated_video_on_disk_is_an_error(manual_dir, tmp_path):
  (tmp_path / 'jhmdb_annotation.txt').write_text(
      'video_id,query\nAbsent_video_wave_u_nm_np1_fr_med_0,a man\n')
  for folder in ('Rename_Images', 'puppet_mask'):
    (tmp_path / folder).symlink_to(manual_dir / folder)
  with pytest.raises(ValueError, match='all 1 videos are broken, e.g. Absent_video'):
    _records(tmp_path, tmp_path / 'data', 'default')
