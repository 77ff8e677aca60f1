"""Builds ref_coco_seg from dummy_data/ and reads it back without the builder."""

import collections
import os
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ref_coco_seg import make_dummy_data as dummy
from ref_coco_seg import ref_coco_seg_dataset_builder
from cmsa_jax.records import broken

DUMMY_DIR = pathlib.Path(__file__).parent / 'dummy_data'
CONFIGS = {  # config: (refer folder, split_by, expected split order).
    'refcoco_unc': ('refcoco', 'unc', ['train', 'val', 'testA', 'testB']),
    'refcocoplus_unc': ('refcoco+', 'unc', ['train', 'val', 'testA', 'testB']),
    'refcocog_google': ('refcocog', 'google', ['train', 'val']),
    'refcocog_umd': ('refcocog', 'umd', ['train', 'val', 'test']),
}


def _build(config, manual_dir, data_dir):
  builder = ref_coco_seg_dataset_builder.Builder(config=config, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
      file_format='array_record')
  return builder


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('data')
  for config in CONFIGS:
    _build(config, DUMMY_DIR, data_dir)
  return data_dir


def _read(data_dir, config, **kwargs):
  """All records by split, read from the files alone (no builder class)."""
  builder = tfds.builder_from_directory(data_dir / 'ref_coco_seg' / config / '1.0.0')
  return {split: builder.as_data_source(split, **kwargs) for split in builder.info.splits}


def _expected(config):
  """{split: {image_id: [(ann_id, ref_id, [(raw, tokens, sent_id)])]}} from the source tables."""
  folder, split_by, _ = CONFIGS[config]
  expected = collections.defaultdict(lambda: collections.defaultdict(list))
  for ref_id, ann_id, split, sentences in dummy.REFS[folder][split_by]:
    sents = [(raw, ' '.join(tokens), dummy.sentence_id(ref_id, i))
             for i, (raw, tokens, _) in enumerate(sentences)]
    expected[split][dummy.ANNOTATIONS[ann_id][0]].append((ann_id, ref_id, sents))
  return expected


@pytest.mark.parametrize('config', CONFIGS)
def test_splits_and_records_match_source(data_dir, config):
  records = _read(data_dir, config)
  expected = _expected(config)
  assert list(records) == CONFIGS[config][2]
  for split, by_image in expected.items():
    assert len(records[split]) == len(by_image)
    got = {int(r['image_id']): r for r in records[split]}
    assert got.keys() == by_image.keys()
    for image_id, refs in by_image.items():
      record = got[image_id]
      assert list(record['objects']['id']) == [ann_id for ann_id, _, _ in refs]
      assert list(record['objects']['ref_id']) == [ref_id for _, ref_id, _ in refs]
      sentences = [(text.decode(), tokens.decode(), int(object_index), int(sent_id))
                   for text, tokens, object_index, sent_id in zip(
                       *(record['sentences'][k] for k in ('text', 'tokens', 'object_index', 'id')))]
      assert sentences == [(raw, tokens, i, sent_id) for i, (_, _, sents) in enumerate(refs)
                           for raw, tokens, sent_id in sents]


def test_masks_boxes_and_categories(data_dir):
  for records in _read(data_dir, 'refcoco_unc').values():
    for record in records:
      height, width = dummy.IMAGES[int(record['image_id'])][:2]
      assert (record['height'], record['width']) == (height, width)
      assert record['image'].shape == (height, width, 3)  # Grayscale JPEG too.
      objects = record['objects']
      for i, ann_id in enumerate(objects['id']):
        image_id, category_id, _, boxes = dummy.ANNOTATIONS[ann_id]
        np.testing.assert_array_equal(objects['mask'][i][..., 0],
                                      dummy.box_mask(height, width, boxes))
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        np.testing.assert_array_equal(objects['bbox'][i], [x0, y0, x1 - x0, y1 - y0])
        assert objects['category_id'][i] == category_id
        assert objects['category'][i].decode() == dummy.CATEGORIES[category_id]


def test_images_pass_through_unchanged(data_dir):
  records = _read(data_dir, 'refcoco_unc', decoders={'image': tfds.decode.SkipDecoding()})
  image_dir = DUMMY_DIR / 'images' / 'mscoco' / 'images' / 'train2014'
  for split in records:
    for record in records[split]:
      path = image_dir / f'COCO_train2014_{int(record["image_id"]):012d}.jpg'
      assert record['image'] == path.read_bytes()


def test_readable_by_name(data_dir):
  source = tfds.data_source('ref_coco_seg/refcocog_umd', data_dir=data_dir)
  assert {split: len(s) for split, s in source.items()} == {'train': 1, 'val': 1, 'test': 1}


@pytest.mark.parametrize('missing', [
    'refcoco/refs(unc).p', 'refcoco/instances.json',
    'images/mscoco/images/train2014/COCO_train2014_000000000042.jpg'])
def test_missing_files_are_named(tmp_path, missing):
  manual_dir = tmp_path / 'manual'
  shutil.copytree(DUMMY_DIR, manual_dir)
  (manual_dir / missing).unlink()
  with broken.strict_mode(), pytest.raises(FileNotFoundError, match='refer') as err:
    _build('refcoco_unc', manual_dir, tmp_path / 'data')
  assert str(manual_dir / missing) in str(err.value)


class _RunsCommand:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def _manual_dir_with_refs(tmp_path, refs):
  manual_dir = tmp_path / 'manual'
  shutil.copytree(DUMMY_DIR, manual_dir)
  (manual_dir / 'refcoco' / 'refs(unc).p').write_bytes(pickle.dumps(refs, protocol=2))
  return manual_dir


def test_refs_that_would_run_code_are_refused(tmp_path):
  marker = tmp_path / 'pwned'
  manual_dir = _manual_dir_with_refs(tmp_path, [_RunsCommand(marker)])
  with pytest.raises(pickle.UnpicklingError, match=r'refs\(unc\)\.p'):
    _build('refcoco_unc', manual_dir, tmp_path / 'data')
  assert not marker.exists()


def test_refs_missing_keys_are_named(tmp_path):
  ref = {'ref_id': 0, 'ann_id': 101, 'image_id': 9, 'split': 'train', 'category_id': 1,
         'sentences': [{'tokens': ['man'], 'sent_id': 0}]}  # No 'raw'.
  with pytest.raises(ValueError,
                     match=r"refs\(unc\)\.p: ref 0 \(ref_id 0\): sentence 0: lacks \['raw'\]"):
    _build('refcoco_unc', _manual_dir_with_refs(tmp_path, [ref]), tmp_path / 'data')
