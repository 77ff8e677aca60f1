r"""The paper's ablations (Tables 1 and 2) and the text encoders on the synthetic scenes,
and CFSA vs no CFSA on the synthetic clips (--table=video).

Trains every variant of a table with the same budget and seeds (the demo
config, configs/demo.py, with one switch changed), evaluates each run on the
held-out split, and writes OUTPUT/table<k>.md in the paper's format (mean and
min–max over seeds of prec@0.5…0.9, overall and mean IoU, and overall IoU per
expression family) and OUTPUT/runs.json (every run's metrics).

  python -m cmsa_jax.tools.build_dataset synthetic_ref/96px --data_dir=D  # Once, ~3 min.
  python benchmarks/ablations.py --table=all --seeds=3 --steps=400 --data_dir=D \
      --output=runs/ablations

The 'encoders' table (issue 18) compares the text encoders of
cmsa_jax/models/text/ in the demo at the demo's own schedule and on its whole
held-out split (the paper model is the first row), and the best model
(configs/demo_best.py):

  python benchmarks/ablations.py --table=encoders --seeds=3 --data_dir=D \
      --output=runs/encoders

A row may name its own config file ('config': 'demo_best') and steps
('num_train_steps'); --steps and --num_eval, when given, override every row's.
--extra_rows_json adds rows to the encoders table, e.g. a pretrained encoder:
'{"BERT (bert)": {"config": "demo_bert", "text_encoder_init": "B/model.safetensors",
  "text_args": {"tokenizer": "B/tokenizer.json"}}}'.

--table=video trains configs/demo_video.py at its own budget with CFSA, without
CFSA, with the paper's CFSA tokens and values, with W_o initialised at 0 and with
time-moment values, and adds the per-seed paired differences (motion and
appearance families):

  python benchmarks/ablations.py --table=video --seeds=3 --output=runs/ablations_video

--only_seeds=k[,j] trains those seeds alone and writes no table, so one process per
seed (and variant) can share a machine (docs/gpu_sweeps.md); the same command
without it then reads every run back and writes the tables.

Resumable: a run whose evaluation is written is not repeated, and an
interrupted run resumes from its last checkpoint. Runs shared by the tables
(the full model is Table 1's word attention, Table 2's full attention and its
gated fusion) are trained once.
"""

import collections
import importlib
import json
import os
import re
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/.
from cmsa_jax.run import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
from cmsa_jax.run import train

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
    ('encoders', 'paper model: word embedding (embed)', {}),
    ('encoders', 'bidirectional LSTM (bilstm)', {'text_encoder': 'bilstm'}),
    ('encoders', 'transformer encoder (transformer)', {'text_encoder': 'transformer'}),
    ('encoders', 'embed + word-pixel pair attention', {'attention': 'word_pixel'}),
    ('encoders', 'best model (configs/demo_best.py)', {'config': 'demo_best'}),
    ('video', 'CFSA (the video demo)', {'config': 'demo_video'}),
    ('video', 'no CFSA (the annotated frame alone)', {'config': 'demo_video', 'cfsa': False}),
    ('video', "CFSA with the paper's tokens and values",
     {'config': 'demo_video', 'cfsa_tokens': 'visual', 'cfsa_values': 'linear'}),
    ('video', 'CFSA with V̂ = 0 at the start (W_o initialised at 0)',
     {'config': 'demo_video', 'cfsa_out_init': 'zeros'}),
    ('video', 'CFSA with time-moment values', {'config': 'demo_video', 'cfsa_values': 'moments'}),
)
VIDEO_CFSA, VIDEO_NO_CFSA = VARIANTS[-5][2], VARIANTS[-4][2]
# Overrides that are not config.model fields: the config file a row starts from,
# its number of training steps and the pretrained weights of its parts.
RUN_FIELDS = ('config', 'num_train_steps', 'backbone_init', 'text_encoder_init')
TABLES = {'1': 'Table 1: word pooling (Eq.4-5)',
          '2a': 'Table 2: attention (Eq.2-3)',
          '2b': 'Table 2: multi-level fusion (Eq.6-7)',
          'encoders': 'Text encoders (Eq.1 e_n) and the best model',
          'video': 'Video: cross-frame self-attention (Eq.9-11)'}
# The paper's orderings (UNC val), best first.
PAPER_ORDER = {'1': 'word attention > average pooling > max pooling',
               '2a': 'cross-modal self-attention > word-pixel pair, pixel, word attention > none',
               '2b': 'gated multi-level fusion > self-gated > multi-level sum > Res5 only',
               'encoders': 'not in the paper (its model is the first row)',
               'video': 'CFSA > no CFSA (Table 5, A2D Sentences)'}
# Per table: (steps, held-out expressions) when --steps / --num_eval are not given;
# None: the config's own (the demo's schedule, the whole split).
DEFAULT_BUDGET = {'1': (400, 500), '2': (400, 500), 'all': (400, 500),
                  'encoders': (None, None), 'video': (None, None)}

_TABLE = flags.DEFINE_enum('table', 'all', ['1', '2', 'all', 'encoders', 'video'],
                           "Which table to run ('all': Tables 1 and 2; 'video': CFSA vs no CFSA "
                           'on configs/demo_video.py).')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per variant (config.seed = 0..seeds-1).')
_ONLY_SEEDS = flags.DEFINE_list(
    'only_seeds', None, 'Train only these of the seeds and write no table: for processes run '
    'in parallel on one --output; the same command without it then writes the tables.')
_STEPS = flags.DEFINE_integer(
    'steps', None, 'Train steps per run; default 400 for Tables 1-2, each config\'s own for '
    'the encoders table.')
_IMAGE_SIZE = flags.DEFINE_integer(
    'image_size', None, "Image side (default: each row's config's own: 96 for the demo, 64 for "
    'the video demo).')
_NUM_EVAL = flags.DEFINE_integer(
    'num_eval', None, 'Held-out expressions scored per run; default 500 for Tables 1-2, the '
    'whole split (-1) for the encoders table.')
_NUM_TRAIN = flags.DEFINE_integer(
    'num_train', None, 'Training scenes (clips) generated on the fly (default: the config\'s '
    'own, the demo\'s 5000; a built dataset has its own).')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'TFDS data_dir holding a built synthetic_ref/<image_size>px (much less CPU '
    'per run than generating scenes on the fly); default: generate them.')
_OUTPUT = flags.DEFINE_string('output', 'runs/ablations', 'Output folder.')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', None, 'grain worker processes per run (the data order does not depend on '
    'it); default: the config\'s (the demo: 0).')
_VARIANTS = flags.DEFINE_list('variants', None,
                              'Only these row names (e.g. for a quick check); default: all.')
_EXTRA_ROWS_JSON = flags.DEFINE_string(
    'extra_rows_json', None, 'JSON {row name: overrides} added to the encoders table.')
_EXTRA_ROWS = flags.DEFINE_bool(
    'extra_rows', False, "Also Table 1's extra row: Eq.4 on the received fractions without "
    "the learned temperature (word_weight='mean').")


def run_key(overrides):
  """Folder name of a variant: its overrides, or 'full'."""
  key = '_'.join(f'{k}-{v}' for k, v in sorted(overrides.items())) or 'full'
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', key).strip('_')


def selected_variants(table, names=None, extra_rows=False, extra_json=None):
  """The (table, name, overrides) rows to run."""
  tables = {'1': ('1',), '2': ('2a', '2b'), 'all': ('1', '2a', '2b'),
            'encoders': ('encoders',), 'video': ('video',)}[table]
  rows = [v for v in VARIANTS if v[0] in tables]
  if extra_json:
    try:
      extra = json.loads(extra_json)
    except json.JSONDecodeError as e:
      raise app.UsageError(f'--extra_rows_json is not JSON: {e}') from None
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
      raise app.UsageError('--extra_rows_json must be {"row name": {overrides}}.')
    rows += [('encoders', name, overrides) for name, overrides in extra.items()]
  if not extra_rows:
    rows = [v for v in rows if 'word_weight' not in v[2]]
  if names:
    unknown = set(names) - {v[1] for v in rows}
    if unknown:
      raise app.UsageError(f'--variants: unknown rows {sorted(unknown)}; '
                           f'known: {sorted({v[1] for v in rows})}')
    rows = [v for v in rows if v[1] in names]
  return rows


def run_config(overrides, seed, *, steps, image_size, num_eval, num_train, data_dir=None,
               num_workers=None):
  """The row's config (configs/demo.py unless it names one) with its switches, the
  budget (None: the config's own) and the seed."""
  overrides = dict(overrides)
  config = importlib.import_module(f'configs.{overrides.pop("config", "demo")}').get_config()
  for field in RUN_FIELDS[1:]:
    config[field] = overrides.pop(field, config[field])
  config.model.update(overrides)
  config.seed = seed
  config.num_train_steps = steps = steps or config.num_train_steps
  if image_size:
    config.image_size = config.synthetic.image_size = image_size
    config.dataset = f'{config.dataset.split("/")[0]}/{image_size}px'
  config.checkpoint_every_steps = max(steps // 2, 1)
  config.keep_checkpoints = 1
  config.log_every_steps = max(steps // 20, 1)  # Learning curves in the logs.
  if num_eval is not None:
    config.num_eval_examples = num_eval
  if num_workers is not None:
    config.num_workers = num_workers
  if num_train:
    config.synthetic.num_train = num_train
  if data_dir:
    config.data_dir = data_dir
  config.crf = False
  return config


def run_once(config, workdir):
  """Trains and evaluates one run unless its evaluation is already written.

  Returns (metrics, whether it ran, wall seconds of training + evaluation: of
  this call, or as recorded in WORKDIR/wall_seconds.json by the call that ran it).
  """
  path = os.path.join(workdir, 'eval', 'metrics.json')
  timing = os.path.join(workdir, 'wall_seconds.json')
  if os.path.exists(path):
    with open(path) as f:
      metrics = json.load(f)
    if metrics.get('step') == config.num_train_steps:
      seconds = None
      if os.path.exists(timing):
        with open(timing) as f:
          seconds = json.load(f)
      return metrics, False, seconds
  start = time.monotonic()
  metrics = train.train_and_evaluate(config, workdir)
  seconds = time.monotonic() - start
  with open(timing, 'w') as f:
    json.dump(seconds, f)
  return metrics, True, seconds


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
  if table == 'video':
    lines += video_pairs(results)
  return '\n'.join(lines)


def video_pairs(results):
  """Lines of the per-seed differences the video table is read by (paired by seed)."""
  cfsa = results.get(run_key(VIDEO_CFSA))
  none = results.get(run_key(VIDEO_NO_CFSA))
  if not cfsa:
    return []
  get = lambda run, family, key='overall_iou': 100 * run.get(f'family_{family}_{key}', np.nan)
  lines = ['| seed | CFSA motion − all-objects baseline | CFSA − no CFSA, motion | '
           'CFSA − no CFSA, appearance | CFSA − no CFSA, overall |', '|---|---|---|---|---|']
  for seed, run in enumerate(cfsa):
    other = none[seed] if none and seed < len(none) else None
    diff = lambda f: (f'{get(run, f) - get(other, f):+.2f}' if other else '')
    overall = (f'{100 * (run["overall_iou"] - other["overall_iou"]):+.2f}' if other else '')
    baseline = get(run, 'motion', 'baseline_all_objects_overall_iou')
    lines.append(f'| {seed} | {get(run, "motion") - baseline:+.2f} '
                 f'| {diff("motion")} | {diff("appearance")} | {overall} |')
  return ['Per seed, in IoU points (the issue\'s targets: motion ≥ +15 over the baseline and '
          '≥ +10 over no CFSA in every seed):', ''] + lines + ['']


def main(argv):
  del argv
  rows = selected_variants(_TABLE.value, _VARIANTS.value, _EXTRA_ROWS.value,
                          _EXTRA_ROWS_JSON.value)
  default_steps, default_eval = DEFAULT_BUDGET[_TABLE.value]
  steps = _STEPS.value if _STEPS.value is not None else default_steps
  num_eval = _NUM_EVAL.value if _NUM_EVAL.value is not None else default_eval
  keys = list(dict.fromkeys(run_key(o) for _, _, o in rows))
  overrides = {run_key(o): o for _, _, o in rows}
  # Seed-major: an interrupted benchmark has every variant at its first seeds.
  seeds = range(_SEEDS.value)
  if _ONLY_SEEDS.value:
    seeds = [int(seed) for seed in _ONLY_SEEDS.value]
  jobs = [(key, seed) for seed in seeds for key in keys]
  os.makedirs(_OUTPUT.value, exist_ok=True)
  results = collections.defaultdict(list)
  all_runs, trained_seconds, trained = [], 0.0, 0
  for i, (key, seed) in enumerate(jobs):
    config = run_config(overrides[key], seed, steps=steps,
                        image_size=_IMAGE_SIZE.value, num_eval=num_eval,
                        num_train=_NUM_TRAIN.value, data_dir=_DATA_DIR.value,
                        num_workers=_NUM_WORKERS.value)
    metrics, ran, seconds = run_once(config,
                                     os.path.join(_OUTPUT.value, 'runs', f'{key}-seed{seed}'))
    if ran:
      trained_seconds += seconds
      trained += 1
    results[key].append(metrics)
    all_runs.append({'variant': key, 'overrides': overrides[key], 'seed': seed,
                     'steps': config.num_train_steps, 'image_size': config.image_size,
                     'metrics': metrics, 'wall_seconds': seconds})
    left = len(jobs) - i - 1
    eta = f'{trained_seconds / trained * left / 60:.0f} min' if trained else '?'
    print(f'[{i + 1}/{len(jobs)}] {key} seed {seed}: overall IoU '
          f'{metrics["overall_iou"]:.3f} ({"trained" if ran else "done before"}); ETA {eta}',
          flush=True)
  if _ONLY_SEEDS.value:
    return
  with open(os.path.join(_OUTPUT.value, 'runs.json'), 'w') as f:
    json.dump(all_runs, f, indent=2)
  video = _TABLE.value == 'video'
  data = (f'built {config.dataset}' if _DATA_DIR.value else
          f'{config.synthetic.num_train} synthetic {"clips" if video else "scenes"} generated '
          'on the fly')
  budget = ', '.join(sorted({f'{r["steps"]} steps' for r in all_runs}))
  scored = sorted({r['metrics'].get('num_examples') for r in all_runs})
  header = (f'Synthetic referring {"clips" if video else "scenes"} ({data}), '
            f'configs/{"demo_video" if video else "demo"}.py with one '
            f'switch changed (or the config a row names), {budget} per run, '
            f'{"/".join(map(str, scored))} held-out expressions, no DenseCRF.\n\n')
  for table in dict.fromkeys(t for t, _, _ in rows):
    text = header + table_markdown(table, [r for r in rows if r[0] == table], results)
    with open(os.path.join(_OUTPUT.value, f'table{table}.md'), 'w') as f:
      f.write(text)
    print(text, flush=True)
  logging.info('Wrote %s.', _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)
