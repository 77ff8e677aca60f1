"""The paper's metrics after DenseCRF post-processing of the probability map:
sample fields and metrics.json keys prefixed with 'crf_'."""

from cmsa_jax.run import crf
from cmsa_jax.run.evaluators import paper


class Evaluator(paper.Evaluator):
  prefix = 'crf_'
  row = 'CMSA + DenseCRF'

  def mask(self, scored):
    return crf.dense_crf(scored.image, scored.prob)
