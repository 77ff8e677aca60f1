"""Decoded and encoded images and masks, for the builders and for prediction.

Every image is read as it is displayed: (H, W, 3) uint8 RGB with its EXIF
orientation applied (masks are drawn on the displayed picture), whatever its
mode (`to_rgb`). A file that does not decode completely (corrupt, truncated) is
an InputError naming it, at build time rather than mid-training.

Photos stay JPEG: an upright RGB or grayscale JPEG passes through byte for
byte, any other image (CMYK or EXIF-rotated JPEG, PNG, decoded video frames)
is encoded once as an RGB JPEG at `JPEG_QUALITY`. Masks and generated images
are lossless PNG.
"""

import contextlib
import io
from pathlib import Path
import warnings

from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageOps

from cmsa_jax import errors

JPEG_QUALITY = 90
_JPEG_MODES = ('RGB', 'L')  # Modes every JPEG decoder reads back as they were.
_ORIENTATION = 0x0112  # EXIF tag; 1 is upright.
_SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
_ALPHA = ('RGBA', 'LA', 'PA', 'RGBa', 'La')


def _encode(image, **options):
  buffer = io.BytesIO()
  image.save(buffer, **options)
  return buffer.getvalue()


def encode_jpeg(rgb):
  """JPEG bytes of a uint8 (H, W, 3) array."""
  return _encode(Image.fromarray(rgb), format='JPEG', quality=JPEG_QUALITY)


def encode_png(array):
  """PNG bytes of a uint8 (H, W), (H, W, 1) or (H, W, 3) array, e.g. a {0, 1} mask."""
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  return _encode(Image.fromarray(array), format='PNG')


# What Pillow raises on malformed bytes, in its header parsers, decoders, EXIF reader and mode
# conversions (tests/test_fuzz_images.py found TypeError from a TIFF decoder).
DECODE_ERRORS = errors.MALFORMED_INPUT + (Image.DecompressionBombError,)


@contextlib.contextmanager
def decoding(name):
  """Turns a DECODE_ERRORS raised within into an InputError naming `name` (one line)."""
  with errors.reading_as_input(name, DECODE_ERRORS, 'not a readable image'):
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)  # Large, not malicious.
      yield


def read_file(path):
  """The bytes of the file `path`; NotFoundError or InputError naming it if it cannot be read."""
  try:
    return Path(path).read_bytes()
  except FileNotFoundError:
    raise errors.NotFoundError(f'{errors.one_line(path)}: no such file') from None
  except OSError as e:  # A folder, no permission, a symlink loop, an I/O error.
    raise errors.InputError(f'{errors.one_line(path)}: cannot be read '
                            f'({errors.one_line(e.strerror or e)})') from None


def open_image(data, name):
  """The fully decoded PIL image of encoded bytes; InputError naming `name` if it does not decode."""
  with decoding(name):
    image = Image.open(io.BytesIO(data))
    image.load()
  return image


def to_rgb(image, name):
  """(H, W, 3) uint8 RGB of a PIL image as displayed.

  EXIF orientation applied; 16-bit and integer images scaled from 0..65535;
  float images must hold finite values in [0, 1]; transparency is composited
  over black (the padding colour of the input pipeline); palette, CMYK and
  grayscale images converted as Pillow does. InputError naming `name` otherwise.
  """
  with decoding(name):
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT or image.mode == 'F':
      return np.repeat(_gray_to_uint8(np.asarray(image), image.mode, name)[..., None], 3, -1)
    if image.mode == 'P' and 'transparency' in image.info:
      image = image.convert('RGBA')
    if image.mode in _ALPHA:
      rgba = np.asarray(image.convert('RGBA')).astype(np.uint16)
      return (rgba[..., :3] * rgba[..., 3:] // 255).astype(np.uint8)
    return np.asarray(image.convert('RGB'))


def _gray_to_uint8(pixels, mode, name):
  if mode == 'F':
    if not np.isfinite(pixels).all():
      raise errors.InputError(f'{errors.one_line(name)}: '
                              f'{np.size(pixels) - np.isfinite(pixels).sum()} pixels are '
                              'NaN or infinite; a float image must hold finite values in [0, 1]')
    low, high = 0.0, 1.0
  else:
    low, high = 0, 65535
  if pixels.size and (pixels.min() < low or pixels.max() > high):
    raise errors.InputError(f'{errors.one_line(name)}: {mode} pixels range over '
                            f'[{pixels.min()}, {pixels.max()}]; '
                            f'expected [{low}, {high}]')
  return np.round(pixels.astype(np.float64) * (255 / high)).astype(np.uint8)


def read_rgb(path):
  """(H, W, 3) uint8 RGB of an image file as displayed (see `to_rgb`)."""
  return to_rgb(open_image(read_file(path), path), path)


def as_jpeg(data, name='image'):
  """JPEG bytes of encoded image bytes: an upright RGB or grayscale JPEG passes through,
  anything else is re-encoded from `to_rgb`. InputError naming `name` if it does not decode."""
  image = open_image(data, name)
  with decoding(name):
    upright = image.getexif().get(_ORIENTATION, 1) == 1
  if image.format == 'JPEG' and image.mode in _JPEG_MODES and upright:
    return data
  return encode_jpeg(to_rgb(image, name))


def size(data):
  """(height, width) of encoded image bytes, read from the header."""
  with Image.open(io.BytesIO(data)) as image:
    return image.height, image.width


def read_jpeg(path):
  """(JPEG bytes, height, width) of the image file `path`; see `as_jpeg`, re-encoding is logged."""
  data = read_file(path)
  jpeg = as_jpeg(data, path)
  if jpeg is not data:
    logging.warning('Re-encoded %s as an upright RGB JPEG (quality %d).', path, JPEG_QUALITY)
  return (jpeg, *size(jpeg))
