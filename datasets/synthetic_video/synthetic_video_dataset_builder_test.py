"""Builds a tiny synthetic_video and checks it reads back as the generator's records."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cmsa_jax.data import synthetic_video

# Unregistered, so importing it under another package path elsewhere cannot clash.
with tfds.core.registered.skip_registration():
  from . import synthetic_video_dataset_builder as builder_lib


@pytest.fixture(scope='module')
def builder(tmp_path_factory):
  config = builder_lib.SyntheticVideoConfig(
      name='custom', image_size=40, clip_radius=1, seed=3, train_size=3, validation_size=1,
      test_size=2)
  builder = builder_lib.Builder(config=config, data_dir=tmp_path_factory.mktemp('tfds'))
  builder.download_and_prepare(file_format='array_record')
  return builder


def test_records_equal_generated_ones(builder):
  config = builder.builder_config
  for split in synthetic_video.SPLITS:
    stored = builder.as_data_source(split=split)
    assert len(stored) == getattr(config, f'{split}_size')
    for i in range(len(stored)):
      want = synthetic_video.generate_example(config.seed, split, i, image_size=40,
                                              clip_radius=1)
      got = stored[i]
      np.testing.assert_array_equal(got['image'], want['image'])
      np.testing.assert_array_equal(np.stack(got['frames']), np.stack(want['frames']))
      np.testing.assert_array_equal(got['frame_ids'], want['frame_ids'])
      assert int(got['frame_index']) == int(want['frame_index']) == 2
      np.testing.assert_array_equal(np.stack(got['objects']['mask']),
                                    np.stack(want['objects']['mask']))
      assert list(got['sentences']['text']) == want['sentences']['text']
      assert list(got['sentences']['family']) == want['sentences']['family']


def test_features_are_a2d_sentences_features_plus_family(builder):
  from cmsa_jax.records import features  # pylint: disable=g-import-not-at-top
  a2d = features.referring_features(video=True)
  ours = builder.info.features
  assert set(ours.keys()) == set(a2d.keys())
  assert set(ours['sentences'].feature.keys()) == set(a2d['sentences'].feature.keys()) | {'family'}
