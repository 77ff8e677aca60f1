"""Builds A2D Sentences from a tiny manual dir in the published layout and reads it back."""

import io
import pathlib
import shutil
import sys

import av
import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cmsa_jax.data import video

# TFDS reads a builder's metadata through its package: import it as datasets/<name>/<module>.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from a2d_sentences import a2d_sentences_dataset_builder as a2d  # pylint: disable=wrong-import-position

H, W = 32, 48
GRAY = 20  # frame i of a dummy video is uniformly GRAY * i


def _frame(i):
  return np.full((H, W, 3), GRAY * i, np.uint8)


def _mask(top, left):
  mask = np.zeros((H, W), np.uint8)
  mask[top:top + 8, left:left + 12] = 1
  return mask


def write_mp4(path, num_frames):
  """H.264 video, as A2D's clips320H."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=24)
    stream.height, stream.width, stream.pix_fmt = H, W, 'yuv420p'
    stream.options = {'qp': '0'}
    for i in range(1, num_frames + 1):
      container.mux(stream.encode(av.VideoFrame.from_ndarray(_frame(i), format='rgb24')))
    container.mux(stream.encode())


def write_h5(path, instance_ids, masks, labels):
  """Instance masks as published: MATLAB doubles, reMask transposed, no axis for one instance."""
  path.parent.mkdir(parents=True, exist_ok=True)
  remask = np.stack(masks).swapaxes(1, 2)
  with h5py.File(path, 'w') as f:
    f['instance'] = np.asarray(instance_ids, np.float64)
    f['reMask'] = remask[0] if len(masks) == 1 else remask
    f['reBBox'] = np.zeros((4, len(masks)) if len(masks) > 1 else (4,))
    f['id'] = np.asarray([labels], np.float64)


# trainVideo1: mp4 only, 7 frames; frame 2 has instances 0 and 1, frame 6 only instance 0.
# test-Video2: pre-extracted JPEG frames (and a decoy mp4), 4 frames, one instance.
# missedVid03 is listed as missed, absentVid4 has no files: both yield nothing.
MASKS = {('trainVideo1', 2): [_mask(2, 3), _mask(20, 30)], ('trainVideo1', 6): [_mask(10, 10)],
         ('test-Video2', 1): [_mask(0, 0)], ('test-Video2', 4): [_mask(24, 36)]}
ANNOTATION = """video_id,instance_id,query
absentVid4,0,a cat is eating
missedVid03,0,a baby crawling
test-Video2,0,a bird is flying\x20
trainVideo1,0,man in red shirt climbing
trainVideo1,1 (copy),bird standing in the beach
trainVideo1,1, a dog running on the right
"""


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('a2d')
  release, text = root / 'Release', root / 'text_annotations'
  (release / 'clips320H').mkdir(parents=True)
  text.mkdir()
  (release / 'videoset.csv').write_text(
      'trainVideo1,11,-1,-1,32,48,7,2,0\nmissedVid03,22,-1,-1,32,48,7,1,0\n'
      'test-Video2,44,-1,-1,32,48,4,2,1\nabsentVid4,63,-1,-1,32,48,5,1,1\n')
  (text / 'a2d_annotation.txt').write_text(ANNOTATION)
  (text / 'a2d_missed_videos.txt').write_text('missedVid03\nzzzzzzzzzzz')
  write_mp4(release / 'clips320H' / 'trainVideo1.mp4', 7)
  write_mp4(release / 'clips320H' / 'missedVid03.mp4', 7)
  write_mp4(release / 'clips320H' / 'test-Video2.mp4', 4)  # decoy: the frames folder wins
  (release / 'frames' / 'test-Video2').mkdir(parents=True)
  for i in range(1, 5):
    Image.fromarray(_frame(i + 5)).save(release / 'frames' / 'test-Video2' / f'{i:05d}.jpg')
  instances = text / 'a2d_annotation_with_instances'
  write_h5(instances / 'trainVideo1' / '00002.h5', [0, 1], MASKS['trainVideo1', 2], [11, 78])
  write_h5(instances / 'trainVideo1' / '00006.h5', [0], MASKS['trainVideo1', 6], [11])
  write_h5(instances / 'test-Video2' / '00001.h5', [0], MASKS['test-Video2', 1], [44])
  write_h5(instances / 'test-Video2' / '00004.h5', [0], MASKS['test-Video2', 4], [44])
  write_h5(instances / 'missedVid03' / '00003.h5', [0], [_mask(0, 0)], [22])
  return root


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
      expected = np.stack(MASKS[video_id, frame])
      masks = np.stack(r['objects']['mask'])
      assert masks.shape == expected.shape + (1,)
      np.testing.assert_array_equal(masks[..., 0], expected)
      assert (r['height'], r['width']) == (H, W)


def test_clips_are_edge_padded_and_decoded_from_the_mp4(records):
  r = records['train']['trainVideo1', 6, 3]
  assert list(r['frame_ids']) == [1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7]
  means = [frame.mean() for frame in r['frames']]
  np.testing.assert_allclose(means, [GRAY * i for i in r['frame_ids']], atol=3)
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
  write_h5(h5, [0], [np.zeros((H + 2, W), np.uint8)], [11])
  with pytest.raises(ValueError, match='00006.h5'):
    _build(bad, tmp_path / 'data')


def test_missing_manual_file_names_the_path_and_source(tmp_path):
  (tmp_path / 'Release').mkdir()
  (tmp_path / 'text_annotations').mkdir()
  with pytest.raises(FileNotFoundError, match='videoset.csv.*A2D'):
    _build(tmp_path, tmp_path / 'data')


def test_h5_reader_repairs_published_defects(tmp_path):
  masks = [_mask(0, 0), _mask(10, 10), _mask(20, 20)]
  write_h5(tmp_path / 'extra.h5', [4, 7], masks, [11, 36, 49])  # 3 masks, 2 ids
  frame = video.read_a2d_frame(tmp_path / 'extra.h5')
  assert frame.instance_ids == [4, 7] and frame.labels == [11, 36]
  np.testing.assert_array_equal(frame.masks, masks[:2])
  write_h5(tmp_path / 'repeat.h5', [0, 1, 1], masks, [11, 12, 13])  # instance 1 twice
  frame = video.read_a2d_frame(tmp_path / 'repeat.h5')
  assert frame.instance_ids == [0, 1] and frame.labels == [11, 12]
  np.testing.assert_array_equal(frame.masks, masks[:2])
  with h5py.File(tmp_path / 'empty.h5', 'w') as f:  # a frame without instances
    f['instance'], f['reMask'] = np.zeros((0,)), np.zeros((0,))
  assert video.read_a2d_frame(tmp_path / 'empty.h5').instance_ids == []
  write_h5(tmp_path / 'short.h5', [0, 1, 2], masks[:2], [11, 12, 13])
  with pytest.raises(ValueError, match='short.h5'):
    video.read_a2d_frame(tmp_path / 'short.h5')
