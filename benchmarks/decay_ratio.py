r"""How much of the coupled L2 weight decay Adam turns into full-size steps.

With coupled L2 (the official code's), the optimizer sees g + wd * w; Adam divides
by its running magnitude, so a weight whose |g| < wd * |w| moves by about
lr * sign(w) towards 0 whatever its loss gradient says. This runs the config's
real train step (its model, shapes, frozen backbone and optimizer) on synthetic
scenes and prints, per group of decayed kernels and for each of the first steps,
the fraction of weights in that regime.

  python benchmarks/decay_ratio.py --config=configs/gref.py --steps=3 [--json]

Without --config.backbone_init the backbone is random (no weights can be
downloaded here): the head's gradients then come from random features.
"""

import collections
import functools
import json
import os
import re
import sys

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/.
from cmsa_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
from cmsa_jax.data import synthetic
from cmsa_jax.data import text
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/gref.py', 'Config to measure.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Train steps measured.')
_JSON = flags.DEFINE_bool('json', False, 'Print the results as JSON on the last line.')

# Decayed kernels by role: the CMSA maps of Eq.2-3 and the GMLF convs of Eq.6-7.
GROUPS = {'cmsa query': r'cmsa.*query', 'cmsa key': r'cmsa.*key', 'cmsa value': r'cmsa.*value',
          'cmsa out': r'cmsa.*out', 'gmlf project': r'fusion.*project',
          'gmlf gates': r'fusion.*gate', 'gmlf score': r'fusion.*score'}


def synthetic_batch(config):
  """One global batch of synthetic scenes at the config's image size and word cap,
  with a vocabulary of their expressions; returns (batch, vocabulary size)."""
  source = synthetic.SyntheticSource('train', config.batch_size, image_size=config.image_size)
  records = [source[i] for i in range(config.batch_size)]
  texts = [r['sentences']['text'][0].decode() for r in records]
  vocab = text.Vocabulary.build(texts)
  examples = []
  for record, expression in zip(records, texts):
    example, _ = input_pipeline.encode(record['image'], expression, vocab,
                                       image_size=config.image_size, max_words=config.max_words)
    target = record['objects']['mask'][record['sentences']['object_index'][0]]
    example['mask'] = input_pipeline.resize_and_pad(
        target[..., 0].astype(np.float32), config.image_size)[0]
    examples.append(example)
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}, len(vocab)


def decay_dominated(params, grads, weight_decay):
  """{group: fraction of its kernel entries with |g| < weight_decay * |w|}."""
  counts = collections.defaultdict(lambda: [0, 0])
  flat_p = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    name = jax.tree_util.keystr(path)
    if 'kernel' not in name:
      continue
    for group, pattern in GROUPS.items():
      if re.search(pattern, name):
        w, g = np.abs(np.asarray(flat_p[path])), np.abs(np.asarray(g))
        counts[group][0] += int((g < weight_decay * w).sum())
        counts[group][1] += w.size
  return {group: n / total for group, (n, total) in counts.items()}


def main(argv):
  del argv
  config = _CONFIG.value
  batch, vocab_size = synthetic_batch(config)
  graphdef, state, tx = state_lib.create_train_state(config, vocab_size)
  grads_of = jax.jit(lambda state, batch: train.loss_and_grads(state, batch, graphdef=graphdef)[1])
  apply = jax.jit(functools.partial(train.apply_gradients, tx=tx))
  rows = []
  for i in range(_STEPS.value):
    grads = grads_of(state, batch)
    fractions = decay_dominated(state.params, grads, config.weight_decay)
    rows.append(fractions)
    print(f'step {i}: ' + ', '.join(f'{g} {100 * f:.0f}%' for g, f in fractions.items()),
          flush=True)
    state = apply(state, grads)
  result = {'config': config.dataset, 'image_size': config.image_size,
            'batch_size': config.batch_size, 'weight_decay': config.weight_decay,
            'weight_decay_form': config.get('weight_decay_form', 'coupled'),
            'fraction_decay_dominated': rows, 'device': str(jax.devices()[0])}
  if _JSON.value:
    print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
