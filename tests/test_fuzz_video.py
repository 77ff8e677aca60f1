"""Fuzzed video readers: predict's `load_frames` and the builders' `frames_lib.load_clip_frames`.

Random bytes; valid mp4 / webm / GIF files truncated and mutated; playlists and
lists naming other files; frame folders that are empty, hold junk or non-image
files, unicode and space names, duplicate numbers, symlinks (in, out, dangling,
looping). Each read gives >= 1 frames of one size, or an `errors.UserError`
naming the input (property in tests/fuzzing.py).
"""

import io
import os

from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
from PIL import Image
import pytest

import fuzzing
from cmsa_jax import errors
from cmsa_jax.media import frames as frames_lib
from cmsa_jax.run import predict_video

pytestmark = pytest.mark.fuzz


def _frames(n=4, height=16, width=24):
  return [np.full((height, width, 3), 40 * i, np.uint8) for i in range(n)]


def _gif(frames):
  buffer = io.BytesIO()
  pictures = [Image.fromarray(f) for f in frames]
  pictures[0].save(buffer, format='GIF', save_all=True, append_images=pictures[1:], duration=100)
  return buffer.getvalue()


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


SEEDS = {'mp4': frames_lib.encode_video(_frames(), 'mp4', 'mpeg4'),
         'webm': frames_lib.encode_video(_frames(), 'webm', 'libvpx'),
         'gif': _gif(_frames())}
# Files naming their neighbours: FFmpeg would follow each without the protocol whitelist.
HLS = b'#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\ndecoy.ts\n#EXT-X-ENDLIST\n'
FFCONCAT = b'ffconcat version 1.0\nfile decoy.mp4\n'

video_bytes = st.one_of(
    st.binary(max_size=256),
    st.sampled_from(sorted(SEEDS)).flatmap(lambda kind: fuzzing.mutated(SEEDS[kind])),
    st.sampled_from([HLS, FFCONCAT]),
)


def _check_video_file(sandbox, data, name):
  path = sandbox / name
  path.write_bytes(data)
  frames = fuzzing.check(lambda: predict_video.load_frames(str(path)), name=path,
                         sandbox=sandbox, given=path)
  if frames is not None:
    assert frames and len({f.shape for f in frames}) == 1
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
  result = fuzzing.check(lambda: frames_lib.load_clip_frames(path, [1], 1), name=path,
                         sandbox=sandbox, given=path)
  if result is not None:
    jpegs, num_frames = result
    assert num_frames >= 1 and set(jpegs) <= set(range(1, num_frames + 1)) and 1 in jpegs


@fuzzing.budget(40)
@given(data=video_bytes, name=st.sampled_from(['clip.mp4', 'clip%d.png', 'a b.webm', 'x.m3u8']))
# Crashes found and fixed in video.open_video: FFmpeg followed an HLS playlist, an ffconcat
# list and the name pattern `clip%d.png` to other files (decoy.ts, decoy.mp4, clip1.png).
@example(data=HLS, name='x.m3u8')
@example(data=FFCONCAT, name='clip.mp4')
@example(data=SEEDS['mp4'], name='clip%d.png')
@example(data=b'', name='clip.mp4')
def test_video_file(tmp_path_factory, data, name):
  sandbox = fuzzing.decoys(tmp_path_factory.mktemp('video'))
  Image.new('RGB', (8, 8)).save(sandbox / 'clip1.png')  # What `clip%d.png` would read.
  (sandbox / 'decoy.ts').write_bytes(frames_lib.encode_video(_frames(), 'mpegts', 'mpeg4'))
  (sandbox / 'decoy.mp4').write_bytes(SEEDS['mp4'])
  _check_video_file(sandbox, data, name)


# Frame folders.

def _entry(kind, index, seed, size):
  """(name, bytes) of one folder entry."""
  frame = np.random.default_rng(seed).integers(0, 256, size + (3,), np.uint8)
  if kind == 'frame':
    return f'{index:05d}.png', _png(frame)
  if kind == 'jpeg':
    return f'{index}.JPG', fuzzing.jpeg_bytes(frame)
  if kind == 'junk_frame':
    return f'{index:05d}.png', np.random.default_rng(seed).bytes(40)
  return {'text': ('notes.txt', b'hello'), 'ds_store': ('.DS_Store', b'\0\0\0\1Bud1'),
          'unicode': (f'фрейм {index}.png', _png(frame)),
          'spaces': (f' {index}.png', _png(frame))}[kind]


@st.composite
def frame_folders(draw):
  """A folder spec: entries (name, bytes), symlinks (name, target) and subfolders."""
  size = draw(st.sampled_from([(8, 12), (8, 12), (9, 12)]))
  kinds = st.sampled_from(['frame', 'frame', 'frame', 'jpeg', 'junk_frame', 'text', 'ds_store',
                           'unicode', 'spaces'])
  entries = [_entry(draw(kinds), draw(st.integers(0, 6)), draw(st.integers(0, 99)),
                    draw(st.sampled_from([(8, 12), size])))
             for _ in range(draw(st.integers(0, 6)))]
  links = draw(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(
      ['inside', 'outside', 'dangling', 'loop', 'folder'])), max_size=2))
  subfolders = draw(st.lists(st.sampled_from(['00002.png', 'sub', '.AppleDouble']), max_size=1))
  return entries, links, subfolders


def _make_folder(sandbox, spec, name):
  entries, links, subfolders = spec
  folder = sandbox / name
  folder.mkdir()
  for entry, data in entries:
    (folder / entry).write_bytes(data)
  Image.new('RGB', (12, 8)).save(sandbox / 'decoy.png')
  for index, kind in links:
    link = folder / f'{index:05d}.png'
    if link.exists() or link.is_symlink():
      continue
    target = {'inside': folder / (entries[0][0] if entries else 'none.png'),
              'outside': sandbox / 'decoy.png', 'dangling': sandbox / 'gone.png',
              'loop': link, 'folder': sandbox}[kind]
    os.symlink(target, link)
  for sub in subfolders:
    if not os.path.lexists(folder / sub):
      (folder / sub).mkdir()
  return folder


def _check_folder(sandbox, folder):
  # Symlinked frames are followed (documented): their targets may be read.
  targets = [os.path.realpath(p) for p in folder.iterdir() if p.is_symlink()]
  frames = fuzzing.check(lambda: predict_video.load_frames(str(folder)), name=folder,
                         sandbox=sandbox, given=folder, also=targets)
  if frames is not None:
    assert frames and len({f.shape for f in frames}) == 1
  result = fuzzing.check(lambda: frames_lib.load_clip_frames(folder, [1], 2), name=folder,
                         sandbox=sandbox, given=folder, also=targets)
  if result is not None and frames is not None:  # Builders decode only the clip's frames.
    assert result[1] == len(frames)


@fuzzing.budget(40)
@given(spec=frame_folders(), name=st.sampled_from(['frames', 'my frames', 'кадры', 'a\nb']))
@example(spec=([], [], []), name='frames')  # Empty: IndexError in predict_video.run_model.
@example(spec=([('notes.txt', b'x')], [], ['sub']), name='frames')  # No image among the files.
@example(spec=([], [(1, 'loop')], []), name='a\nb')
@example(spec=([], [(1, 'folder')], []), name='frames')
def test_frame_folder(tmp_path_factory, spec, name):
  sandbox = fuzzing.decoys(tmp_path_factory.mktemp('folder'))
  _check_folder(sandbox, _make_folder(sandbox, spec, name))


def test_empty_folder_is_a_one_line_error(tmp_path):
  """The issue's crash: `--mode=predict --video=EMPTY_FOLDER` ended in an IndexError."""
  with pytest.raises(errors.InputError, match='no frame images'):
    predict_video.load_frames(str(tmp_path))
