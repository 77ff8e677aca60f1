"""Evaluation at the original resolution: overall/mean IoU and prec@X, with and
without DenseCRF, and trivial baselines where every object of a scene is known."""

import collections
import dataclasses
import json
import os

from absl import logging
from flax import nnx
import jax
from jax.experimental import multihost_utils
import numpy as np

from cmsa_jax import models
from cmsa_jax import progress as progress_lib
from cmsa_jax.data import input_pipeline
from cmsa_jax.data import sources
from cmsa_jax.run import checkpoints
from cmsa_jax.run import crf
from cmsa_jax.run import dataset as dataset_lib
from cmsa_jax.run import metrics as metrics_lib
from cmsa_jax.run import writers

BASELINES = ('all_objects', 'largest_object')
BASELINE_KEYS = tuple(f'baseline_{b}' for b in BASELINES)


@nnx.jit
def predict_probabilities(model, inputs):
  """Foreground probabilities (B, H, W) at the model's input size."""
  return jax.nn.sigmoid(model(*inputs)['logits'])


def _score_example(batch, j, prob, scores, use_crf):
  """Scores example j of a batch given its probability map at input size."""
  prob = input_pipeline.unpad_and_resize(prob, batch['resize_info'][j])
  target = batch['orig_mask'][j]
  preds = {'model': prob >= 0.5}
  preds.update({key: batch[key][j] for key in BASELINE_KEYS if key in batch})
  for key, pred in preds.items():
    scores[key].update(pred, target)
    if 'family' in batch:  # Per family, the model and the baselines alike.
      scores['family'][batch['family'][j], key].update(pred, target)
  if use_crf:
    scores['crf'].update(crf.dense_crf(batch['orig_image'][j], prob), target)


def evaluate_model(model, config, vocab, workdir, *, step):
  """Scores `model` on config.eval_split; writes WORKDIR/eval/metrics.{json,md}."""
  source = dataset_lib.load_source(config, config.eval_split)
  with_baselines = sources.has_all_objects(config.dataset)
  index = input_pipeline.sentence_index(source)
  total = len(index) if config.num_eval_examples < 0 else min(config.num_eval_examples, len(index))
  index, total = process_shard(index, total)
  eval_iter = input_pipeline.create_eval_iterator(
      source, vocab, batch_size=config.eval_batch_size, image_size=config.image_size,
      max_words=config.max_words, with_baselines=with_baselines, index=index,
      clip_radius=config.get('clip_radius'))
  scores = {name: metrics_lib.IoUAccumulator() for name in ('model', 'crf') + BASELINE_KEYS}
  scores['family'] = collections.defaultdict(metrics_lib.IoUAccumulator)
  progress = progress_lib.Progress('eval', total, unit='examples')
  done = 0
  for batch in eval_iter:
    probs = np.asarray(predict_probabilities(model, models.inputs(model, batch)))
    for j in np.flatnonzero(batch['valid'])[:total - done]:
      _score_example(batch, j, probs[j], scores, config.crf)
      done += 1
    progress.update(done)
    if done >= total:
      break
  progress.update(done, force=True)
  if jax.process_count() > 1:
    scores = _combine_processes(scores)

  results = scores['model'].result()
  if config.crf:
    results.update(scores['crf'].result(prefix='crf_'))
  if with_baselines:
    for key in BASELINE_KEYS:
      results[f'{key}_overall_iou'] = scores[key].result()['overall_iou']
  for (family, key), acc in sorted(scores['family'].items()):
    method = '' if key == 'model' else key + '_'
    results[f'family_{family}_{method}overall_iou'] = acc.result()['overall_iou']
  results['step'] = step
  _write(results, scores, config, workdir)
  return results


def process_shard(index, total):
  """This process's share of the first `total` expressions: every
  process_count-th one; returns (its index, its count)."""
  start, step = jax.process_index(), jax.process_count()
  shard = dataclasses.replace(index, pairs=index.pairs[:total][start::step],
                              texts=index.texts[:total][start::step])
  return shard, len(shard)


def _allgather_json(obj):
  """[obj of process 0, obj of process 1, ...] for a JSON-serializable obj."""
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.int32(data.size))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:data.size] = data
  gathered = multihost_utils.process_allgather(padded)
  return [json.loads(row[:n].tobytes()) for row, n in zip(gathered, sizes)]


def _combine_processes(scores):
  """Every process's accumulators summed into one (the same on every process)."""
  as_json = lambda acc: [acc.total_i, acc.total_u, acc.ious]
  local = {'keys': {k: as_json(v) for k, v in scores.items() if k != 'family'},
           'family': [[f, k, as_json(v)] for (f, k), v in scores['family'].items()]}
  combined = {k: metrics_lib.IoUAccumulator() for k in local['keys']}
  combined['family'] = collections.defaultdict(metrics_lib.IoUAccumulator)
  for part in _allgather_json(local):
    items = list(part['keys'].items()) + [((f, k), v) for f, k, v in part['family']]
    for key, (total_i, total_u, ious) in items:
      acc = combined['family'][key] if isinstance(key, tuple) else combined[key]
      acc.total_i += total_i
      acc.total_u += total_u
      acc.ious.extend(ious)
  return combined


def _write(results, scores, config, workdir):
  if jax.process_index() != 0:
    return
  out = os.path.join(workdir, config.get('eval_dir', 'eval'))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'metrics.json'), 'w') as f:
    json.dump(results, f, indent=2, sort_keys=True)
  rows = {'CMSA': scores['model'].result()}
  if config.crf:
    rows['CMSA + DenseCRF'] = scores['crf'].result()
  for key in BASELINE_KEYS:
    if scores[key].ious:
      rows[_row_name(key)] = scores[key].result()
  title = (f'{config.dataset} {config.eval_split}, step {results["step"]}, '
           f'{results["num_examples"]} expressions (%)\n\n')
  text = title + metrics_lib.markdown_table(rows)
  if scores['family']:
    text += '\nCMSA by expression family (%)\n\n' + metrics_lib.markdown_table(
        {family: acc.result() for (family, key), acc in sorted(scores['family'].items())
         if key == 'model'}, first='family')
    text += '\nOverall IoU by expression family, CMSA and baselines (%)\n\n' + _family_table(
        scores['family'])
  with open(os.path.join(out, 'metrics.md'), 'w') as f:
    f.write(text)
  logging.info('Evaluation:\n%s', text)


def _row_name(key):
  return 'CMSA' if key == 'model' else key.replace('_', ' ').replace('baseline ', 'baseline: ', 1)


def _family_table(family_scores):
  families = sorted({family for family, _ in family_scores})
  keys = [k for k in ('model',) + BASELINE_KEYS if (families[0], k) in family_scores]
  lines = ['| family | ' + ' | '.join(_row_name(k) for k in keys) + ' |',
           '|' + '---|' * (len(keys) + 1)]
  for family in families:
    ious = [100 * family_scores[family, k].result()['overall_iou'] for k in keys]
    lines.append(f'| {family} | ' + ' | '.join(f'{v:.2f}' for v in ious) + ' |')
  return '\n'.join(lines) + '\n'


ARCHITECTURE_KEYS = ('model', 'dtype', 'image_size', 'max_words')


def evaluate(config, workdir, *, step=None):
  """Restores a checkpoint (latest or `step`) and evaluates it.

  The model, its input size and the vocabulary always come from the checkpoint;
  the evaluation settings (data_dir, eval_split, crf, batch size) from `config`
  when given, else from the checkpoint too.
  """
  model, saved, vocab, step = checkpoints.restore_model(workdir, step)
  if config is None:
    config = saved
  else:
    config = config.copy_and_resolve_references()
    for key in ARCHITECTURE_KEYS:
      config[key] = saved[key]
  return evaluate_model(model, config, vocab, workdir, step=step)
