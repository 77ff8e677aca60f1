"""Writes a tiny A2D Sentences manual dir in the published formats.

  python datasets/a2d_sentences/make_dummy_data.py <manual_dir>

trainVideo1 is an H.264 mp4 only (7 frames): frame 2 has instances 0 and 1,
frame 6 only instance 0. test-Video2 has pre-extracted JPEG frames (4 frames,
one instance) and a decoy mp4 that the frames folder overrides. missedVid03 is
listed as missed and absentVid4 has no files: both yield nothing. The
annotation file has a 'trainVideo1,1 (copy),...' row, stray spaces and a
header. h5 masks are MATLAB doubles, `reMask` transposed, without the instance
axis for a single instance.
"""

import pathlib
import sys

import av
import h5py
import numpy as np
from PIL import Image

H, W = 32, 48
GRAY = 20  # frame i of trainVideo1 is uniformly GRAY * i, of test-Video2 GRAY * (i + 5)


def frame(i):
  return np.full((H, W, 3), GRAY * i, np.uint8)


def box_mask(top, left):
  mask = np.zeros((H, W), np.uint8)
  mask[top:top + 8, left:left + 12] = 1
  return mask


def write_mp4(path, num_frames):
  """Lossless H.264 video, as A2D's clips320H."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=24)
    stream.height, stream.width, stream.pix_fmt = H, W, 'yuv420p'
    stream.options = {'qp': '0'}
    for i in range(1, num_frames + 1):
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame(i), format='rgb24')))
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


# (video, frame): masks of its instances 0, 1, ...
MASKS = {('trainVideo1', 2): [box_mask(2, 3), box_mask(20, 30)],
         ('trainVideo1', 6): [box_mask(10, 10)],
         ('test-Video2', 1): [box_mask(0, 0)], ('test-Video2', 4): [box_mask(24, 36)]}
ANNOTATION = """video_id,instance_id,query
absentVid4,0,a cat is eating
missedVid03,0,a baby crawling
test-Video2,0,a bird is flying\x20
trainVideo1,0,man in red shirt climbing
trainVideo1,1 (copy),bird standing in the beach
trainVideo1,1, a dog running on the right
"""


def write(root):
  """Writes the manual dir into `root`; returns `root`."""
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
    Image.fromarray(frame(i + 5)).save(release / 'frames' / 'test-Video2' / f'{i:05d}.jpg')
  instances = text / 'a2d_annotation_with_instances'
  write_h5(instances / 'trainVideo1' / '00002.h5', [0, 1], MASKS['trainVideo1', 2], [11, 78])
  write_h5(instances / 'trainVideo1' / '00006.h5', [0], MASKS['trainVideo1', 6], [11])
  write_h5(instances / 'test-Video2' / '00001.h5', [0], MASKS['test-Video2', 1], [44])
  write_h5(instances / 'test-Video2' / '00004.h5', [0], MASKS['test-Video2', 4], [44])
  write_h5(instances / 'missedVid03' / '00003.h5', [0], [box_mask(0, 0)], [22])
  return root


if __name__ == '__main__':
  write(pathlib.Path(sys.argv[1]))
