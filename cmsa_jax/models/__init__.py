"""The models: the parts by name (backbones/, text/), the Eq.1-8 modules, and one
model per module with a `Model`.

A model module (`config.model_name`, e.g. 'cmsa_image') defines `Model`, built as
`Model(vocab_size=..., **config.model, dtype=..., rngs=...)`; `Model.input_keys`
names the batch arrays its `__call__` takes (in order), `Model.target_key` the one
its `loss(outputs, batch)` compares with `outputs['logits']`.
"""

import importlib


def get(name):
  """The module `cmsa_jax.models.<name>`."""
  return importlib.import_module(f'{__name__}.{name}')


def inputs(model, batch):
  """The arrays of `batch` that `model` takes, in its call order."""
  return tuple(batch[k] for k in model.input_keys)
