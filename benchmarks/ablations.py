r"""The paper's ablations (Tables 1 and 2) on the synthetic referring scenes.

Trains every variant of a table with the same budget and seeds (the demo
config, configs/demo.py, with one switch changed), evaluates each run on the
held-out split (every run writes its per-expression results,
runs/<variant>-seed<k>/eval/samples.jsonl), and writes:

  OUTPUT/table<k>.md   the paper's format: mean and min–max over seeds of
                       prec@0.5…0.9, overall and mean IoU, overall IoU per family;
                       then Δ vs the full model with its paired bootstrap 95 %
                       interval (cmsa_jax.tools.compare: expressions and seeds
                       resampled), overall, mean and per family.
  OUTPUT/summary.md    one README-ready table of every variant: overall IoU, Δ and
                       interval, per family.
  OUTPUT/runs.json     every run's metrics and per-expression intersection/union.

  python -m cmsa_jax.tools.build_dataset synthetic_ref/96px --data_dir=D  # Once, ~3 min.
  python benchmarks/ablations.py --table=all --seeds=3 --steps=400 --data_dir=D \
      --output=runs/ablations

Resumable: a run whose evaluation is written is not repeated, and an
interrupted run resumes from its last checkpoint. Runs shared by the tables
(the full model is Table 1's word attention, Table 2's full attention and its
gated fusion) are trained once.

A new table is one TABLES entry (and a --table choice in CHOICES): its title, the
paper's ordering, a dict of row name -> config.model overrides ({} is the full
model, the reference of Δ), and, for another config than the demo's, `base` (its
get_config) and `prefix` (of its run folders).
"""

import collections
import dataclasses
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
from cmsa_jax.run.evaluators import groups
from cmsa_jax.tools import compare
from configs import demo


@dataclasses.dataclass(frozen=True)
class Table:
  title: str
  paper_order: str  # The paper's ordering (UNC val), best first.
  variants: dict  # Row name -> config.model overrides; {} is the full model.
  extra: dict = dataclasses.field(default_factory=dict)  # Rows run only with --extra_rows.
  base: object = demo.get_config  # The config every row changes.
  prefix: str = ''  # Of the run folders, where `base` is not the demo's.


TABLES = {
    '1': Table('Table 1: word pooling (Eq.4-5)',
               'word attention > average pooling > max pooling', {
                   'word attention': {},
                   'average pooling (the official code)': {'pooling': 'avg'},
                   'max pooling': {'pooling': 'max'},
               }, extra={"word attention, Eq.4 fractions ('mean')": {'word_weight': 'mean'}}),
    '2a': Table('Table 2: attention (Eq.2-3)',
                'cross-modal self-attention > word-pixel pair, pixel, word attention > none', {
                    'no attention (average pooling)': {'attention': 'none', 'pooling': 'avg'},
                    'word attention': {'attention': 'word'},
                    'pixel attention': {'attention': 'pixel'},
                    'word-pixel pair attention': {'attention': 'word_pixel'},
                    'cross-modal self-attention': {},
                }),
    '2b': Table('Table 2: multi-level fusion (Eq.6-7)',
                'gated multi-level fusion > self-gated > multi-level sum > Res5 only', {
                    'Res5 only': {'fusion': 'res5'},
                    'multi-level sum': {'fusion': 'sum'},
                    'self-gated': {'fusion': 'self_gated'},
                    'gated multi-level fusion': {},
                }),
}
CHOICES = {'1': ('1',), '2': ('2a', '2b'), 'all': ('1', '2a', '2b')}  # --table -> TABLES keys.

_TABLE = flags.DEFINE_enum('table', 'all', list(CHOICES), 'Which table(s) to run.')
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
_RESAMPLES = flags.DEFINE_integer('resamples', 2000, 'Bootstrap resamples of each interval.')


def run_key(overrides, table='1'):
  """Folder name of a variant: its table's prefix, then its overrides, or 'full'."""
  key = '_'.join(f'{k}-{v}' for k, v in sorted(overrides.items())) or 'full'
  return TABLES[table].prefix + key


def selected_variants(table, names=None, extra_rows=False):
  """The (table, name, overrides) rows to run."""
  rows = [(t, name, overrides) for t in CHOICES[table]
          for name, overrides in (TABLES[t].variants | (TABLES[t].extra if extra_rows else {})
                                  ).items()]
  if names:
    unknown = set(names) - {v[1] for v in rows}
    if unknown:
      raise app.UsageError(f'--variants: unknown rows {sorted(unknown)}; '
                           f'known: {sorted({v[1] for v in rows})}')
    rows = [v for v in rows if v[1] in names]
  return rows


def run_config(overrides, seed, *, steps, image_size, num_eval, num_train, data_dir=None,
               base=demo.get_config):
  """`base` (configs/demo.py) with the variant's switches, the budget and the seed."""
  config = base()
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
  config.evals = ('paper', 'baselines', 'groups')
  return config


def run_once(config, workdir):
  """Trains and evaluates one run unless its evaluation is already written."""
  path = os.path.join(workdir, 'eval', 'metrics.json')
  if os.path.exists(path) and os.path.exists(os.path.join(workdir, 'eval', 'samples.jsonl')):
    with open(path) as f:
      metrics = json.load(f)
    if metrics.get('step') == config.num_train_steps:
      return metrics, False
  return train.train_and_evaluate(config, workdir), True


def summarize(values):
  values = np.asarray(values, float) * 100
  return f'{values.mean():.2f} ({values.min():.2f}–{values.max():.2f})'


def families_of(results):
  return sorted({k[len('family_'):-len('_overall_iou')] for runs in results.values()
                 for r in runs for k in r
                 if k.startswith('family_') and '_baseline_' not in k
                 and k.endswith('_overall_iou')})


def deltas(reference, variant, *, num_resamples):
  """{'overall_iou' | 'mean_iou' | family: (Δ, low, high)} of a variant's runs vs the
  reference's, paired by seed, over the expressions every run shares."""
  aligned = compare.shared(reference + variant)
  pairs = list(zip(aligned[:len(reference)], aligned[len(reference):]))
  out = compare.paired_bootstrap(pairs, num_resamples=num_resamples)
  by_family = [[groups.members(s) for s in pair] for pair in pairs]
  for family in by_family[0][0]:
    out[family] = compare.paired_bootstrap(
        [(a[family], b[family]) for a, b in by_family],
        num_resamples=num_resamples)['overall_iou']
  return out


def real(delta):
  """Whether the interval excludes 0: 'better' or 'worse' than the full model, else 'no'."""
  _, low, high = delta
  return 'better' if low > 0 else 'worse' if high < 0 else 'no'


def table_markdown(table, rows, results, samples, *, num_resamples):
  """One table: mean (min–max over seeds) in %, one row per variant; then Δ vs the
  full model (paired by seed) with its bootstrap 95 % interval."""
  cols = [f'prec@{t}' for t in metrics_lib.PREC_THRESHOLDS] + ['overall_iou', 'mean_iou']
  families = families_of(results)
  head = ['variant'] + cols + [f'{f} IoU' for f in families]
  lines = [f'### {TABLES[table].title}', '',
           f'Paper ordering: {TABLES[table].paper_order}.', '',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for _, name, overrides in rows:
    runs = results[run_key(overrides, table)]
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
  seeds = len(runs)
  lines += ['', f'Mean (min–max) over {seeds} seed(s), in %.', '']
  full = samples.get(run_key({}, table))
  others = [(name, o) for _, name, o in rows if o]
  if full and others:
    head = ['variant', 'Δ overall IoU [95 % CI]', 'real?', 'Δ mean IoU [95 % CI]', 'real?'] + [
        f'Δ {f} IoU' for f in families]
    lines += [f'Δ vs the full model in IoU points, paired by seed, with the paired bootstrap '
              f'95 % interval ({num_resamples} resamples of the held-out expressions and of '
              'the seeds; cmsa_jax/tools/compare.py). real? = the interval excludes 0.', '',
              '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for name, overrides in others:
      d = deltas(full, samples[run_key(overrides, table)], num_resamples=num_resamples)
      cells = [compare.interval(d['overall_iou']), real(d['overall_iou']),
               compare.interval(d['mean_iou']), real(d['mean_iou'])]
      cells += [compare.interval(d[f]) if f in d else '' for f in families]
      lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def summary_markdown(rows, results, samples, *, num_resamples):
  """Every variant once: overall IoU (min–max), Δ vs the full model and its interval,
  per-seed Δ, per family (the README's table)."""
  families = families_of(results)
  head = ['Table', 'variant', 'overall IoU (min–max)', 'Δ vs full [95 % CI]', 'real?',
          'Δ per seed'] + families
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  seen = {}
  for table, name, overrides in rows:
    key = run_key(overrides, table)
    if key in seen:
      seen[key][0].add(table[0])
      continue
    runs, full = results[key], run_key({}, table)
    if overrides:
      d = deltas(samples[full], samples[key], num_resamples=num_resamples)['overall_iou']
      per_seed = ', '.join(f'{100 * (r["overall_iou"] - f["overall_iou"]):+.1f}'
                           for r, f in zip(runs, results[full]))
      cells = [compare.interval(d), real(d), per_seed]
    else:
      name, cells = f'**full model** ({name})', ['—', '', '']
    family_cells = [f'{100 * np.mean([r[f"family_{f}_overall_iou"] for r in runs]):.1f}'
                    for f in families]
    seen[key] = ({table[0]}, name, [summarize([r['overall_iou'] for r in runs])] + cells +
                 family_cells)
  for tables, name, cells in seen.values():
    lines.append(f'| {", ".join(sorted(tables))} | {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def per_sample(workdir):
  """A run's samples.jsonl as columns (record, sentence, family, intersection, union)."""
  samples = sorted(compare.load_samples(workdir).values(), key=lambda s: s['position'])
  return {k: [s.get(k) for s in samples]
          for k in ('record', 'sentence', 'family', 'intersection', 'union')}


def main(argv):
  del argv
  rows = selected_variants(_TABLE.value, _VARIANTS.value, _EXTRA_ROWS.value)
  keys = list(dict.fromkeys(run_key(o, t) for t, _, o in rows))
  overrides = {run_key(o, t): o for t, _, o in rows}
  bases = {run_key(o, t): TABLES[t].base for t, _, o in rows}
  # Seed-major: an interrupted benchmark has every variant at its first seeds.
  jobs = [(key, seed) for seed in range(_SEEDS.value) for key in keys]
  os.makedirs(_OUTPUT.value, exist_ok=True)
  results, samples = collections.defaultdict(list), collections.defaultdict(list)
  all_runs, trained_seconds, trained = [], 0.0, 0
  for i, (key, seed) in enumerate(jobs):
    config = run_config(overrides[key], seed, steps=_STEPS.value,
                        image_size=_IMAGE_SIZE.value, num_eval=_NUM_EVAL.value,
                        num_train=_NUM_TRAIN.value, data_dir=_DATA_DIR.value,
                        base=bases[key])
    workdir = os.path.join(_OUTPUT.value, 'runs', f'{key}-seed{seed}')
    start = time.monotonic()
    metrics, ran = run_once(config, workdir)
    if ran:
      trained_seconds += time.monotonic() - start
      trained += 1
    results[key].append(metrics)
    samples[key].append(compare.load_samples(workdir))
    all_runs.append({'variant': key, 'overrides': overrides[key], 'seed': seed,
                     'steps': _STEPS.value, 'image_size': _IMAGE_SIZE.value,
                     'metrics': metrics, 'samples': per_sample(workdir)})
    left = len(jobs) - i - 1
    eta = f'{trained_seconds / trained * left / 60:.0f} min' if trained else '?'
    print(f'[{i + 1}/{len(jobs)}] {key} seed {seed}: overall IoU '
          f'{metrics["overall_iou"]:.3f} ({"trained" if ran else "done before"}); ETA {eta}',
          flush=True)
  with open(os.path.join(_OUTPUT.value, 'runs.json'), 'w') as f:
    json.dump(all_runs, f)
  data = (f'built synthetic_ref/{_IMAGE_SIZE.value}px' if _DATA_DIR.value else
          f'{_NUM_TRAIN.value} synthetic scenes generated on the fly')
  header = (f'Synthetic referring scenes ({data}), configs/demo.py with one '
            f'switch changed, {_STEPS.value} steps per run, {_NUM_EVAL.value} held-out '
            f'expressions, no DenseCRF.\n\n')
  for table in dict.fromkeys(t for t, _, _ in rows):
    text = header + table_markdown(table, [r for r in rows if r[0] == table], results, samples,
                                   num_resamples=_RESAMPLES.value)
    with open(os.path.join(_OUTPUT.value, f'table{table}.md'), 'w') as f:
      f.write(text)
    print(text, flush=True)
  rows = [r for r in rows if run_key({}, r[0]) in results]  # Δ needs the full model.
  if rows:
    text = summary_markdown(rows, results, samples, num_resamples=_RESAMPLES.value)
    with open(os.path.join(_OUTPUT.value, 'summary.md'), 'w') as f:
      f.write(header + text)
    print(text, flush=True)
  logging.info('Wrote %s.', _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)
