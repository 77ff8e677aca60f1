"""What training reads from a dataset: its records (built TFDS or on-the-fly
synthetic) and the vocabulary of its training split."""

import os

from absl import logging
import jax
import tensorflow_datasets as tfds

from cmsa_jax import errors
from cmsa_jax.data import synthetic
from cmsa_jax.data import synthetic_video
from cmsa_jax.data import text

SYNTHETIC = 'synthetic_ref'
SYNTHETIC_VIDEO = 'synthetic_video'


def load_source(dataset, split, *, data_dir=None, generated_sizes=None, seed=0, image_size=64,
                clip_radius=None):
  """A random-access source of records (see cmsa_jax/records/features.py).

  `dataset` ('name/config') is read from TFDS `data_dir` when built there. The
  synthetic datasets are generated on the fly otherwise, so the demo needs no
  set-up step: `generated_sizes` {split: number of records}, the generator's
  `seed` and `image_size`, and (video) the clip radius τ.
  """
  if _is_built(dataset, data_dir):
    return tfds.data_source(dataset, split=split, data_dir=data_dir, download=False)
  name = dataset.split('/')[0]
  if name not in (SYNTHETIC, SYNTHETIC_VIDEO):
    raise errors.NotFoundError(
        f'TFDS dataset {dataset!r} is not built in data_dir '
        f'{data_dir or "~/tensorflow_datasets"}. Build it from the authors\' files with\n'
        f'  python -m cmsa_jax.tools.build_dataset {dataset} --manual_dir=M '
        f'--data_dir=D\n(see datasets/{name}/README.md for the layout of M) and set '
        f'--config.data_dir=D.')
  sizes = generated_sizes or {}
  if split not in sizes:
    raise errors.ConfigError(f'unknown split {split!r} of the on-the-fly synthetic dataset; '
                             f'known: {sorted(sizes)}')
  logging.info('%s is not built; generating split %r (%d examples) on the fly.',
               name, split, sizes[split])
  if name == SYNTHETIC_VIDEO:
    return synthetic_video.SyntheticVideoSource(split, sizes[split], seed=seed,
                                                image_size=image_size, clip_radius=clip_radius)
  return synthetic.SyntheticSource(split, sizes[split], seed=seed, image_size=image_size)


def _is_built(dataset, data_dir):
  """Whether `dataset` is built in `data_dir` (never downloads or builds: a builder
  whose code happens to be imported is not prepared by reading it)."""
  try:
    return tfds.builder(dataset, data_dir=data_dir).is_prepared()
  except ValueError:  # DatasetNotFoundError, or a config the registered builder lacks.
    return False


def has_all_objects(dataset):
  """Whether records list every object of the scene (so trivial baselines are defined)."""
  return dataset.split('/')[0] in (SYNTHETIC, SYNTHETIC_VIDEO)


def vocabulary(workdir, texts, *, name):
  """Loads `workdir/vocab.json`, or builds it from `texts` (the training split's,
  named `name` in the log) and saves it."""
  path = os.path.join(workdir, 'vocab.json')
  if os.path.exists(path):
    return text.Vocabulary.load(path)
  vocab = text.Vocabulary.build(texts)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    vocab.save(path)
  logging.info('Vocabulary of %d words from %s saved to %s.', len(vocab), name, path)
  return vocab
