r"""The paper's ablations (Tables 1 and 2) on the synthetic referring scenes.

Trains every variant of a table with the same budget and seeds (the demo
config, configs/demo.py, with one switch changed), evaluates each run on the
held-out split, and writes OUTPUT/table<k>.md in the paper's format (mean and
min–max over seeds of prec@0.5…0.9, overall and mean IoU, and overall IoU per
expression family) and OUTPUT/runs.json (every run's metrics).

  python -m cmsa_jax.tools.build_dataset synthetic_ref/96px --data_dir=D  # Once, ~3 min.
  python benchmarks/ablations.py --table=all --seeds=3 --steps=400 --data_dir=D \
      --output=runs/ablations

Resumable: a run whose evaluation is written is not repeated, and an
interrupted run resumes from its last checkpoint. Runs shared by the tables
(the full model is Table 1's word attention, Table 2's full attention and its
gated fusion) are trained once.
"""

import collections
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/.
from cmsa_jax.run import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
from cmsa_jax.run import train
from configs import demo

# (table, row name, config.model overrides); {} is the full model.
VARIANTS = (
    ('1', 'word attention', {}),
    ('1', 'average pooling (the official code)', {'pooling': 'avg'}),
    ('1', 'max pooling', {'pooling': 'max'}),
    ('1', "word attention, Eq.4 fractions ('mean')", {'word_weight': 'mean'}),
    ('2a', 'no attention (average pooling)', {'attention': 'none', 'pooling': 'avg'}),
    ('2a', 'word attention', {'attention': 'word'}),
    ('2a', 'pixel attention', {'attention': 'pixel'}),
    ('2a', 'word-pixel pair attention', {'attention': 'word_pixel'}),
    ('2a', 'cross-modal self-attention', {}),
    ('2b', 'Res5 only', {'fusion': 'res5'}),
    ('2b', 'multi-level sum', {'fusion': 'sum'}),
    ('2b', 'self-gated', {'fusion': 'self_gated'}),
    ('2b', 'gated multi-level fusion', {}),
)
TABLES = {'1': 'Table 1: word pooling (Eq.4-5)',
          '2a': 'Table 2: attention (Eq.2-3)',
          '2b': 'Table 2: multi-level fusion (Eq.6-7)'}
# The paper's orderings (UNC val), best first.
PAPER_ORDER = {'1': 'word attention > average pooling > max pooling',
               '2a': 'cross-modal self-attention > word-pixel pair, pixel, word attention > none',
               '2b': 'gated multi-level fusion > self-gated > multi-level sum > Res5 only'}

_TABLE = flags.DEFINE_enum('table', 'all', ['1', '2', 'all'], 'Which table to run.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per variant (config.seed = 0..seeds-1).')
_STEPS = flags.DEFINE_integer('steps', 400, 'Train steps per run.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 96, 'Image side (the demo backbone: 96).')
_NUM_EVAL = flags.DEFINE_integer('num_eval', 500, 'Held-out expressions scored per run.')
_NUM_TRAIN = flags.DEFINE_integer(
    'num_train', 5000, 'Training scenes generated on the fly (the demo: 5000; a built dataset '
    'has its own: 4000).')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'TFDS data_dir holding a built synthetic_ref/<image_size>px (much less CPU '
    'per run than generating scenes on the fly); default: generate them.')
_OUTPUT = flags.DEFINE_string('output', 'runs/ablations', 'Output folder.')
_VARIANTS = flags.DEFINE_list('variants', None,
                              'Only these row names (e.g. for a quick check); default: all.')
_EXTRA_ROWS = flags.DEFINE_bool(
    'extra_rows', False, "Also Table 1's extra row: Eq.4 on the received fractions without "
    "the learned temperature (word_weight='mean').")


def run_key(overrides):
  """Folder name of a variant: its overrides, or 'full'."""
  return '_'.join(f'{k}-{v}' for k, v in sorted(overrides.items())) or 'full'


def selected_variants(table, names=None, extra_rows=False):
  """The (table, name, overrides) rows to run."""
  tables = {'1': ('1',), '2': ('2a', '2b'), 'all': tuple(TABLES)}[table]
  rows = [v for v in VARIANTS if v[0] in tables]
  if not extra_rows:
    rows = [v for v in rows if 'word_weight' not in v[2]]
  if names:
    unknown = set(names) - {v[1] for v in rows}
    if unknown:
      raise app.UsageError(f'--variants: unknown rows {sorted(unknown)}; '
                           f'known: {sorted({v[1] for v in rows})}')
    rows = [v for v in rows if v[1] in names]
  return rows


def run_config(overrides, seed, *, steps, image_size, num_eval, num_train, data_dir=None):
  """configs/demo.py with the variant's switches, the budget and the seed."""
  config = demo.get_config()
  config.model.update(overrides)
  config.seed = seed
  config.num_train_steps = steps
  config.image_size = config.synthetic.image_size = image_size
  config.checkpoint_every_steps = max(steps // 2, 1)
  config.keep_checkpoints = 1
  config.log_every_steps = max(steps // 4, 1)
  config.num_eval_examples = num_eval
  config.synthetic.num_train = num_train
  if data_dir:
    config.dataset, config.data_dir = f'synthetic_ref/{image_size}px', data_dir
  config.crf = False
  return config


def run_once(config, workdir):
  """Trains and evaluates one run unless its evaluation is already written."""
  path = os.path.join(workdir, 'eval', 'metrics.json')
  if os.path.exists(path):
    with open(path) as f:
      metrics = json.load(f)
    if metrics.get('step') == config.num_train_steps:
      return metrics, False
  return train.train_and_evaluate(config, workdir), True


def summarize(values):
  values = np.asarray(values, float) * 100
  return f'{values.mean():.2f} ({values.min():.2f}–{values.max():.2f})'


def table_markdown(table, rows, results):
  """One table: mean (min–max over seeds) in %, one row per variant."""
  cols = [f'prec@{t}' for t in metrics_lib.PREC_THRESHOLDS] + ['overall_iou', 'mean_iou']
  families = sorted({k[len('family_'):-len('_overall_iou')] for r in results.values()
                     for runs in r for k in runs
                     if k.startswith('family_') and '_baseline_' not in k
                     and k.endswith('_overall_iou')})
  head = ['variant'] + cols + [f'{f} IoU' for f in families]
  lines = [f'### {TABLES[table]}', '',
           f'Paper ordering: {PAPER_ORDER[table]}.', '',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for _, name, overrides in rows:
    runs = results[run_key(overrides)]
    cells = [summarize([r[c] for r in runs]) for c in cols]
    cells += [summarize([r[f'family_{f}_overall_iou'] for r in runs]) for f in families]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  runs = next(iter(results.values()))
  for baseline in ('all_objects', 'largest_object'):  # Same held-out set in every run.
    key = f'baseline_{baseline}_overall_iou'
    if key in runs[0]:
      cells = ['', '', '', '', '', f'{100 * runs[0][key]:.2f}', '']
      cells += [f'{100 * runs[0][f"family_{f}_{key}"]:.2f}' for f in families]
      lines.append(f'| baseline: {baseline.replace("_", " ")} | ' + ' | '.join(cells) + ' |')
  seeds = len(next(iter(results.values())))
  lines += ['', f'Mean (min–max) over {seeds} seed(s), in %.', '']
  return '\n'.join(lines)


def main(argv):
  del argv
  rows = selected_variants(_TABLE.value, _VARIANTS.value, _EXTRA_ROWS.value)
  keys = list(dict.fromkeys(run_key(o) for _, _, o in rows))
  overrides = {run_key(o): o for _, _, o in rows}
  # Seed-major: an interrupted benchmark has every variant at its first seeds.
  jobs = [(key, seed) for seed in range(_SEEDS.value) for key in keys]
  os.makedirs(_OUTPUT.value, exist_ok=True)
  results = collections.defaultdict(list)
  all_runs, trained_seconds, trained = [], 0.0, 0
  for i, (key, seed) in enumerate(jobs):
    config = run_config(overrides[key], seed, steps=_STEPS.value,
                        image_size=_IMAGE_SIZE.value, num_eval=_NUM_EVAL.value,
                        num_train=_NUM_TRAIN.value, data_dir=_DATA_DIR.value)
    start = time.monotonic()
    metrics, ran = run_once(config, os.path.join(_OUTPUT.value, 'runs', f'{key}-seed{seed}'))
    if ran:
      trained_seconds += time.monotonic() - start
      trained += 1
    results[key].append(metrics)
    all_runs.append({'variant': key, 'overrides': overrides[key], 'seed': seed,
                     'steps': _STEPS.value, 'image_size': _IMAGE_SIZE.value,
                     'metrics': metrics})
    left = len(jobs) - i - 1
    eta = f'{trained_seconds / trained * left / 60:.0f} min' if trained else '?'
    print(f'[{i + 1}/{len(jobs)}] {key} seed {seed}: overall IoU '
          f'{metrics["overall_iou"]:.3f} ({"trained" if ran else "done before"}); ETA {eta}',
          flush=True)
  with open(os.path.join(_OUTPUT.value, 'runs.json'), 'w') as f:
    json.dump(all_runs, f, indent=2)
  data = (f'built synthetic_ref/{_IMAGE_SIZE.value}px' if _DATA_DIR.value else
          f'{_NUM_TRAIN.value} synthetic scenes generated on the fly')
  header = (f'Synthetic referring scenes ({data}), configs/demo.py with one '
            f'switch changed, {_STEPS.value} steps per run, {_NUM_EVAL.value} held-out '
            f'expressions, no DenseCRF.\n\n')
  for table in dict.fromkeys(t for t, _, _ in rows):
    text = header + table_markdown(table, [r for r in rows if r[0] == table], results)
    with open(os.path.join(_OUTPUT.value, f'table{table}.md'), 'w') as f:
      f.write(text)
    print(text, flush=True)
  logging.info('Wrote %s.', _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)
