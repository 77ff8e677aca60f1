"""The paper's metrics of the model's mask (probability >= 0.5): overall IoU, mean
IoU and prec@0.5...0.9 (definitions in run/metrics.py)."""

from cmsa_jax.run import metrics
from cmsa_jax.run.evaluators import base


class Evaluator(base.Evaluator):
  """Per sample: intersection, union, iou, pred_area and true_area of the mask."""

  prefix = ''  # Of the sample fields and the metrics.json keys.
  row = 'CMSA'

  def mask(self, scored):
    return scored.prob >= 0.5

  def update(self, scored):
    pred = self.mask(scored)
    i, u = metrics.intersection_union(pred, scored.target)
    fields = {'intersection': i, 'union': u, 'iou': metrics.iou(i, u),
              'pred_area': int(pred.sum())}
    fields = {self.prefix + k: v for k, v in fields.items()}
    return fields if self.prefix else dict(fields, true_area=int(scored.target.sum()))

  def results(self, samples):
    return metrics.summarize([s[self.prefix + 'intersection'] for s in samples],
                             [s[self.prefix + 'union'] for s in samples], prefix=self.prefix)

  def rows(self, samples):
    return {self.row: metrics.summarize([s[self.prefix + 'intersection'] for s in samples],
                                        [s[self.prefix + 'union'] for s in samples])}
