"""Evaluators by name: `config.evals` lists them; each is a module here with an
`Evaluator` class (the interface: base.py). A new metric is one module and one
line in EVALUATORS.
"""

from cmsa_jax import errors
from cmsa_jax.run.evaluators import baselines
from cmsa_jax.run.evaluators import dense_crf
from cmsa_jax.run.evaluators import groups
from cmsa_jax.run.evaluators import paper
from cmsa_jax.run.evaluators import pictures

EVALUATORS = {
    'paper': paper.Evaluator,  # overall IoU, mean IoU, prec@X of the mask.
    'crf': dense_crf.Evaluator,  # The same after DenseCRF (skipped when config.crf is False).
    'baselines': baselines.Evaluator,  # Trivial masks, where every object is known.
    'groups': groups.Evaluator,  # Per synthetic family, or per real-data category and length.
    'pictures': pictures.Evaluator,  # A few held-out predictions, for TensorBoard.
}
DEFAULT = tuple(EVALUATORS)


def create(names):
  """{name: a fresh evaluator} for `names`; 'paper' comes first, always."""
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise errors.ConfigError(f'config.evals: unknown evaluators {unknown}; '
                             f'known: {sorted(EVALUATORS)}')
  names = ['paper'] + [n for n in names if n != 'paper']
  return {name: EVALUATORS[name]() for name in dict.fromkeys(names)}
