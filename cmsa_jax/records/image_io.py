"""Encoded images and masks as the builders hand them to TFDS.

Photos stay JPEG: an RGB or grayscale JPEG passes through byte for byte, any
other image (CMYK JPEG, PNG, decoded video frames) is encoded once as an RGB
JPEG at `JPEG_QUALITY`. Masks and generated images are lossless PNG.
"""

import io
from pathlib import Path

from absl import logging
import numpy as np
from PIL import Image

JPEG_QUALITY = 90
_JPEG_MODES = ('RGB', 'L')  # Modes every JPEG decoder reads back as they were.


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


def as_jpeg(data):
  """JPEG bytes of encoded image bytes: RGB or grayscale JPEG passes through, else re-encoded."""
  with Image.open(io.BytesIO(data)) as image:
    if image.format == 'JPEG' and image.mode in _JPEG_MODES:
      return data
    return encode_jpeg(np.asarray(image.convert('RGB')))


def size(data):
  """(height, width) of encoded image bytes, read from the header."""
  with Image.open(io.BytesIO(data)) as image:
    return image.height, image.width


def read_jpeg(path):
  """(JPEG bytes, height, width) of the image file `path`; see `as_jpeg`, re-encoding is logged."""
  data = Path(path).read_bytes()
  jpeg = as_jpeg(data)
  if jpeg is not data:
    logging.warning('Re-encoded %s as an RGB JPEG (quality %d).', path, JPEG_QUALITY)
  return (jpeg, *size(jpeg))
