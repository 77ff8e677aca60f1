"""Tests for cmsa_jax.tools.build_dataset, end to end on ref_coco_seg's dummy data."""

import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from cmsa_jax.tools import build_dataset

REPO = build_dataset.DATASETS_DIR.parent
DUMMY_DIR = build_dataset.DATASETS_DIR / 'ref_coco_seg' / 'dummy_data'


def _run(tmp_path, *args):
  """Runs the tool as a user would, from an unrelated working directory."""
  paths = [str(REPO)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
  return subprocess.run([sys.executable, '-m', 'cmsa_jax.tools.build_dataset', *args],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_builds_array_record_readable_without_builder(tmp_path):
  data_dir = tmp_path / 'data'
  result = _run(tmp_path, 'ref_coco_seg/refcoco_unc', f'--manual_dir={DUMMY_DIR}',
                f'--data_dir={data_dir}')
  assert result.returncode == 0, result.stderr
  for split in ('train', 'val', 'testA', 'testB'):
    assert f'  {split}: 1 examples' in result.stdout
  dataset_dir = data_dir / 'ref_coco_seg' / 'refcoco_unc' / '1.0.0'
  assert len(list(dataset_dir.glob('ref_coco_seg-train.array_record-*'))) == 1
  builder = tfds.builder_from_directory(dataset_dir)
  assert {name: s.num_examples for name, s in builder.info.splits.items()} == {
      'train': 1, 'val': 1, 'testA': 1, 'testB': 1}
  assert [int(i) for i in builder.as_data_source('val')[0]['objects']['id']] == [201, 202]


def test_bad_config_exits_with_the_configs(tmp_path):
  result = _run(tmp_path, 'ref_coco_seg/refcoco', f'--data_dir={tmp_path}')
  assert result.returncode != 0
  assert 'refcoco_unc' in result.stderr and 'refcocog_umd' in result.stderr


def test_finds_repository_builders_from_the_package():
  assert {'ref_coco_seg', 'referit_seg'} <= set(build_dataset.local_builders())
  assert build_dataset.builder_class('ref_coco_seg').name == 'ref_coco_seg'
  assert build_dataset.builder_class('mnist').name == 'mnist'  # Registered with TFDS.


def test_name_without_config_builds_the_default_config(tmp_path):
  assert build_dataset.make_builder('ref_coco_seg', tmp_path).builder_config.name == 'refcoco_unc'
  assert build_dataset.make_builder('synthetic_ref', tmp_path).builder_config.name == (
      build_dataset.builder_class('synthetic_ref').BUILDER_CONFIGS[0].name)


@pytest.mark.parametrize('spec, listed', [
    ('no_such_dataset', 'ref_coco_seg'),
    ('ref_coco_seg/bad', 'refcocog_google'),
    ('referit_seg/bad', "'referit_seg'"),
])
def test_unknown_names_list_what_exists(tmp_path, spec, listed):
  with pytest.raises(ValueError, match=listed):
    build_dataset.make_builder(spec, tmp_path)
