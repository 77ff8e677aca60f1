"""benchmarks/ablations.py end to end at a tiny budget: tables, JSON, resume."""

import json
import re

import pytest

from tests import helpers

pytestmark = pytest.mark.slow

VARIANTS = 'word attention,max pooling'


def _run(out):
  return helpers.run_python(
      helpers.REPO, 'benchmarks/ablations.py', '--table=1', '--seeds=1', '--steps=2',
      '--num_eval=6', '--image_size=32', '--num_train=32', f'--variants={VARIANTS}',
      f'--output={out}')


def test_ablations_write_table_and_json_and_resume(tmp_path):
  out = tmp_path / 'ablations'
  first = _run(out)
  assert first.returncode == 0, first.stderr[-3000:]
  assert first.stdout.count('(trained)') == 2

  runs = json.loads((out / 'runs.json').read_text())
  assert [(r['variant'], r['seed'], r['steps']) for r in runs] == [
      ('full', 0, 2), ('pooling-max', 0, 2)]
  for run in runs:  # runs.json holds what each run's own evaluation wrote.
    written = json.loads((out / 'runs' / f'{run["variant"]}-seed0' / 'eval' /
                          'metrics.json').read_text())
    assert written == run['metrics']
    assert written['num_examples'] == 6

  table = (out / 'table1.md').read_text()
  scores, deltas = table.split('Δ vs the full model')
  rows = {line.split('|')[1].strip(): line for line in scores.splitlines()
          if line.startswith('| ') and not line.startswith('| variant')}
  assert {'word attention', 'max pooling', 'baseline: all objects'} <= set(rows)
  cells = rows['max pooling'].split('|')[2:-1]
  overall = runs[1]['metrics']['overall_iou'] * 100
  assert cells[5].strip() == f'{overall:.2f} ({overall:.2f}–{overall:.2f})'
  families = [k for k in runs[0]['metrics']
              if k.startswith('family_') and '_baseline_' not in k]
  assert len(cells) == 7 + len(families)

  # Per-sample results: runs.json holds each run's intersections and unions, which give
  # its metrics again (overall IoU = ΣI / ΣU).
  for run in runs:
    columns = run['samples']
    assert len(columns['union']) == 6
    assert sum(columns['intersection']) / sum(columns['union']) == pytest.approx(
        run['metrics']['overall_iou'], abs=1e-12)

  # Δ vs the full model with its paired bootstrap interval; with one seed Δ is that seed's
  # difference of overall IoU.
  delta_rows = {line.split('|')[1].strip(): line.split('|')[2:-1] for line in deltas.splitlines()
                if line.startswith('| ') and not line.startswith('| variant')}
  assert list(delta_rows) == ['max pooling']  # The full model is the reference.
  d, low, high = (float(x) for x in re.fullmatch(
      r'\s*([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]\s*',
      delta_rows['max pooling'][0]).groups())
  want = 100 * (runs[1]['metrics']['overall_iou'] - runs[0]['metrics']['overall_iou'])
  assert d == pytest.approx(want, abs=0.006) and low <= d <= high
  assert delta_rows['max pooling'][1].strip() == (
      'better' if low > 0 else 'worse' if high < 0 else 'no')
  summary = (out / 'summary.md').read_text()
  assert '**full model** (word attention)' in summary and '| 1 | max pooling |' in summary

  again = _run(out)  # Resumable: finished runs are read back, not retrained.
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count('(done before)') == 2
  assert (out / 'table1.md').read_text() == table


def test_ablations_reject_unknown_variant(tmp_path):
  result = helpers.run_python(helpers.REPO, 'benchmarks/ablations.py', '--variants=nonsense',
                              f'--output={tmp_path}')
  assert result.returncode != 0
  assert 'nonsense' in result.stderr and 'word attention' in result.stderr
  assert not list(tmp_path.iterdir())  # Nothing trained, nothing written.
