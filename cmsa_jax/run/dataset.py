"""A config's dataset, as the run loop reads it: the records of a split and the
training vocabulary (config.dataset, data_dir, the synthetic generator's settings)."""

from cmsa_jax.data import sources


def load_source(config, split):
  """The records of `split` of config.dataset (see sources.load_source)."""
  generated_sizes = {config.train_split: config.synthetic.num_train}
  generated_sizes.setdefault(config.eval_split, config.synthetic.num_eval)
  return sources.load_source(
      config.dataset, split, data_dir=config.data_dir, generated_sizes=generated_sizes,
      seed=config.synthetic.seed, image_size=config.synthetic.image_size,
      clip_radius=config.get('clip_radius'))


def vocabulary(config, workdir, index):
  """WORKDIR/vocab.json, built the first time from `index`, the training split's
  `input_pipeline.sentence_index`."""
  return sources.vocabulary(workdir, index.texts, name=f'{config.dataset}/{config.train_split}')
