"""Builds JHMDB Sentences from a tiny manual dir in the published layout and reads it back."""

import pathlib
import sys

import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from cmsa_jax.data import video

# TFDS reads a builder's metadata through its package: import it as datasets/<name>/<module>.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from jhmdb_sentences import jhmdb_sentences_dataset_builder as jhmdb  # pylint: disable=wrong-import-position

H, W = 24, 32
GRAY = 30  # frame i of a dummy video is uniformly GRAY * i


def write_mat_v5(path, part_mask):
  scipy.io.savemat(path, {'part_mask': part_mask})


def write_mat_v73(path, part_mask):
  """MATLAB v7.3: HDF5 behind a 512-byte MAT header, arrays stored transposed."""
  with h5py.File(path, 'w', userblock_size=512) as f:
    f['part_mask'] = part_mask.T
    f['part_mask'].attrs['MATLAB_class'] = np.bytes_('uint8')
  text = (b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 '
          b'HDF5 schema 1.00 .')
  with open(path, 'r+b') as f:  # text, subsystem offset, version 0x0200, endianness
    f.write(text.ljust(116) + bytes(8) + b'\x00\x02IM')


def _part_mask(seed, num_masks):
  return np.random.default_rng(seed).integers(0, 2, (H, W, num_masks), dtype=np.uint8)


CLAP = 'Boom_Snap_Clap_clap_u_nm_np1_fr_med_0'
PULLUP = '32_Pull-ups_at_193IBS_pullup_f_cm_np1_ba_med_1'
# video_id: (action, frames, masks, mat writer). The clap video has a mask for 5 of its 6 frames.
VIDEOS = {CLAP: ('clap', 6, _part_mask(0, 5), write_mat_v5),
          PULLUP: ('pullup', 3, _part_mask(1, 3), write_mat_v73)}
ANNOTATION = """video_id,query
32_Pull-ups_at_193IBS_pullup_f_cm_np1_ba_med_1,a top naked man is doing pull ups
Absent_video_wave_u_nm_np1_fr_med_0,a man is waving hand
Boom_Snap_Clap_clap_u_nm_np1_fr_med_0, girl clapping her hands\x20
"""


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('jhmdb')
  (root / 'jhmdb_annotation.txt').write_text(ANNOTATION)
  (root / 'Rename_Images' / 'clap' / '.AppleDouble').mkdir(parents=True)  # as in the archive
  for video_id, (action, num_frames, part_mask, write_mat) in VIDEOS.items():
    frames = root / 'Rename_Images' / action / video_id
    frames.mkdir(parents=True)
    (frames / '.DS_Store').write_bytes(b'\0')
    for i in range(1, num_frames + 1):
      Image.fromarray(np.full((H, W, 3), GRAY * i, np.uint8)).save(frames / f'{i:05d}.png')
    masks = root / 'puppet_mask' / action / video_id
    masks.mkdir(parents=True)
    write_mat(masks / 'puppet_mask.mat', part_mask)
  return root


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
  assert sorted(records) == [(PULLUP, 1), (PULLUP, 2), (PULLUP, 3),
                             (CLAP, 1), (CLAP, 3), (CLAP, 5)]


def test_all_frames_evaluates_every_masked_frame(manual_dir, tmp_path):
  records = _records(manual_dir, tmp_path, 'all_frames')
  assert sorted(records) == [(PULLUP, 1), (PULLUP, 2), (PULLUP, 3)] + [
      (CLAP, i) for i in range(1, 6)]


def test_masks_and_sentences_match_the_source(records):
  for (video_id, frame), r in records.items():
    action, _, part_mask, _ = VIDEOS[video_id]
    np.testing.assert_array_equal(r['objects']['mask'][0][..., 0], part_mask[..., frame - 1])
    assert r['objects']['category'][0].decode() == action
    assert r['sentences']['object_index'][0] == 0
    assert (r['height'], r['width']) == (H, W)
  assert records[CLAP, 3]['sentences']['text'][0].decode() == 'girl clapping her hands'
  assert records[CLAP, 3]['sentences']['id'][0] == 2


def test_clips_are_edge_padded_over_all_frames_of_the_folder(records):
  r = records[CLAP, 5]
  assert list(r['frame_ids']) == [1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6]  # frame 6 has no mask
  np.testing.assert_allclose([f.mean() for f in r['frames']],
                             [GRAY * i for i in r['frame_ids']], atol=1)
  np.testing.assert_array_equal(r['image'], r['frames'][5])


def test_puppet_mask_reader_agrees_on_v5_and_v73(tmp_path):
  part_mask = _part_mask(2, 4)
  write_mat_v5(tmp_path / 'v5.mat', part_mask)
  write_mat_v73(tmp_path / 'v73.mat', part_mask)
  assert scipy.io.matlab.matfile_version(tmp_path / 'v73.mat') == (2, 0)
  for name in ('v5.mat', 'v73.mat'):
    np.testing.assert_array_equal(video.read_puppet_mask(tmp_path / name),
                                  np.moveaxis(part_mask, -1, 0))


def test_missing_masks_name_the_path(manual_dir, tmp_path):
  (tmp_path / 'jhmdb_annotation.txt').write_text(ANNOTATION)
  (tmp_path / 'Rename_Images').symlink_to(manual_dir / 'Rename_Images')
  with pytest.raises(FileNotFoundError, match='puppet_mask.*J-HMDB'):
    _records(tmp_path, tmp_path / 'data', 'default')


def test_no_annotated_video_on_disk_is_an_error(manual_dir, tmp_path):
  (tmp_path / 'jhmdb_annotation.txt').write_text(
      'video_id,query\nAbsent_video_wave_u_nm_np1_fr_med_0,a man\n')
  for folder in ('Rename_Images', 'puppet_mask'):
    (tmp_path / folder).symlink_to(manual_dir / folder)
  with pytest.raises(FileNotFoundError, match='None of the 1 annotated videos'):
    _records(tmp_path, tmp_path / 'data', 'default')
