"""What training reads from a dataset: its records (built TFDS or on-the-fly
synthetic) and the vocabulary of its training split."""

import os

from absl import logging
import jax
import tensorflow_datasets as tfds

from cmsa_jax import errors
from cmsa_jax.data import input_pipeline
from cmsa_jax.data import synthetic
from cmsa_jax.data import synthetic_video
from cmsa_jax.data import text

SYNTHETIC = 'synthetic_ref'
SYNTHETIC_VIDEO = 'synthetic_video'


def load_source(config, split):
  """A random-access source of records (see cmsa_jax/records/features.py).

  The synthetic dataset is generated on the fly when it has not been built, so
  the demo needs no set-up step.
  """
  if _is_built(config):
    return tfds.data_source(config.dataset, split=split, data_dir=config.data_dir,
                            download=False)
  name = config.dataset.split('/')[0]
  if name not in (SYNTHETIC, SYNTHETIC_VIDEO):
    raise errors.NotFoundError(
        f'TFDS dataset {config.dataset!r} is not built in data_dir '
        f'{config.data_dir or "~/tensorflow_datasets"}. Build it from the authors\' files with\n'
        f'  python -m cmsa_jax.tools.build_dataset {config.dataset} --manual_dir=M '
        f'--data_dir=D\n(see datasets/{name}/README.md for the layout of M) and set '
        f'--config.data_dir=D.')
  sizes = {config.train_split: config.synthetic.num_train}
  sizes.setdefault(config.eval_split, config.synthetic.num_eval)
  if split not in sizes:
    raise errors.ConfigError(f'unknown split {split!r} of the on-the-fly synthetic dataset; '
                     f'known: {sorted(sizes)}')
  logging.info('%s is not built; generating split %r (%d examples) on the fly.',
               name, split, sizes[split])
  if name == SYNTHETIC_VIDEO:
    return synthetic_video.SyntheticVideoSource(
        split, sizes[split], seed=config.synthetic.seed, image_size=config.synthetic.image_size,
        clip_radius=config.clip_radius)
  return synthetic.SyntheticSource(split, sizes[split], seed=config.synthetic.seed,
                                   image_size=config.synthetic.image_size)


def _is_built(config):
  """Whether config.dataset is built in config.data_dir (never downloads or builds:
  a builder whose code happens to be imported is not prepared by reading it)."""
  try:
    return tfds.builder(config.dataset, data_dir=config.data_dir).is_prepared()
  except ValueError:  # DatasetNotFoundError, or a config the registered builder lacks.
    return False


def has_all_objects(config):
  """Whether records list every object of the scene (so trivial baselines are defined)."""
  return config.dataset.split('/')[0] in (SYNTHETIC, SYNTHETIC_VIDEO)


def build_vocabulary(config, workdir, index=None):
  """Loads `workdir/vocab.json`, or builds it from the training split and saves it.

  `index`: the training source's `input_pipeline.sentence_index`, if already built.
  """
  path = os.path.join(workdir, 'vocab.json')
  if os.path.exists(path):
    return text.Vocabulary.load(path)
  if index is None:
    index = input_pipeline.sentence_index(load_source(config, config.train_split))
  vocab = text.Vocabulary.build(index.texts)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    vocab.save(path)
  logging.info('Vocabulary of %d words from %s/%s saved to %s.', len(vocab),
               config.dataset, config.train_split, path)
  return vocab
