"""A config's dataset, as the run loop reads it: the records of a split and the
training vocabulary (config.dataset, data_dir, the synthetic generator's settings)."""

from cmsa_jax.data import input_pipeline
from cmsa_jax.data import sources


def load_source(config, split):
  """The records of `split` of config.dataset (see sources.load_source)."""
  generated_sizes = {config.train_split: config.synthetic.num_train}
  generated_sizes.setdefault(config.eval_split, config.synthetic.num_eval)
  return sources.load_source(
      config.dataset, split, data_dir=config.data_dir, generated_sizes=generated_sizes,
      seed=config.synthetic.seed, image_size=config.synthetic.image_size,
      clip_radius=config.get('clip_radius'))


def vocabulary(config, workdir, index=None):
  """WORKDIR/vocab.json, built from the training split the first time.

  `index`: the training source's `input_pipeline.sentence_index`, if already built.
  """
  def texts():
    if index is not None:
      return index.texts
    return input_pipeline.sentence_index(load_source(config, config.train_split)).texts
  return sources.vocabulary(workdir, texts, name=f'{config.dataset}/{config.train_split}')
