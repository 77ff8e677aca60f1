"""Video frames from a video file (any format PyAV opens) or a folder of numbered
images (1..n). Frame ids are 1-indexed, as in both video datasets' file names.
Builders get JPEG bytes (`image_io.as_jpeg`: JPEG sources pass through, anything
else is encoded once); prediction gets decoded RGB arrays.
"""

import contextlib
import io
import re
from pathlib import Path

import av

from cmsa_jax import errors
from cmsa_jax.media import clips
from cmsa_jax.media import image_io

_FRAME_NAME = re.compile(r'(\d+)\.(jpe?g|png)', re.IGNORECASE)


def numbered_frames(folder):
  """Image files named <number>.<jpg|png> in `folder` in frame order; they must be 1..n, n >= 1.

  Anything else (hidden `.AppleDouble` folders, `.DS_Store`, ...) is ignored.
  Symlinked frames are followed. InputError (a ValueError) naming the folder for
  no frame at all (the empty folder of issue 21), gaps, or a number twice.
  """
  found, name = {}, errors.one_line(folder)
  try:
    for path in Path(folder).iterdir():
      match = _FRAME_NAME.fullmatch(path.name)
      if match and path.is_file():
        number = int(match.group(1))
        if number in found:
          raise errors.InputError(f'{name}: frame {number} is there twice: '
                                  f'{errors.one_line(found[number].name)} and '
                                  f'{errors.one_line(path.name)}')
        found[number] = path
  except OSError as e:
    raise errors.InputError(f'{name}: cannot be listed ({errors.one_line(e.strerror or e)})'
                            ) from None
  if not found:
    raise errors.InputError(f'{name}: no frame images (<number>.jpg|png)')
  if sorted(found) != list(range(1, len(found) + 1)):
    raise errors.InputError(f'{name}: frame files must be numbered 1..n, found '
                            f'{sorted(found)[:10]}...')
  return [found[i] for i in range(1, len(found) + 1)]


class _Unnamed:
  """A file PyAV reads through Python calls, so FFmpeg never sees its name: a name like
  `clip%d.png` would make FFmpeg's image2 demuxer read clip1.png, clip2.png, ... instead."""

  def __init__(self, f):
    self.read, self.seek, self.tell = f.read, f.seek, f.tell


# What PyAV raises on a damaged or hostile file (FFmpegError covers its ValueError kinds).
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError)


@contextlib.contextmanager
def open_video(path):
  """The PyAV container of the video file `path` and its first video stream.

  FFmpeg may open no other file or URL (protocol whitelist 'none'): an HLS
  playlist, an ffconcat list or a name pattern naming other files is refused
  rather than followed (tests/test_fuzz_video.py). InputError naming `path` if
  it cannot be read.
  """
  name = errors.one_line(path)
  try:
    with open(path, 'rb') as f, av.open(_Unnamed(f), options={'protocol_whitelist': 'none'}
                                        ) as container:
      if not container.streams.video:
        raise errors.InputError(f'{name}: not a readable video (no video stream)')
      yield container, container.streams.video[0]
  except errors.UserError:
    raise
  except _DECODE_ERRORS as e:
    raise errors.InputError(f'{name}: not a readable video ({type(e).__name__}: '
                            f'{errors.one_line(e)})') from None


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
    return {i: image_io.as_jpeg(image_io.read_file(files[i - 1]), files[i - 1])
            for i in sorted(wanted)}, num_frames
  # The frame count is known only after decoding: ids past the end resolve to the last
  # frame, which is always kept.
  beyond = max(centers + [1]) + radius  # Ids past `beyond` cannot occur: no upper padding.
  wanted = {i for c in centers if c >= 1 for i in clips.clip_frame_ids(c, radius, beyond)}
  frames, num_frames, last = {}, 0, None
  with open_video(source) as (container, stream):
    stream.thread_type = 'AUTO'
    for num_frames, frame in enumerate(container.decode(stream), start=1):
      last = frame
      if num_frames in wanted:
        frames[num_frames] = image_io.encode_jpeg(frame.to_ndarray(format='rgb24'))
    if not num_frames:
      raise errors.InputError(f'{errors.one_line(source)}: no video frames could be decoded')
    if num_frames not in frames:
      frames[num_frames] = image_io.encode_jpeg(last.to_ndarray(format='rgb24'))
  _check_centers(source, centers, num_frames)
  return frames, num_frames


def read_frames(source):
  """Every frame of a video file or of a folder of numbered images (1..n), as
  (H, W, 3) uint8 RGB arrays in order.

  Frames are read as `image_io.read_rgb` reads an image (as displayed, any
  mode). Raises InputError (a ValueError) naming the source for an unreadable
  file, no frame at all (an empty folder or a video without decodable frames), a
  video that decodes to fewer frames than its container declares (truncated),
  a folder with gaps in its numbering, or frames of different sizes.
  """
  source, name = Path(source), errors.one_line(source)
  if source.is_dir():
    frames = [image_io.read_rgb(path) for path in numbered_frames(source)]
  else:
    with open_video(source) as (container, stream):
      declared = stream.frames
      frames = [f.to_ndarray(format='rgb24') for f in container.decode(stream)]
    if not frames:
      raise errors.InputError(f'{name}: no video frames could be decoded')
    if declared and len(frames) < declared:
      raise errors.InputError(f'{name}: truncated: {len(frames)} of the {declared} frames its '
                              'container declares could be decoded')
  sizes = sorted({f.shape for f in frames})
  if len(sizes) > 1:
    raise errors.InputError(f'{name}: frames differ in size: {sizes}')
  return frames


def _check_centers(source, centers, num_frames):
  if centers and not 1 <= centers[0] <= centers[-1] <= num_frames:
    raise errors.InputError(f'{errors.one_line(source)}: annotated frames {centers} fall outside '
                            f'its {num_frames} frames')


def encode_video(frames, fmt='mp4', codec='libx264', fps=8):
  """The bytes of a video file (container `fmt`, `codec`) of (H, W, 3) uint8 frames of
  even sizes, e.g. an H.264 MP4."""
  buffer = io.BytesIO()
  with av.open(buffer, 'w', format=fmt) as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = 'yuv420p'
    for f in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format='rgb24')))
    container.mux(stream.encode())
  return buffer.getvalue()
