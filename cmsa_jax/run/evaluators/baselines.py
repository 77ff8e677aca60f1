"""Trivial baselines where a record lists every object of its scene (the synthetic
sets): the union of all objects, and the largest object, whatever the expression."""

from cmsa_jax.run import metrics
from cmsa_jax.run.evaluators import base

NAMES = ('all_objects', 'largest_object')


class Evaluator(base.Evaluator):
  """Per sample: baseline_<name>_intersection and _union."""

  def update(self, scored):
    fields = {}
    for name, pred in scored.baselines.items():
      i, u = metrics.intersection_union(pred, scored.target)
      fields.update({f'baseline_{name}_intersection': i, f'baseline_{name}_union': u})
    return fields

  def results(self, samples):
    return {f'baseline_{name}_overall_iou': scores['overall_iou']
            for name, scores in self._scores(samples).items()}

  def rows(self, samples):
    return {f'baseline: {name.replace("_", " ")}': scores
            for name, scores in self._scores(samples).items()}

  @staticmethod
  def _scores(samples):
    return {name: metrics.summarize([s[f'baseline_{name}_intersection'] for s in samples],
                                    [s[f'baseline_{name}_union'] for s in samples])
            for name in NAMES if samples and f'baseline_{name}_union' in samples[0]}
