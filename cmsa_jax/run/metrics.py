"""Referring-segmentation metrics, scored at the original image resolution
(definitions in DEFINITIONS, which metrics.md repeats)."""

import numpy as np

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
DEFINITIONS = """\
Definitions (one expression = one referring expression and its ground-truth mask; I and U
are its pixel counts |prediction ∧ truth| and |prediction ∨ truth| at the original resolution):
- overall IoU = ΣI / ΣU over the split, also called cumulative IoU, cIoU or oIoU: large
  objects weigh more.
- mean IoU = the mean over expressions of I / U (mIoU): every expression weighs the same.
- prec@X = the fraction of expressions with I / U >= X, X = 0.5 ... 0.9 (as the paper's code).
- Empty masks: an expression whose prediction and truth are both empty scores I / U = 1 (they
  agree) and adds nothing to ΣI or ΣU; an empty prediction of a non-empty truth scores 0.
- The prediction is probability >= 0.5 (or the DenseCRF labelling, rows "+ DenseCRF").
"""


def intersection_union(pred, target):
  """Pixel counts |pred ∧ target| and |pred ∨ target| of two boolean masks."""
  pred, target = np.asarray(pred, bool), np.asarray(target, bool)
  if pred.shape != target.shape:
    raise ValueError(f'prediction shape {pred.shape} != ground-truth shape {target.shape}')
  return int(np.logical_and(pred, target).sum()), int(np.logical_or(pred, target).sum())


def iou(intersection, union):
  """I / U of one expression; 1 when both masks are empty (they agree)."""
  return intersection / union if union else 1.0


def summarize(intersections, unions, prefix=''):
  """The paper's metrics of per-expression pixel counts: overall IoU (ΣI / ΣU),
  mean IoU, prec@X and num_examples, each key with `prefix`."""
  if not len(intersections):
    raise ValueError('no examples were scored')
  ious = np.asarray([iou(i, u) for i, u in zip(intersections, unions)])
  out = {'overall_iou': sum(intersections) / max(sum(unions), 1), 'mean_iou': float(ious.mean())}
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
