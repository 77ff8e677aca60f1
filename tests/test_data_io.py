"""Tests for the builders' shared image encoding (image_io) and missing-file errors (manual_files)."""

import io
import logging

import numpy as np
from PIL import Image
import pytest

from cmsa_jax.media import image_io
from cmsa_jax.records import manual_files


def _encoded(array, mode=None, **options):
  buffer = io.BytesIO()
  image = Image.fromarray(array)
  (image.convert(mode) if mode else image).save(buffer, **options)
  return buffer.getvalue()


def _decoded(data):
  with Image.open(io.BytesIO(data)) as image:
    return image.format, image.mode, np.asarray(image)


def _gradient(height=12, width=20):
  y, x = np.mgrid[:height, :width]
  return np.stack([10 * y, 10 * x, np.full_like(x, 128)], -1).astype(np.uint8)


@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_rgb_and_grayscale_jpegs_pass_through(mode):
  data = _encoded(_gradient(), mode, format='JPEG', quality=70)
  assert image_io.as_jpeg(data) is data


@pytest.mark.parametrize('mode, options', [('CMYK', {'format': 'JPEG', 'quality': 95}),
                                           ('RGB', {'format': 'PNG'}),
                                           ('RGBA', {'format': 'PNG'})])
def test_other_images_become_rgb_jpegs(mode, options):
  rgb = _gradient()
  image_format, image_mode, pixels = _decoded(image_io.as_jpeg(_encoded(rgb, mode, **options)))
  assert (image_format, image_mode, pixels.shape) == ('JPEG', 'RGB', rgb.shape)
  assert np.abs(pixels.astype(int) - rgb).mean() < 4


@pytest.mark.parametrize('shape', [(5, 7), (5, 7, 1), (5, 7, 3)])
def test_png_is_lossless(shape):
  array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  image_format, _, pixels = _decoded(image_io.encode_png(array))
  assert image_format == 'PNG'
  np.testing.assert_array_equal(pixels, array.reshape(shape[:2] + shape[2:3]).squeeze())


def test_size_is_height_then_width():
  assert image_io.size(image_io.encode_jpeg(_gradient(12, 20))) == (12, 20)


def test_read_jpeg_logs_only_a_re_encoding(tmp_path, caplog):
  (tmp_path / 'a.jpg').write_bytes(_encoded(_gradient(), format='JPEG'))
  (tmp_path / 'b.png').write_bytes(_encoded(_gradient(), format='PNG'))
  with caplog.at_level(logging.WARNING):
    data, height, width = image_io.read_jpeg(tmp_path / 'a.jpg')
    assert data == (tmp_path / 'a.jpg').read_bytes() and (height, width) == (12, 20)
    assert not caplog.records
    data, height, width = image_io.read_jpeg(tmp_path / 'b.png')
  assert _decoded(data)[0] == 'JPEG' and (height, width) == (12, 20)
  assert 'b.png' in caplog.text


def test_require_names_path_and_source(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothing.txt not found. It comes from A2D'):
    manual_files.require(tmp_path / 'nothing.txt', 'A2D')
  assert manual_files.require(str(tmp_path), 'A2D') == tmp_path


def test_require_all_counts_the_missing_files(tmp_path):
  (tmp_path / 'here').touch()
  paths = [tmp_path / name for name in ('here', 'gone1', 'gone2')]
  with pytest.raises(FileNotFoundError,
                     match=r'2 of 3 files not found, e\.g\. .*gone1\. It comes from X'):
    manual_files.require_all(paths, 'X')
  assert manual_files.require_all(paths[:1], 'X') == paths[:1]
