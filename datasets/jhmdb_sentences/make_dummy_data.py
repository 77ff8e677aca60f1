"""Writes a tiny JHMDB Sentences manual dir in the published formats.

  python datasets/jhmdb_sentences/make_dummy_data.py <manual_dir>

Two videos with PNG frames: the clap video has a MATLAB v5 puppet mask for 5
of its 6 frames, the pull-up video a v7.3 (HDF5) one for its 3 frames. A third
annotated video is absent; `.AppleDouble` and `.DS_Store` litter the folders as
in the archive.
"""

import pathlib
import sys

import h5py
import numpy as np
from PIL import Image
import scipy.io

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


def part_mask(seed, num_masks):
  """A random {0, 1} `part_mask` (H, W, num_masks)."""
  return np.random.default_rng(seed).integers(0, 2, (H, W, num_masks), dtype=np.uint8)


CLAP = 'Boom_Snap_Clap_clap_u_nm_np1_fr_med_0'
PULLUP = '32_Pull-ups_at_193IBS_pullup_f_cm_np1_ba_med_1'
# video_id: (action, frames, part_mask, mat writer).
VIDEOS = {CLAP: ('clap', 6, part_mask(0, 5), write_mat_v5),
          PULLUP: ('pullup', 3, part_mask(1, 3), write_mat_v73)}
ANNOTATION = """video_id,query
32_Pull-ups_at_193IBS_pullup_f_cm_np1_ba_med_1,a top naked man is doing pull ups
Absent_video_wave_u_nm_np1_fr_med_0,a man is waving hand
Boom_Snap_Clap_clap_u_nm_np1_fr_med_0, girl clapping her hands\x20
"""


def write(root):
  """Writes the manual dir into `root`; returns `root`."""
  root.mkdir(parents=True, exist_ok=True)
  (root / 'jhmdb_annotation.txt').write_text(ANNOTATION)
  (root / 'Rename_Images' / 'clap' / '.AppleDouble').mkdir(parents=True)
  for video_id, (action, num_frames, masks, write_mat) in VIDEOS.items():
    frames = root / 'Rename_Images' / action / video_id
    frames.mkdir(parents=True)
    (frames / '.DS_Store').write_bytes(b'\0')
    for i in range(1, num_frames + 1):
      Image.fromarray(np.full((H, W, 3), GRAY * i, np.uint8)).save(frames / f'{i:05d}.png')
    (root / 'puppet_mask' / action / video_id).mkdir(parents=True)
    write_mat(root / 'puppet_mask' / action / video_id / 'puppet_mask.mat', masks)
  return root


if __name__ == '__main__':
  write(pathlib.Path(sys.argv[1]))
