"""Referring-segmentation metrics, scored at the original image resolution.

overall IoU = ΣI / ΣU over all expressions; mean IoU = mean of per-expression
I/U; prec@X = fraction of expressions with IoU >= X (as in the paper's code).
An expression whose prediction and ground truth are both empty scores IoU 1
(they agree) and adds nothing to ΣI or ΣU.
"""

import dataclasses

import numpy as np

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred, target):
  """Pixel counts |pred ∧ target| and |pred ∨ target| of two boolean masks."""
  pred, target = np.asarray(pred, bool), np.asarray(target, bool)
  if pred.shape != target.shape:
    raise ValueError(f'prediction shape {pred.shape} != ground-truth shape {target.shape}')
  return int(np.logical_and(pred, target).sum()), int(np.logical_or(pred, target).sum())


@dataclasses.dataclass
class IoUAccumulator:
  """Accumulates I, U and per-expression IoU over an evaluation pass."""
  total_i: int = 0
  total_u: int = 0
  ious: list = dataclasses.field(default_factory=list)

  def update(self, pred, target):
    i, u = intersection_union(pred, target)
    self.total_i += i
    self.total_u += u
    self.ious.append(i / u if u else 1.0)

  def result(self, prefix=''):
    if not self.ious:
      raise ValueError('no examples were scored')
    ious = np.asarray(self.ious)
    out = {'overall_iou': self.total_i / max(self.total_u, 1), 'mean_iou': float(ious.mean())}
    out.update({f'prec@{t}': float((ious >= t).mean()) for t in PREC_THRESHOLDS})
    out['num_examples'] = len(ious)
    return {prefix + k: v for k, v in out.items()}


def markdown_table(rows, first='method'):
  """The paper's table format: one row per method, prec@X, overall IoU, mean IoU (in %)."""
  cols = [f'prec@{t}' for t in PREC_THRESHOLDS] + ['overall_iou', 'mean_iou']
  head = f'| {first} | ' + ' | '.join(cols) + ' |'
  lines = [head, '|' + '---|' * (len(cols) + 1)]
  for name, metrics in rows.items():
    lines.append(f'| {name} | ' + ' | '.join(f'{100 * metrics[c]:.2f}' for c in cols) + ' |')
  return '\n'.join(lines) + '\n'
