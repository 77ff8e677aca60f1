"""Builds a tiny synthetic_ref and checks it reads back as the generator's records."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cmsa_jax.data import synthetic

# Unregistered, so importing it under another package path elsewhere cannot clash.
with tfds.core.registered.skip_registration():
  from . import synthetic_ref_dataset_builder as builder_lib


def assert_same(a, b, path='record'):
  """Equal structure, types, dtypes, shapes and values."""
  assert type(a) is type(b), f'{path}: {type(a)} vs {type(b)}'
  if isinstance(a, dict):
    assert a.keys() == b.keys(), f'{path}: {sorted(a)} vs {sorted(b)}'
    for key in a:
      assert_same(a[key], b[key], f'{path}.{key}')
  elif isinstance(a, list):
    assert len(a) == len(b), f'{path}: length {len(a)} vs {len(b)}'
    for i, (x, y) in enumerate(zip(a, b)):
      assert_same(x, y, f'{path}[{i}]')
  elif isinstance(a, np.ndarray):
    assert (a.dtype, a.shape) == (b.dtype, b.shape), path
    np.testing.assert_array_equal(a, b, err_msg=path)
  else:
    assert getattr(a, 'dtype', None) == getattr(b, 'dtype', None), path
    assert a == b, f'{path}: {a!r} vs {b!r}'


@pytest.fixture(scope='module')
def builder(tmp_path_factory):
  config = builder_lib.SyntheticRefConfig(
      name='custom', image_size=48, seed=3, train_size=3, validation_size=2, test_size=2)
  builder = builder_lib.Builder(config=config, data_dir=tmp_path_factory.mktemp('tfds'))
  builder.download_and_prepare(file_format='array_record')
  return builder


def test_records_equal_generated_ones(builder):
  config = builder.builder_config
  for split in synthetic.SPLITS:
    stored = builder.as_data_source(split=split)
    assert len(stored) == getattr(config, f'{split}_size')
    generated = synthetic.SyntheticSource(split, len(stored), seed=config.seed,
                                          image_size=config.image_size)
    for i in range(len(stored)):
      assert_same(generated[i], stored[i], f'{split}[{i}]')


def test_info(builder):
  info = builder.info
  assert info.description.startswith('Procedural referring-segmentation scenes')
  assert info.disable_shuffling
  assert {s: info.splits[s].num_examples for s in synthetic.SPLITS} == {
      'train': 3, 'validation': 2, 'test': 2}


def test_default_configs():
  configs = {c.name: c for c in builder_lib.Builder.BUILDER_CONFIGS}
  assert configs['64px'].image_size == 64 and configs['96px'].image_size == 96
  assert builder_lib.Builder.BUILDER_CONFIGS[0].name == '64px'  # The default.
