"""Clips of 2τ+1 frames centred on an annotated frame, and their edge padding.

The one rule (Eq.9-11's clip at the ends of a video): a clip id before the
first frame or after the last repeats that end frame. Frame ids are 1-indexed,
as in both video datasets' file names.
"""

import numpy as np

from cmsa_jax.media import image_io


def clip_frame_ids(center, radius, num_frames):
  """The 2*radius+1 frame ids centred on `center`, edge-padded into [1, num_frames]."""
  if not 1 <= center <= num_frames:
    raise ValueError(f'center={center} is outside the video frames [1, {num_frames}]')
  if radius < 0:
    raise ValueError(f'radius={radius} must be >= 0')
  return [min(max(i, 1), num_frames) for i in range(center - radius, center + radius + 1)]


def clip_mask(frame_ids):
  """Which frames of a clip are real, from its 2τ+1 frame ids (annotated one in the
  middle): False where a frame repeats its neighbour towards the middle, the edge
  padding of `clip_frame_ids`."""
  ids = np.asarray(frame_ids).reshape(-1)
  tau = len(ids) // 2
  towards_centre = np.concatenate([ids[1:tau + 1], ids[tau:tau + 1], ids[tau:-1]])
  return (ids != towards_centre) | (np.arange(len(ids)) == tau)


def clip_fields(jpegs, center, radius, num_frames, *, masks, masks_path):
  """The fields a record of annotated frame `center` shares with every expression there.

  `jpegs` and `num_frames` are `frames.load_clip_frames`'s; `masks` ((n, H, W) or
  (H, W), read from `masks_path`) must have the frame's size, else ValueError naming
  the file.
  """
  height, width = image_io.size(jpegs[center])
  if masks.shape[-2:] != (height, width):
    raise ValueError(f'{masks_path}: masks are {masks.shape[-2:]} (H, W) but frame {center} '
                     f'is {(height, width)}')
  frame_ids = clip_frame_ids(center, radius, num_frames)
  return {'image': jpegs[center], 'height': height, 'width': width, 'frame_index': center,
          'frames': [jpegs[i] for i in frame_ids], 'frame_ids': frame_ids}
