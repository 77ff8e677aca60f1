"""Metrics against hand-computed cases."""

import logging

import numpy as np
import pytest

from cmsa_jax import errors
from cmsa_jax.run import evaluators
from cmsa_jax.run import metrics
from cmsa_jax.run import writers
from cmsa_jax.run.evaluators import base
from cmsa_jax.run.evaluators import pictures


def _mask(shape, *boxes):
  m = np.zeros(shape, bool)
  for y0, y1, x0, x1 in boxes:
    m[y0:y1, x0:x1] = True
  return m


def test_intersection_union_by_hand():
  pred = _mask((4, 4), (0, 2, 0, 2))  # 4 pixels
  gt = _mask((4, 4), (1, 3, 1, 3))  # 4 pixels, 1 shared
  assert metrics.intersection_union(pred, gt) == (1, 7)


def _summary(*pairs):
  """The paper's metrics of (prediction, truth) mask pairs."""
  counts = [metrics.intersection_union(p, t) for p, t in pairs]
  return metrics.summarize([i for i, _ in counts], [u for _, u in counts])


def test_overall_mean_and_precision_by_hand():
  r = _summary((_mask((10, 10), (0, 10, 0, 10)), _mask((10, 10), (0, 10, 0, 5))),  # I=50, U=100
               (_mask((10, 10), (0, 2, 0, 2)), _mask((10, 10), (0, 2, 0, 2))),  # I=4, U=4
               (_mask((10, 10), (0, 4, 0, 4)), _mask((10, 10), (0, 4, 0, 5))))  # I=16, U=20
  assert r['overall_iou'] == pytest.approx(70 / 124)
  assert r['mean_iou'] == pytest.approx((0.5 + 1.0 + 0.8) / 3)
  assert r['prec@0.5'] == pytest.approx(1.0)  # IoU >= 0.5 counts, as in the paper.
  assert r['prec@0.6'] == pytest.approx(2 / 3)
  assert r['prec@0.8'] == pytest.approx(2 / 3)
  assert r['prec@0.9'] == pytest.approx(1 / 3)
  assert r['num_examples'] == 3


def test_empty_prediction_scores_zero():
  r = _summary((np.zeros((5, 5), bool), _mask((5, 5), (0, 1, 0, 5))))
  assert r['overall_iou'] == 0 and r['mean_iou'] == 0 and r['prec@0.5'] == 0


def test_empty_ground_truth():
  r = _summary((np.zeros((5, 5), bool), np.zeros((5, 5), bool)),  # Both empty: agreement.
               (_mask((5, 5), (0, 1, 0, 1)), np.zeros((5, 5), bool)))  # False positive.
  assert r['mean_iou'] == pytest.approx(0.5)
  assert r['overall_iou'] == 0  # I=0, U=1: the empty pair adds nothing.
  assert r['prec@0.9'] == pytest.approx(0.5)


def test_bad_input():
  with pytest.raises(ValueError, match=r'\(2, 2\).*\(3, 3\)'):
    metrics.intersection_union(np.zeros((2, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match='no examples'):
    metrics.summarize([], [])


def test_markdown_table_has_every_column():
  table = metrics.markdown_table({'CMSA': _summary((_mask((2, 2), (0, 1, 0, 1)),
                                                    _mask((2, 2), (0, 1, 0, 1))))})
  assert 'prec@0.5' in table and 'overall_iou' in table
  assert table.splitlines()[2].startswith('| CMSA | 100.00')


def _scored(position, prob, target, text, family=None, **baselines):
  return base.Scored(position=position, record=position, sentence=0, text=text, prob=prob,
                     target=target, image=np.zeros(target.shape + (3,), np.uint8),
                     family=family, baselines=baselines)


def _evaluate(names, scored):
  found = evaluators.create(names)
  samples = []
  for s in scored:
    sample = {'position': s.position, 'expression': s.text}
    for evaluator in found.values():
      sample.update(evaluator.update(s))
    samples.append(sample)
  results = {}
  for evaluator in found.values():
    results.update(evaluator.results(samples))
  return results, samples, found


def test_evaluation_scores_model_and_baselines_per_family_by_hand():
  """Two expressions of two families on one 4x4 image: every score by hand."""
  target = _mask((4, 4), (0, 2, 0, 2))  # 4 pixels.
  scored = [  # Right, then empty.
      _scored(0, np.where(target, 0.9, 0.1), target, 'a', 'attribute',
              all_objects=_mask((4, 4), (0, 4, 0, 2)), largest_object=target),
      _scored(1, np.zeros((4, 4)), target, 'b', 'negation',
              all_objects=_mask((4, 4), (0, 4, 0, 2)), largest_object=_mask((4, 4), (2, 4, 2, 4)))]
  results, samples, _ = _evaluate(['paper', 'baselines', 'groups'], scored)
  assert results == pytest.approx({
      'overall_iou': 4 / 8, 'mean_iou': 0.5, 'num_examples': 2,
      **{f'prec@{t}': 0.5 for t in metrics.PREC_THRESHOLDS},
      'baseline_all_objects_overall_iou': 8 / 16, 'baseline_largest_object_overall_iou': 4 / 12,
      'family_attribute_overall_iou': 1.0, 'family_negation_overall_iou': 0.0,
      'family_attribute_baseline_all_objects_overall_iou': 0.5,
      'family_negation_baseline_all_objects_overall_iou': 0.5,
      'family_attribute_baseline_largest_object_overall_iou': 1.0,
      'family_negation_baseline_largest_object_overall_iou': 0.0})
  assert samples[1] == {'position': 1, 'expression': 'b', 'intersection': 0, 'union': 4,
                        'iou': 0.0, 'pred_area': 0, 'true_area': 4, 'family': 'negation',
                        'baseline_all_objects_intersection': 4, 'baseline_all_objects_union': 8,
                        'baseline_largest_object_intersection': 0,
                        'baseline_largest_object_union': 8}


def test_real_expressions_are_scored_per_category_and_length():
  target = _mask((4, 4), (0, 2, 0, 2))
  right, wrong = np.where(target, 0.9, 0.1), np.zeros((4, 4))
  scored = [_scored(0, right, target, 'man on the left'),  # spatial, 4 tokens.
            _scored(1, wrong, target, 'cup on the table'),  # relational, 4 tokens.
            _scored(2, right, target, 'red cup on the table')]  # relational + attribute, 5.
  results, samples, _ = _evaluate(['paper', 'groups'], scored)
  assert samples[2]['groups'] == ['relational', 'attribute', 'length_4-6']
  assert results['category_spatial_overall_iou'] == 1.0
  assert results['category_relational_overall_iou'] == pytest.approx(4 / 8)
  assert results['category_relational_num_examples'] == 2
  assert results['category_attribute_mean_iou'] == 1.0
  assert results['category_length_4-6_num_examples'] == 3
  assert 'category_ordinal_overall_iou' not in results  # No ordinal expression.
  assert not any(k.startswith('family_') for k in results)


def test_pictures_show_the_first_expressions_and_survive_merging():
  target = _mask((8, 12), (0, 4, 0, 6))
  scored = [_scored(p, np.where(target, 0.9, 0.1), target, f'thing {p}') for p in range(6)]
  _, _, found = _evaluate(['pictures'], scored)
  shown = found['pictures'].pictures
  assert sorted(shown) == list(range(pictures.NUM))
  height = pictures.HEIGHT
  assert shown[0].shape == (height + 14, 3 * height * 12 // 8, 3)  # Three panels and a caption.
  # The true-mask panel is white where the mask is, the prediction panel red.
  width = height * 12 // 8
  true_panel, pred_panel = shown[0][:height, width:2 * width], shown[0][:height, 2 * width:]
  assert (true_panel[5, 5] > 100).all() and (true_panel[-5, -5] == 0).all()
  assert pred_panel[5, 5, 0] > 100 and pred_panel[5, 5, 1] < 50
  merged = evaluators.create(['pictures'])['pictures']
  merged.merge([found['pictures'].state(), {}])
  assert sorted(merged.pictures) == sorted(shown)
  np.testing.assert_array_equal(merged.pictures[3], shown[3])
  written = {}
  merged.write(type('Writer', (), {'write_images': lambda self, step, images: written.update(
      images)})(), step=7)
  assert sorted(written) == [f'eval_pictures/{p}' for p in range(pictures.NUM)]


def test_unknown_evaluator_is_a_config_error():
  with pytest.raises(errors.ConfigError, match=r"unknown evaluators \['iou'\]"):
    evaluators.create(['paper', 'iou'])


def test_tensorboard_names_are_legal(tmp_path, caplog):
  scalars = writers.eval_scalars({'prec@0.5': 0.5, 'overall_iou': 0.3, 'step': 4})
  assert scalars == {'eval/prec@0.5': 0.5, 'eval/overall_iou': 0.3}
  assert writers.legal_name('eval/prec@0.5') == 'eval/prec_at_0.5'
  writer = writers.TensorBoardWriter(str(tmp_path))
  with caplog.at_level(logging.INFO):
    writer.write_scalars(4, scalars)
    writer.close()
  assert 'illegal' not in caplog.text
  events = b''.join(p.read_bytes() for p in tmp_path.iterdir())
  assert b'eval/prec_at_0.5' in events and b'eval/overall_iou' in events
