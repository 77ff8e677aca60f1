"""The property every fuzzed reader must hold, and Hypothesis strategies to attack it.

A reader given any input either returns its documented result or raises
`errors.UserError` whose message is one line naming the input. On top of that,
while it runs: no example takes longer than `TIME_BOUND_S` (a hang is killed
by faulthandler after `HANG_KILL_S`), nothing is created or modified outside
the output folder, and no file is opened in the sandbox except the given input
(a file, or the files of the given folder): a playlist, HDF5 external link or
frame pattern naming a neighbour file must not make the reader open it.

Budgets: the 'ci' profile (the default) is derandomized with each test's small
`max_examples`; `pytest -m fuzz` loads 'long' (random, `LONG_FACTOR` times as
many examples, failures kept in .hypothesis/). Both are registered in
conftest.py.
"""

import contextlib
import ctypes
import ctypes.util
import faulthandler
import io
import os
from pathlib import Path
import struct
import time
import zlib

from hypothesis import settings
from PIL import Image
from hypothesis import strategies as st

from cmsa_jax import errors

TIME_BOUND_S = 20.0  # Per example, on a shared 2-core machine; readers take < 1 s.
HANG_KILL_S = 120.0  # faulthandler kills the process (a hang inside C code).
LONG_FACTOR = 50
PROFILE = 'ci'  # Set by conftest.py.


def budget(ci_examples):
  """Settings of one fuzz test: `ci_examples` in CI, LONG_FACTOR times more in 'long'."""
  factor = LONG_FACTOR if PROFILE == 'long' else 1
  return settings(max_examples=ci_examples * factor)


# File-system watch (inotify): which files a reader opens and writes.

_IN_ACCESS, _IN_MODIFY, _IN_CLOSE_WRITE, _IN_OPEN = 0x1, 0x2, 0x8, 0x20
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE, _IN_ISDIR = 0x80, 0x100, 0x200, 0x40000000
_WRITES = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
_MASK = _IN_OPEN | _IN_ACCESS | _WRITES
_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)


class _Watch:
  """Records (path, event mask) of every open/read/write under the watched folders."""

  def __init__(self, folders):
    self._fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if self._fd < 0:
      raise OSError(ctypes.get_errno(), 'inotify_init1')
    self._dirs = {}
    for folder in folders:
      for root, dirs, _ in os.walk(folder):
        self._add(root)
        for d in dirs:  # Symlinked folders are not walked, but watched.
          self._add(os.path.join(root, d))
    self.events()  # Drops the walk's own folder reads.

  def _add(self, folder):
    wd = _libc.inotify_add_watch(self._fd, os.fsencode(folder), _MASK)
    if wd >= 0:
      self._dirs[wd] = folder

  def events(self):
    found, data = [], b''
    while True:
      try:
        chunk = os.read(self._fd, 65536)
      except BlockingIOError:
        break
      data += chunk
    offset = 0
    while offset + 16 <= len(data):
      wd, mask, _, length = struct.unpack_from('iIII', data, offset)
      name = data[offset + 16:offset + 16 + length].rstrip(b'\0')
      offset += 16 + length
      if wd in self._dirs:
        found.append((os.path.join(self._dirs[wd], os.fsdecode(name)), mask))
    return found

  def close(self):
    os.close(self._fd)


def _within(path, folder):
  path, folder = os.path.abspath(path), os.path.abspath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def _hang_guard():
  faulthandler.dump_traceback_later(HANG_KILL_S, exit=True)
  try:
    yield
  finally:
    faulthandler.cancel_dump_traceback_later()


def check(read, *, name, sandbox, given, output=None, also=()):
  """Runs `read()` and checks the property; returns its result, or None for a UserError.

  Args:
    read: the reader call, without arguments.
    name: text every error message must contain (the path or value given).
    sandbox: folder watched for opens and writes (holds `given`, decoys, `output`).
    given: the file or folder given to the reader: the only thing it may open.
    output: the folder it may write to (None: it writes nothing).
    also: other paths it may open (e.g. the targets of symlinks in `given`).
  """
  watch = _Watch([sandbox])
  start = time.monotonic()
  try:
    with _hang_guard():
      result = read()
  except errors.UserError as e:
    message = str(e)
    assert '\n' not in message, f'multi-line error: {message!r}'
    assert errors.one_line(name) in message, f'error does not name {name!r}: {message!r}'
    result = None
  finally:
    elapsed = time.monotonic() - start
    events = watch.events()
    watch.close()
  assert elapsed < TIME_BOUND_S, f'took {elapsed:.1f} s (bound {TIME_BOUND_S} s)'
  given_real = os.path.realpath(given)
  for path, mask in events:
    if output is not None and _within(path, output):
      continue
    assert not mask & _WRITES, f'wrote outside the output folder: {path} (mask {mask:#x})'
    allowed = (_within(path, given) or _within(os.path.realpath(path), given_real) or
               any(_within(path, p) for p in also))
    if mask & _IN_ISDIR:  # Listing a folder above the input (e.g. the sandbox) is fine.
      allowed = allowed or _within(given, path)
    assert allowed, f'opened {path}, beyond the given {given}'
  return result


def decoys(sandbox):
  """Files next to the input that a hostile input may name; the reader must not open them."""
  sandbox = Path(sandbox)
  for name in ('decoy.png', 'decoy1.png', 'decoy.ts', 'decoy.h5', 'decoy.mp4', 'decoy.txt'):
    (sandbox / name).write_bytes(b'decoy')
  return sandbox


# Any name a Linux file can have that Python spells as text (no '/', NUL or lone surrogates).
file_names = st.text(st.characters(exclude_characters='/\0', exclude_categories=['Cs']),
                     min_size=1, max_size=20).filter(lambda s: s not in ('.', '..'))


# Byte mutations of a valid seed file.

@st.composite
def mutated(draw, seed):
  """`seed` truncated, bit-flipped, overwritten, inserted into or cut; 1-4 edits."""
  data = bytearray(seed)
  for _ in range(draw(st.integers(1, 4))):
    kind = draw(st.sampled_from(['truncate', 'flip', 'overwrite', 'insert', 'delete']))
    pos = draw(st.integers(0, max(0, len(data) - 1)))
    if kind == 'truncate':
      del data[pos:]
    elif kind == 'flip' and data:
      data[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == 'overwrite':
      chunk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
          [b'\xff\xff\xff\xff', b'\x7f\xff\xff\xff', b'\x00\x00\x00\x00', b'\x80\x00']))
      data[pos:pos + len(chunk)] = chunk
    elif kind == 'insert':
      data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    elif kind == 'delete':
      del data[pos:pos + draw(st.integers(1, 64))]
  return bytes(data)


def jpeg_bytes(rgb):
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, format='JPEG')
  return buffer.getvalue()


def png_bytes(rgb):
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, format='PNG')
  return buffer.getvalue()


def png_chunk(kind, payload):
  return (struct.pack('>I', len(payload)) + kind + payload +
          struct.pack('>I', zlib.crc32(kind + payload)))


def png_declaring(width, height, color_type=2, bit_depth=8, body=b''):
  """A PNG header declaring any size (a decompression bomb when huge), then `body` as IDAT."""
  ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', body) +
          png_chunk(b'IEND', b''))
