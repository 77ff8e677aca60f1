"""tools/compare.py: the paired bootstrap on constructed pairs whose true difference is
known, and the command on two runs' samples.jsonl."""

import json

import numpy as np
import pytest

from cmsa_jax.tools import compare
from tests import helpers


def _samples(intersections, unions, families=None):
  return [{'record': k, 'sentence': 0, 'expression': f'thing {k}', 'intersection': int(i),
           'union': int(u), **({'family': families[k]} if families else {})}
          for k, (i, u) in enumerate(zip(intersections, unions))]


def test_identical_runs_differ_by_exactly_zero():
  rng = np.random.default_rng(0)
  u = rng.integers(50, 200, 300)
  a = _samples(rng.integers(0, 50, 300), u)
  delta = compare.paired_bootstrap([(a, a)], num_resamples=500)
  assert delta == {'overall_iou': (0.0, 0.0, 0.0), 'mean_iou': (0.0, 0.0, 0.0)}


def test_a_zero_difference_with_noise_is_inside_the_interval():
  # b gains 10 pixels on half the expressions and loses 10 on the other half, with the
  # same union: Σ I and the mean of I / U are exactly those of a (true Δ = 0).
  rng = np.random.default_rng(1)
  n = 400
  u = np.full(n, 100)
  i_a = rng.integers(20, 80, n)
  sign = np.where(np.arange(n) % 2 == 0, 1, -1)
  a, b = _samples(i_a, u), _samples(i_a + 10 * sign, u)
  delta = compare.paired_bootstrap([(a, b)], num_resamples=1000)
  for d, low, high in delta.values():
    assert d == pytest.approx(0, abs=1e-12)
    assert low < 0 < high  # The noise is seen ...
    assert high - low < 0.05  # ... and measured: ±10 px of 100 on 400 expressions.


def test_a_known_difference_is_found_and_excludes_zero():
  # b = a + 5 intersection pixels of 100 everywhere, plus noise of mean 0:
  # true Δ overall IoU = Δ mean IoU = 0.05.
  rng = np.random.default_rng(2)
  n = 400
  u = np.full(n, 100)
  i_a = rng.integers(20, 70, n)
  noise = np.tile([-4, 4], n // 2)
  a, b = _samples(i_a, u), _samples(i_a + 5 + noise, u)
  delta = compare.paired_bootstrap([(a, b)], num_resamples=1000)
  for d, low, high in delta.values():
    assert d == pytest.approx(0.05)
    assert 0 < low < 0.05 < high


def test_pairs_of_seeds_average_and_resample_the_seeds():
  rng = np.random.default_rng(3)
  u = np.full(200, 100)
  i = rng.integers(20, 70, 200)
  base = _samples(i, u)
  # Seed 0 gains 2 points, seed 1 gains 6: Δ is their mean, 4, and the interval
  # spans the seeds' spread.
  pairs = [(base, _samples(i + 2, u)), (base, _samples(i + 6, u))]
  d, low, high = compare.paired_bootstrap(pairs, num_resamples=1000)['overall_iou']
  assert d == pytest.approx(0.04)
  assert low == pytest.approx(0.02) and high == pytest.approx(0.06)


def test_mismatched_splits_are_refused():
  a = {(0, 0): {'expression': 'left dog'}}
  with pytest.raises(ValueError, match='not evaluated on the same split'):
    compare.shared([a, {(0, 0): {'expression': 'right cat'}}])
  with pytest.raises(ValueError, match='share no evaluated expression'):
    compare.shared([a, {(1, 0): {'expression': 'left dog'}}])


@pytest.mark.slow
def test_the_command_prints_the_table_of_two_runs(tmp_path):
  families = ['attribute', 'location'] * 50
  u = np.full(100, 100)
  i = np.tile([30, 60], 50)
  runs = {'a': _samples(i, u, families), 'b': _samples(i + 10, u, families)}
  for name, samples in runs.items():
    (tmp_path / name / 'eval').mkdir(parents=True)
    (tmp_path / name / 'eval' / 'samples.jsonl').write_text(
        ''.join(json.dumps(s) + '\n' for s in samples))
  result = helpers.run_python(tmp_path, '-m', 'cmsa_jax.tools.compare', 'a', 'b',
                              '--resamples=200')
  assert result.returncode == 0, result.stderr[-2000:]
  rows = {line.split('|')[1].strip(): line.split('|')[2:-1]
          for line in result.stdout.splitlines() if line.startswith('| ')}
  assert rows['a'][5].strip() == f'{100 * 4500 / 10000:.2f}'  # Σ I / Σ U.
  assert rows['b'][5].strip() == f'{100 * 5500 / 10000:.2f}'
  assert rows['b'][7].strip() == '+10.00 [+10.00, +10.00]'  # Every expression gains 10.
  assert rows['attribute'][0].strip() == '50' and rows['attribute'][1].strip() == '30.00'
  assert rows['attribute'][2].strip() == '+10.00 [+10.00, +10.00]'
