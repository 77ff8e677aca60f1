"""Video frames from a video file (any format PyAV opens) or a folder of numbered
images (1..n). Frame ids are 1-indexed, as in both video datasets' file names.
Builders get JPEG bytes (`image_io.as_jpeg`: JPEG sources pass through, anything
else is encoded once); prediction gets decoded RGB arrays.
"""

import re
from pathlib import Path

import av
import numpy as np
import PIL.Image

from cmsa_jax.media import clips
from cmsa_jax.media import image_io

_FRAME_NAME = re.compile(r'(\d+)\.(jpe?g|png)', re.IGNORECASE)


def numbered_frames(folder):
  """Image files named <number>.<jpg|png> in `folder` in frame order; they must be 1..n.

  Anything else (hidden `.AppleDouble` folders, `.DS_Store`, ...) is ignored.
  """
  found = {}
  for path in Path(folder).iterdir():
    match = _FRAME_NAME.fullmatch(path.name)
    if match and path.is_file():
      found[int(match.group(1))] = path
  if sorted(found) != list(range(1, len(found) + 1)):
    raise ValueError(f'{folder}: frame files must be numbered 1..n, found {sorted(found)[:10]}...'
                     if found else f'{folder}: no frame images (<number>.jpg|png)')
  return [found[i] for i in range(1, len(found) + 1)]


def load_clip_frames(source, centers, radius):
  """JPEG bytes of every frame in the clips around `centers`, and the video's frame count.

  `source` is a folder of numbered images or a video file. A video is decoded
  once, front to back, keeping only the frames the clips use, so memory holds
  a few encoded frames rather than the decoded video.

  Returns:
    ({frame_id: jpeg bytes}, num_frames); clips are
    `clips.clip_frame_ids(c, radius, num_frames)`.
  """
  source = Path(source)
  centers = sorted(set(centers))
  if source.is_dir():
    files = numbered_frames(source)
    num_frames = len(files)
    _check_centers(source, centers, num_frames)
    wanted = {i for c in centers for i in clips.clip_frame_ids(c, radius, num_frames)}
    return {i: image_io.as_jpeg(files[i - 1].read_bytes(), files[i - 1])
            for i in sorted(wanted)}, num_frames
  # The frame count is known only after decoding: ids past the end resolve to the last
  # frame, which is always kept.
  beyond = max(centers + [1]) + radius  # Ids past `beyond` cannot occur: no upper padding.
  wanted = {i for c in centers if c >= 1 for i in clips.clip_frame_ids(c, radius, beyond)}
  frames, num_frames, last = {}, 0, None
  with av.open(str(source)) as container:
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    for num_frames, frame in enumerate(container.decode(stream), start=1):
      last = frame
      if num_frames in wanted:
        frames[num_frames] = image_io.encode_jpeg(frame.to_ndarray(format='rgb24'))
  if not num_frames:
    raise ValueError(f'{source}: no video frames could be decoded')
  _check_centers(source, centers, num_frames)
  if num_frames not in frames:
    frames[num_frames] = image_io.encode_jpeg(last.to_ndarray(format='rgb24'))
  return frames, num_frames


def read_frames(source):
  """Every frame of a video file or of a folder of numbered images (1..n), as
  (H, W, 3) uint8 RGB arrays in order.

  Raises ValueError naming the source for an unreadable file, a video that
  decodes to fewer frames than its container declares (truncated), a folder
  with gaps in its numbering, or frames of different sizes.
  """
  source = Path(source)
  if source.is_dir():
    frames = [_read_rgb(path) for path in numbered_frames(source)]
  else:
    try:
      with av.open(str(source)) as container:
        stream = container.streams.video[0]
        declared = stream.frames
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as e:
      raise ValueError(f'{source}: not a readable video ({e})') from None
    if not frames:
      raise ValueError(f'{source}: no video frames could be decoded')
    if declared and len(frames) < declared:
      raise ValueError(f'{source}: truncated: {len(frames)} of the {declared} frames its '
                       'container declares could be decoded')
  sizes = sorted({f.shape for f in frames})
  if len(sizes) > 1:
    raise ValueError(f'{source}: frames differ in size: {sizes}')
  return frames


def _read_rgb(path):
  try:
    with PIL.Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: not a readable image ({e})') from None


def _check_centers(source, centers, num_frames):
  if centers and not 1 <= centers[0] <= centers[-1] <= num_frames:
    raise ValueError(f'{source}: annotated frames {centers} fall outside its {num_frames} frames')
