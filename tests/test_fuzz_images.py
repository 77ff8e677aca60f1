"""Fuzzed image readers: predict's `load_image` and the builders' `image_io.read_jpeg`.

Random bytes, valid PNG/JPEG/GIF/TIFF/WebP/BMP files truncated and bit-flipped,
headers declaring huge sizes (decompression bombs) and every Pillow mode: each
read gives (H, W, 3) uint8 RGB, or an `errors.UserError` naming the file
(property in tests/fuzzing.py).
"""

import io

from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
from PIL import Image
import pytest

import fuzzing
from cmsa_jax.media import image_io
from cmsa_jax.run import predict

pytestmark = pytest.mark.fuzz

FORMATS = ('PNG', 'JPEG', 'GIF', 'TIFF', 'WEBP', 'BMP')


def _encode(array, mode, fmt, **options):
  buffer = io.BytesIO()
  Image.fromarray(array).convert(mode).save(buffer, format=fmt, **options)
  return buffer.getvalue()


def _seed(fmt):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (12, 17, 3), np.uint8)
  return _encode(rgb, 'RGB', fmt, **({'exif': _rotated_exif()} if fmt in ('JPEG', 'PNG') else {}))


def _rotated_exif():
  exif = Image.Exif()
  exif[0x0112] = 6  # Rotated 90 degrees: the reader must apply it.
  return exif


SEEDS = {fmt: _seed(fmt) for fmt in FORMATS}

images = st.one_of(
    st.binary(max_size=512),
    st.sampled_from(FORMATS).flatmap(lambda fmt: fuzzing.mutated(SEEDS[fmt])),
    st.builds(fuzzing.png_declaring, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1),
              st.sampled_from([0, 2, 3, 4, 6]), st.sampled_from([1, 8, 16]),
              st.binary(max_size=64)),
)

# Pillow modes and the formats that store them.
MODES = {'1': ('PNG', 'TIFF', 'BMP'), 'L': FORMATS, 'P': ('PNG', 'GIF', 'TIFF', 'BMP'),
         'RGB': FORMATS, 'RGBA': ('PNG', 'TIFF', 'WEBP'), 'LA': ('PNG', 'TIFF'),
         'CMYK': ('JPEG', 'TIFF'), 'YCbCr': ('JPEG', 'TIFF'), 'LAB': ('TIFF',),
         'I': ('PNG', 'TIFF'), 'I;16': ('PNG', 'TIFF'), 'I;16B': ('TIFF',), 'F': ('TIFF',),
         'PA': ('PNG',), 'HSV': ('TIFF',)}


@st.composite
def odd_modes(draw):
  """A small image of any mode, in a format that stores it, with any pixel values."""
  mode = draw(st.sampled_from(sorted(MODES)))
  fmt = draw(st.sampled_from(MODES[mode]))
  height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
  image = Image.new(mode, (width, height))
  seed = draw(st.integers(0, 2**32 - 1))
  raw = np.random.default_rng(seed).integers(0, 256, len(image.tobytes()), np.uint8)
  image.frombytes(raw.tobytes())
  buffer = io.BytesIO()
  try:
    image.save(buffer, format=fmt)
  except (OSError, ValueError, KeyError):  # This Pillow cannot write that mode there.
    return draw(st.nothing())
  return buffer.getvalue()


def _check_load_image(tmp_path, data, name='image'):
  sandbox = fuzzing.decoys(tmp_path)
  path = sandbox / name
  path.write_bytes(data)
  rgb = fuzzing.check(lambda: predict.load_image(str(path)), name=path, sandbox=sandbox,
                      given=path)
  if rgb is not None:
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size
  return rgb


# Crashes the fuzzing found, fixed in image_io (DECODE_ERRORS, `decoding`, `errors.one_line`):
# a TIFF whose StripOffsets tag is a RATIONAL: TypeError from Pillow's decoder.
TIFF_RATIONAL_OFFSETS = SEEDS['TIFF'].replace(b'\x11\x01\x04\x00', b'\x11\x01\x05\x00', 1)


@fuzzing.budget(60)
@given(data=images)
@example(data=TIFF_RATIONAL_OFFSETS)
@example(data=b'')
@example(data=fuzzing.png_declaring(20000, 20000))  # 400 M pixels: refused before decoding.
@example(data=fuzzing.png_declaring(10000, 10000, color_type=0))  # 100 M: over the warning.
def test_load_image(tmp_path_factory, data):
  _check_load_image(tmp_path_factory.mktemp('img'), data)


@fuzzing.budget(30)
@given(data=odd_modes())
def test_load_image_any_mode(tmp_path_factory, data):
  rgb = _check_load_image(tmp_path_factory.mktemp('mode'), data)
  if rgb is not None:
    with Image.open(io.BytesIO(data)) as image:
      assert rgb.shape[:2] == (image.height, image.width)


@fuzzing.budget(40)
@given(data=images, name=fuzzing.file_names)
@example(data=SEEDS['PNG'][:100], name='\n')  # A line break in the name: a two-line error.
@example(data=SEEDS['PNG'], name='\u202e.png')  # An RTL override would reorder the message.
def test_builder_read_jpeg(tmp_path_factory, data, name):
  sandbox = fuzzing.decoys(tmp_path_factory.mktemp('jpeg'))
  path = sandbox / 'in' / name
  path.parent.mkdir()
  path.write_bytes(data)
  result = fuzzing.check(lambda: image_io.read_jpeg(path), name=path, sandbox=sandbox, given=path)
  if result is not None:
    jpeg, height, width = result
    with Image.open(io.BytesIO(jpeg)) as image:
      assert image.format == 'JPEG' and image.size == (width, height)
