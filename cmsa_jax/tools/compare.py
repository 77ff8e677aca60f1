r"""Paired comparison of runs evaluated on the same split.

  python -m cmsa_jax.tools.compare runs/a runs/b [runs/c ...] [--eval_dir=eval]

Reads each run's WORKDIR/eval/samples.jsonl (written by every evaluation) and
prints a Markdown table of the paper's metrics over the expressions all runs
share (matched by record and sentence index), with, for every run after the
first, Δ vs the first run and a paired bootstrap 95 % interval of Δ overall IoU
and Δ mean IoU; then Δ overall IoU per family (synthetic) or category (real
data) with its interval. An interval that excludes 0 is a difference the
held-out sample supports; one that contains 0 is not.

Bootstrap: the shared expressions are resampled with replacement (the same
resample for both runs: paired), `--resamples` times; the interval is the
2.5th-97.5th percentile of the resampled Δ. With several seeds per variant
(`paired_bootstrap` given one pair per seed, as benchmarks/ablations.py does),
Δ is the mean over seeds and each resample also draws the seeds with
replacement, so the interval covers seed-to-seed variation too.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from cmsa_jax import errors
from cmsa_jax.run import metrics
from cmsa_jax.run.evaluators import groups as groups_lib

CHUNK = 250  # Resamples per matrix product (bounds memory on large splits).


def load_samples(run, eval_dir='eval'):
  """{(record, sentence): sample line} of a run's samples.jsonl."""
  path = os.path.join(run, eval_dir, 'samples.jsonl')
  if not os.path.exists(path):
    raise errors.NotFoundError(f'{path}: no per-sample results; evaluate the run first '
                               f'(python main.py --mode=eval --workdir={run})')
  with open(path) as f:
    samples = [json.loads(line) for line in f if line.strip()]
  return {(s['record'], s['sentence']): s for s in samples}


def shared(runs):
  """Each run's samples restricted to the keys all share, in one order; ValueError
  if two runs give one key different expressions (not the same split)."""
  keys = sorted(set.intersection(*(set(r) for r in runs)))
  if not keys:
    raise ValueError('the runs share no evaluated expression (not the same split?)')
  for key in keys:
    texts = {r[key]['expression'] for r in runs}
    if len(texts) > 1:
      raise ValueError(f'record {key[0]} sentence {key[1]} is {sorted(texts)} in different '
                       'runs: they were not evaluated on the same split')
  return [[r[k] for k in keys] for r in runs]


def _counts(samples, prefix=''):
  return (np.asarray([s[prefix + 'intersection'] for s in samples], np.float64),
          np.asarray([s[prefix + 'union'] for s in samples], np.float64))


def _statistics(weights, i, u):
  """(overall IoU, mean IoU) of every resample: weights (R, N) counts of each sample."""
  ious = np.where(u > 0, i / np.maximum(u, 1), 1.0)
  return weights @ i / np.maximum(weights @ u, 1), weights @ ious / weights.sum(1)


def paired_bootstrap(pairs, *, num_resamples=2000, seed=0, prefix=''):
  """Δ = b − a of overall and mean IoU, mean over `pairs`, with a 95 % interval.

  pairs: [(samples of a, samples of b)], the same expressions in the same order
  in every list (one pair per seed; see the module docstring).

  Returns:
    {'overall_iou': (Δ, low, high), 'mean_iou': (Δ, low, high)}.
  """
  counts = [(_counts(a, prefix), _counts(b, prefix)) for a, b in pairs]
  n = len(pairs[0][0])
  if any(len(a) != n or len(b) != n for a, b in pairs):
    raise ValueError('every run of a comparison must hold the same expressions')
  ones = np.ones((1, n))
  point = np.mean([np.subtract(_statistics(ones, *cb), _statistics(ones, *ca))[:, 0]
                   for ca, cb in counts], axis=0)
  rng = np.random.default_rng(seed)
  deltas = []
  for start in range(0, num_resamples, CHUNK):
    r = min(CHUNK, num_resamples - start)
    weights = np.zeros((r, n))
    np.add.at(weights, (np.repeat(np.arange(r), n), rng.integers(0, n, r * n)), 1)
    per_pair = np.stack([np.subtract(_statistics(weights, *cb), _statistics(weights, *ca))
                         for ca, cb in counts])  # (pairs, 2, r)
    chosen = (rng.integers(0, len(pairs), (r, len(pairs))) if len(pairs) > 1
              else np.zeros((r, 1), int))
    deltas.append(np.take_along_axis(per_pair.transpose(2, 1, 0), chosen[:, None, :], 2)
                  .mean(2))  # (r, 2)
  low, high = np.percentile(np.concatenate(deltas), [2.5, 97.5], axis=0)
  return {k: (float(point[j]), float(low[j]), float(high[j]))
          for j, k in enumerate(('overall_iou', 'mean_iou'))}


def interval(delta, *, percent=True):
  """'+1.23 [+0.40, +2.05]' (in points of % by default)."""
  scale = 100 if percent else 1
  d, low, high = (scale * x for x in delta)
  return f'{d:+.2f} [{low:+.2f}, {high:+.2f}]'


def compare(runs, *, names=None, num_resamples=2000, seed=0):
  """The Markdown comparison of `runs` (each {key: sample}); Δ vs the first."""
  names = names or [f'run {k}' for k in range(len(runs))]
  aligned = shared(runs)
  cols = [f'prec@{t}' for t in metrics.PREC_THRESHOLDS] + ['overall_iou', 'mean_iou']
  lines = [f'{len(aligned[0])} expressions shared by all runs; metrics in %, Δ vs '
           f'{names[0]} in points with its paired bootstrap 95 % interval '
           f'({num_resamples} resamples).', '',
           '| run | ' + ' | '.join(cols) + ' | Δ overall IoU [95 % CI] | Δ mean IoU [95 % CI] |',
           '|' + '---|' * (len(cols) + 3)]
  for k, (name, samples) in enumerate(zip(names, aligned)):
    scores = metrics.summarize(*_counts(samples))
    cells = [f'{100 * scores[c]:.2f}' for c in cols]
    if k:
      delta = paired_bootstrap([(aligned[0], samples)], num_resamples=num_resamples, seed=seed)
      cells += [interval(delta['overall_iou']), interval(delta['mean_iou'])]
    else:
      cells += ['—', '—']
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  found = [groups_lib.members(samples) for samples in aligned]
  if found[0]:
    kind = 'family' if 'family' in aligned[0][0] else 'category'
    lines += ['', f'Overall IoU by {kind} (%), Δ vs {names[0]} [95 % CI]', '',
              f'| {kind} | n | ' + ' | '.join(names) + ' |', '|' + '---|' * (len(names) + 2)]
    for group, first in found[0].items():
      cells = [f'{100 * metrics.summarize(*_counts(first))["overall_iou"]:.2f}']
      for members in found[1:]:
        delta = paired_bootstrap([(first, members[group])], num_resamples=num_resamples,
                                 seed=seed)
        cells.append(interval(delta['overall_iou']))
      lines.append(f'| {group} | {len(first)} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  runs = argv[1:]
  if len(runs) < 2:
    raise app.UsageError('give two or more run folders: python -m cmsa_jax.tools.compare '
                         'runs/a runs/b ...')
  loaded = [load_samples(run, flags.FLAGS.eval_dir) for run in runs]
  print(compare(loaded, names=runs, num_resamples=flags.FLAGS.resamples, seed=flags.FLAGS.seed))


if __name__ == '__main__':
  # Defined here, not at import: benchmarks/ablations.py imports this module with flags of
  # its own.
  flags.DEFINE_string('eval_dir', 'eval', 'Folder of samples.jsonl in each run.')
  flags.DEFINE_integer('resamples', 2000, 'Bootstrap resamples.')
  flags.DEFINE_integer('seed', 0, 'Bootstrap random seed.')
  app.run(main)
