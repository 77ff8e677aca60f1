"""Tests for cmsa_jax.tools.build_dataset: every builder end to end on its dummy data."""

import json

import pytest
import tensorflow_datasets as tfds

import helpers

from cmsa_jax.data import synthetic
from cmsa_jax.tools import build_dataset

DATASETS_DIR = build_dataset.DATASETS_DIR

with tfds.core.utils.add_sys_path(DATASETS_DIR):
  from a2d_sentences import make_dummy_data as a2d_dummy  # pylint: disable=g-import-not-at-top
  from jhmdb_sentences import make_dummy_data as jhmdb_dummy  # pylint: disable=g-import-not-at-top

# Reads a built dataset by name in a fresh process, from its files alone, and
# reports every record's object ids and shapes, and any module imported from
# TensorFlow or from datasets/.
_READ_BACK = """
import json, sys
import tensorflow_datasets as tfds

spec, data_dir, datasets_dir = sys.argv[1:]
splits = {}
for split, source in tfds.data_source(spec, data_dir=data_dir).items():
  splits[split] = [{
      'ids': [int(i) for i in r['objects']['id']],
      'image': list(r['image'].shape), 'size': [int(r['height']), int(r['width'])],
      'masks': [list(m.shape) for m in r['objects']['mask']],
      'object_index': [int(i) for i in r['sentences']['object_index']],
      'frames': [list(f.shape) for f in r.get('frames', [])],
  } for r in source]
modules = [name for name, module in sys.modules.items() if name.split('.')[0] == 'tensorflow'
           or (getattr(module, '__file__', None) or '').startswith(datasets_dir)]
print(json.dumps({'splits': splits, 'modules': modules}))
"""


def _synthetic_ids(config_name):
  """{split: [object ids of each record]} that synthetic_ref's config generates."""
  config = {c.name: c for c in build_dataset.builder_class('synthetic_ref').BUILDER_CONFIGS}[
      config_name]
  return {split: [list(synthetic.generate_example(config.seed, split, i,
                                                  image_size=config.image_size)['objects']['id'])
                  for i in range(getattr(config, f'{split}_size'))]
          for split in synthetic.SPLITS}


# spec, manual dir writer (tmp_path -> dir or None), {split: object ids of each record}.
BUILDS = [
    ('ref_coco_seg/refcoco_unc', lambda _: DATASETS_DIR / 'ref_coco_seg' / 'dummy_data',
     {'train': [[101, 102]], 'val': [[201, 202]], 'testA': [[301]], 'testB': [[401, 402]]}),
    ('referit_seg', lambda _: DATASETS_DIR / 'referit_seg' / 'dummy_data',
     {'trainval': [[1, 3, 12], [2]], 'test': [[1]]}),  # Image '8' has no expression.
    ('a2d_sentences/default', lambda tmp: a2d_dummy.write(tmp / 'manual'),
     {'train': [[0], [0, 1], [0, 1]], 'test': [[0], [0]]}),
    ('jhmdb_sentences/default', lambda tmp: jhmdb_dummy.write(tmp / 'manual'),
     {'test': [[0]] * 6}),
    ('synthetic_ref/tiny', lambda _: None, None),
]


@pytest.mark.slow  # Subprocess.
@pytest.mark.parametrize('spec, write_manual_dir, expected', BUILDS,
                         ids=[spec for spec, _, _ in BUILDS])
def test_builds_array_record_readable_without_builder_or_tensorflow(
    tmp_path, spec, write_manual_dir, expected):
  expected = expected or _synthetic_ids(spec.partition('/')[2])
  data_dir = tmp_path / 'data'
  manual_dir = write_manual_dir(tmp_path)
  result = helpers.run_python(tmp_path, '-m', 'cmsa_jax.tools.build_dataset', spec,
                *([f'--manual_dir={manual_dir}'] if manual_dir else []), f'--data_dir={data_dir}')
  assert result.returncode == 0, result.stderr
  name = spec.partition('/')[0]
  for split, records in expected.items():
    assert f'  {split}: {len(records)} examples' in result.stdout
    assert len(list(data_dir.glob(f'{name}/**/{name}-{split}.array_record-*'))) == 1

  result = helpers.run_python(tmp_path, '-c', _READ_BACK, spec, str(data_dir), str(DATASETS_DIR))
  assert result.returncode == 0, result.stderr
  read = json.loads(result.stdout.splitlines()[-1])
  assert read['modules'] == []  # Neither TensorFlow nor the builder was imported.
  assert list(read['splits']) == list(expected)
  for split, records in read['splits'].items():
    assert sorted(r['ids'] for r in records) == sorted(expected[split])
    for r in records:
      height, width = r['size']
      assert r['image'] == [height, width, 3]
      assert r['masks'] == [[height, width, 1]] * len(r['ids'])
      assert r['object_index'] and all(0 <= i < len(r['ids']) for i in r['object_index'])
      assert r['frames'] == ([[height, width, 3]] * 11 if 'sentences' in spec else [])


@pytest.mark.slow  # Subprocess.
def test_bad_config_exits_with_the_configs(tmp_path):
  result = helpers.run_python(tmp_path, '-m', 'cmsa_jax.tools.build_dataset', 'ref_coco_seg/refcoco',
                f'--data_dir={tmp_path}')
  assert result.returncode != 0
  assert 'refcoco_unc' in result.stderr and 'refcocog_umd' in result.stderr


def test_finds_repository_builders_from_the_package():
  assert set(build_dataset.local_builders()) == {
      'a2d_sentences', 'jhmdb_sentences', 'ref_coco_seg', 'referit_seg', 'synthetic_ref',
      'synthetic_video'}
  assert build_dataset.builder_class('ref_coco_seg').name == 'ref_coco_seg'
  assert build_dataset.builder_class('mnist').name == 'mnist'  # Registered with TFDS.


@pytest.mark.parametrize('name', build_dataset.local_builders())
def test_builders_describe_themselves_with_their_readme_and_citations(tmp_path, name):
  info = build_dataset.builder_class(name)(data_dir=tmp_path).info
  folder = DATASETS_DIR / name
  assert info.description == (folder / 'README.md').read_text().strip()
  assert info.citation == (folder / 'CITATIONS.bib').read_text().strip()
  tags = [line.split('#')[0].strip() for line in (folder / 'TAGS.txt').read_text().splitlines()]
  assert set(tags) <= set(tfds.core.dataset_metadata.valid_tags())


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
