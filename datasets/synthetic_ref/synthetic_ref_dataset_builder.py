"""synthetic_ref: the embedded default dataset, written to disk.

Record i of a split is `cmsa_jax.data.synthetic.generate_example(seed, split, i)`
(shuffling is disabled), so the built dataset and `SyntheticSource` agree.
Nothing is downloaded.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from cmsa_jax.data import synthetic
from cmsa_jax.media import image_io
from cmsa_jax.records import features


@dataclasses.dataclass
class SyntheticRefConfig(tfds.core.BuilderConfig):
  """Image size, generator seed and images per split."""
  image_size: int = 64
  seed: int = 0
  train_size: int = 4000
  validation_size: int = 500
  test_size: int = 500


def encode(record):
  """A `generate_example` record in the form the features encode (PNG bytes)."""
  masks = [image_io.encode_png(m) for m in record['objects']['mask']]
  objects = dict(record['objects'], mask=masks)
  return dict(record, image=image_io.encode_png(record['image']), objects=objects)


class Builder(tfds.core.GeneratorBasedBuilder):
  """Procedural scenes of 2-6 shapes, each with 1-4 unambiguous expressions."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticRefConfig(name='64px', description='64x64 images.'),
      SyntheticRefConfig(name='96px', description='96x96 images.', image_size=96),
      SyntheticRefConfig(name='tiny', description='16/8/8 64x64 images, for smoke tests.',
                         train_size=16, validation_size=8, test_size=8),
  ]

  def _info(self):
    return self.dataset_info_from_configs(
        features=features.referring_features(
            image_format='png',
            object_extra={name: tfds.features.Text() for name in ('shape', 'color', 'size')},
            sentence_extra={'family': tfds.features.Text()},
            image_id=np.int64),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    sizes = {split: getattr(self.builder_config, f'{split}_size') for split in synthetic.SPLITS}
    return {split: self._generate_examples(split, size) for split, size in sizes.items()}

  def _generate_examples(self, split, num_examples):
    config = self.builder_config
    for index in range(num_examples):
      record = synthetic.generate_example(config.seed, split, index, image_size=config.image_size)
      yield index, encode(record)
