"""Metrics against hand-computed cases."""

import collections

import numpy as np
import pytest

from cmsa_jax.data import input_pipeline
from cmsa_jax.run import evaluate
from cmsa_jax.run import metrics


def _mask(shape, *boxes):
  m = np.zeros(shape, bool)
  for y0, y1, x0, x1 in boxes:
    m[y0:y1, x0:x1] = True
  return m


def test_intersection_union_by_hand():
  pred = _mask((4, 4), (0, 2, 0, 2))  # 4 pixels
  gt = _mask((4, 4), (1, 3, 1, 3))  # 4 pixels, 1 shared
  assert metrics.intersection_union(pred, gt) == (1, 7)


def test_overall_mean_and_precision_by_hand():
  acc = metrics.IoUAccumulator()
  acc.update(_mask((10, 10), (0, 10, 0, 10)), _mask((10, 10), (0, 10, 0, 5)))  # I=50, U=100
  acc.update(_mask((10, 10), (0, 2, 0, 2)), _mask((10, 10), (0, 2, 0, 2)))  # I=4, U=4
  acc.update(_mask((10, 10), (0, 4, 0, 4)), _mask((10, 10), (0, 4, 0, 5)))  # I=16, U=20
  r = acc.result()
  assert r['overall_iou'] == pytest.approx(70 / 124)
  assert r['mean_iou'] == pytest.approx((0.5 + 1.0 + 0.8) / 3)
  assert r['prec@0.5'] == pytest.approx(1.0)  # IoU >= 0.5 counts, as in the paper.
  assert r['prec@0.6'] == pytest.approx(2 / 3)
  assert r['prec@0.8'] == pytest.approx(2 / 3)
  assert r['prec@0.9'] == pytest.approx(1 / 3)
  assert r['num_examples'] == 3


def test_empty_prediction_scores_zero():
  acc = metrics.IoUAccumulator()
  acc.update(np.zeros((5, 5), bool), _mask((5, 5), (0, 1, 0, 5)))
  r = acc.result()
  assert r['overall_iou'] == 0 and r['mean_iou'] == 0 and r['prec@0.5'] == 0


def test_empty_ground_truth():
  acc = metrics.IoUAccumulator()
  acc.update(np.zeros((5, 5), bool), np.zeros((5, 5), bool))  # Both empty: agreement.
  acc.update(_mask((5, 5), (0, 1, 0, 1)), np.zeros((5, 5), bool))  # False positive.
  r = acc.result()
  assert r['mean_iou'] == pytest.approx(0.5)
  assert r['overall_iou'] == 0  # I=0, U=1: the empty pair adds nothing.
  assert r['prec@0.9'] == pytest.approx(0.5)


def test_bad_input():
  with pytest.raises(ValueError, match=r'\(2, 2\).*\(3, 3\)'):
    metrics.intersection_union(np.zeros((2, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match='no examples'):
    metrics.IoUAccumulator().result()


def test_markdown_table_has_every_column():
  acc = metrics.IoUAccumulator()
  acc.update(_mask((2, 2), (0, 1, 0, 1)), _mask((2, 2), (0, 1, 0, 1)))
  table = metrics.markdown_table({'CMSA': acc.result()})
  assert 'prec@0.5' in table and 'overall_iou' in table
  assert table.splitlines()[2].startswith('| CMSA | 100.00')


def test_evaluation_scores_model_and_baselines_per_family_by_hand():
  """Two expressions of two families on one 4x4 image: every score by hand."""
  target = _mask((4, 4), (0, 2, 0, 2))  # 4 pixels.
  batch = {
      'resize_info': [input_pipeline.ResizeInfo(4, 4, 0, 0, 4, 4)] * 2,
      'orig_mask': [target, target],
      'family': ['attribute', 'negation'],
      'baseline_all_objects': [_mask((4, 4), (0, 4, 0, 2)), _mask((4, 4), (0, 4, 0, 2))],
      'baseline_largest_object': [target, _mask((4, 4), (2, 4, 2, 4))],
  }
  scores = {k: metrics.IoUAccumulator() for k in ('model', 'crf') + evaluate.BASELINE_KEYS}
  scores['family'] = collections.defaultdict(metrics.IoUAccumulator)
  probs = [np.where(target, 0.9, 0.1), np.zeros((4, 4))]  # Right, then empty.
  for j, prob in enumerate(probs):
    evaluate._score_example(batch, j, prob.astype(np.float32), scores, use_crf=False)
  family = {k: acc.result()['overall_iou'] for k, acc in scores['family'].items()}
  assert family == pytest.approx({
      ('attribute', 'model'): 1.0, ('negation', 'model'): 0.0,
      ('attribute', 'baseline_all_objects'): 0.5, ('negation', 'baseline_all_objects'): 0.5,
      ('attribute', 'baseline_largest_object'): 1.0,
      ('negation', 'baseline_largest_object'): 0.0})
  assert scores['model'].result()['overall_iou'] == pytest.approx(4 / 8)
