"""benchmarks/ablations.py end to end at a tiny budget: tables, JSON, resume."""

import json
import re

import pytest

from tests import helpers

pytestmark = pytest.mark.slow

VARIANTS = 'word attention (the full model),max pooling'


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
  scores, deltas = table.split('Δ vs the reference row')
  rows = {line.split('|')[1].strip(): line for line in scores.splitlines()
          if line.startswith('| ') and not line.startswith('| variant')}
  assert {'word attention (the full model)', 'max pooling', 'baseline: all objects'} <= set(rows)
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
  assert '**word attention (the full model)** (reference)' in summary
  assert '| 1 | max pooling |' in summary

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


def test_encoders_table_runs_rows_with_their_own_config(tmp_path):
  out = tmp_path / 'encoders'
  extra = '{"embed 3 steps": {"num_train_steps": 3}}'
  result = helpers.run_python(
      helpers.REPO, 'benchmarks/ablations.py', '--table=encoders', '--seeds=1', '--steps=2',
      '--num_eval=6', '--image_size=32', '--num_train=32', f'--output={out}',
      '--variants=bidirectional LSTM (bilstm),best model (configs/demo_best.py),embed 3 steps',
      f'--extra_rows_json={extra}')
  assert result.returncode == 0, result.stderr[-3000:]
  runs = {r['variant']: r for r in json.loads((out / 'runs.json').read_text())}
  assert set(runs) == {'text_encoder-bilstm', 'config-demo_best', 'num_train_steps-3'}
  assert all(r['steps'] == 2 and r['wall_seconds'] > 0 for r in runs.values())  # --steps wins.
  saved = json.loads((out / 'runs' / 'config-demo_best-seed0' / 'eval' / 'metrics.json'
                      ).read_text())
  assert saved == runs['config-demo_best']['metrics']
  table = (out / 'tableencoders.md').read_text()
  assert 'best model (configs/demo_best.py)' in table and 'embed 3 steps' in table
  assert 'Text encoders' in table
  from cmsa_jax.run import checkpoints  # pylint: disable=g-import-not-at-top
  config, _, _ = checkpoints.restore_config_and_vocab(str(out / 'runs' / 'config-demo_best-seed0'))
  assert (config.model.text_encoder, config.model.attention) == ('bilstm', 'word_pixel')


def test_video_table_pairs_cfsa_and_no_cfsa_by_seed(tmp_path):
  out = tmp_path / 'video'
  run = lambda *extra: helpers.run_python(
      helpers.REPO, 'benchmarks/ablations.py', '--table=video', '--seeds=1', '--steps=2',
      '--num_eval=6', '--image_size=32', '--num_train=8',
      '--variants=CFSA (the video demo),no CFSA (the annotated frame alone)', f'--output={out}',
      *extra)
  result = run('--only_seeds=0')  # As one of several processes: trains, writes no table.
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count('(trained)') == 2
  assert not (out / 'tablevideo.md').exists() and not (out / 'runs.json').exists()
  result = run()
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count('(done before)') == 2
  runs = json.loads((out / 'runs.json').read_text())
  assert [(r['variant'], r['steps'], r['image_size']) for r in runs] == [
      ('config-demo_video', 2, 32), ('cfsa-False_config-demo_video', 2, 32)]
  table = (out / 'tablevideo.md').read_text()
  assert 'configs/demo_video.py' in table and 'no CFSA (the annotated frame alone)' in table
  cfsa, none = (r['metrics'] for r in runs)
  pair = [line for line in table.splitlines() if line.startswith('| 0 |')]
  assert len(pair) == 1  # Seed 0's differences, from the two runs' own metrics.
  cells = [c.strip() for c in pair[0].split('|')[2:-1]]
  motion = lambda run, key='overall_iou': 100 * run[f'family_motion_{key}']
  assert cells[0] == f'{motion(cfsa) - motion(cfsa, "baseline_all_objects_overall_iou"):+.2f}'
  assert cells[1] == f'{motion(cfsa) - motion(none):+.2f}'
  assert cells[3] == f'{100 * (cfsa["overall_iou"] - none["overall_iou"]):+.2f}'
