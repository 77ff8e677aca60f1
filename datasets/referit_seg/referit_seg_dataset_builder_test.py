"""Builds referit_seg from dummy_data/ and reads it back without the builder."""

import pathlib
import shutil

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

from referit_seg import make_dummy_data as dummy
from referit_seg import referit_seg_dataset_builder
from cmsa_jax.records import broken

DUMMY_DIR = pathlib.Path(__file__).parent / 'dummy_data'


def _build(manual_dir, data_dir):
  builder = referit_seg_dataset_builder.Builder(data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
      file_format='array_record')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('data')
  _build(DUMMY_DIR, data_dir)
  return data_dir


def _read(data_dir, **kwargs):
  builder = tfds.builder_from_directory(data_dir / 'referit_seg' / '1.0.0')
  return {split: builder.as_data_source(split, **kwargs) for split in builder.info.splits}


def _expected(split):
  """{image: [(object, [(text, sentence id)])]}, objects by number, ids in file order."""
  expected, sent_id = {}, 0
  for image, obj, texts in dummy.QUERIES[split]:
    expected.setdefault(image, []).append((obj, [(t, sent_id + i) for i, t in enumerate(texts)]))
    sent_id += len(texts)
  return {image: sorted(objects) for image, objects in expected.items()
          if any(texts for _, texts in objects)}


def test_records_match_source(data_dir):
  records = _read(data_dir)
  assert list(records) == ['trainval', 'test']
  for split, source in records.items():
    expected = _expected(split)
    assert len(source) == len(expected)
    for record in source:
      image = record['image_id'].decode()
      height, width = dummy.IMAGES[image][:2]
      assert (record['height'], record['width']) == (height, width)
      assert record['image'].shape == (height, width, 3)  # Grayscale JPEG too.
      objects = expected[image]
      assert list(record['objects']['id']) == [obj for obj, _ in objects]
      for mask, obj in zip(record['objects']['mask'], record['objects']['id']):
        box = dummy.OBJECTS[(image, obj)][2]
        np.testing.assert_array_equal(mask[..., 0], dummy.box_mask(height, width, box))
      sentences = list(zip([t.decode() for t in record['sentences']['text']],
                           record['sentences']['object_index'], record['sentences']['id']))
      assert sentences == [(text, i, sent_id) for i, (_, texts) in enumerate(objects)
                           for text, sent_id in texts]
      assert set(record['sentences']['tokens']) == {b''}


def test_images_pass_through_unchanged(data_dir):
  for source in _read(data_dir, decoders={'image': tfds.decode.SkipDecoding()}).values():
    for record in source:
      path = DUMMY_DIR / 'images' / f'{record["image_id"].decode()}.jpg'
      assert record['image'] == path.read_bytes()


@pytest.mark.parametrize('missing', ['referit_query_test.json', 'mask/101_12.mat', 'images/37.jpg'])
def test_missing_files_are_named(tmp_path, missing):
  manual_dir = tmp_path / 'manual'
  shutil.copytree(DUMMY_DIR, manual_dir)
  (manual_dir / missing).unlink()
  with broken.strict_mode(), pytest.raises(FileNotFoundError, match='text_objseg') as err:
    _build(manual_dir, tmp_path / 'data')
  assert str(manual_dir / missing) in str(err.value)


def test_mask_of_wrong_size_is_refused(tmp_path):
  manual_dir = tmp_path / 'manual'
  shutil.copytree(DUMMY_DIR, manual_dir)
  scipy.io.savemat(manual_dir / 'mask' / '37_1.mat', {'segimg_t': np.zeros((5, 5), np.uint8)})
  with broken.strict_mode(), pytest.raises(ValueError, match='37_1.mat'):
    _build(manual_dir, tmp_path / 'data')


def test_cmyk_jpeg_is_stored_as_rgb(tmp_path):
  manual_dir = tmp_path / 'manual'
  shutil.copytree(DUMMY_DIR, manual_dir)
  path = manual_dir / 'images' / '37.jpg'
  rgb = Image.open(DUMMY_DIR / 'images' / '37.jpg').convert('RGB')
  rgb.convert('CMYK').save(path, quality=95)
  _build(manual_dir, tmp_path / 'data')
  image = _read(tmp_path / 'data')['test'][0]['image']
  assert image.shape == (rgb.height, rgb.width, 3)
  assert np.abs(image.astype(int) - np.asarray(rgb, int)).mean() < 8
