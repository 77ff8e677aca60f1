"""Evaluation at the original resolution by the evaluators `config.evals` names
(run/evaluators/): the paper's metrics, with and without DenseCRF, trivial
baselines where every object of a scene is known, per family or category, and
pictures for TensorBoard.

Writes WORKDIR/eval/samples.jsonl (one line per expression, in evaluation order:
record and sentence indices, expression, every evaluator's per-sample fields),
metrics.json (aggregates, each recomputable from samples.jsonl) and metrics.md.
"""

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
from cmsa_jax.run import dataset as dataset_lib
from cmsa_jax.run import evaluators as evaluators_lib
from cmsa_jax.run import metrics as metrics_lib
from cmsa_jax.run import writers
from cmsa_jax.run.evaluators import base
from cmsa_jax.run.evaluators import baselines


@nnx.jit
def predict_probabilities(model, inputs):
  """Foreground probabilities (B, H, W) at the model's input size."""
  return jax.nn.sigmoid(model(*inputs)['logits'])


def scored_example(batch, j, prob, position):
  """Example j of a batch, its probability map (input size) at the original size."""
  return base.Scored(
      position=position, record=int(batch['index'][j][0]), sentence=int(batch['index'][j][1]),
      text=batch['text'][j], prob=input_pipeline.unpad_and_resize(prob, batch['resize_info'][j]),
      target=batch['orig_mask'][j], image=batch['orig_image'][j],
      family=batch['family'][j] if 'family' in batch else None,
      baselines={name: batch[f'baseline_{name}'][j] for name in baselines.NAMES
                 if f'baseline_{name}' in batch})


def evaluator_names(config):
  """config.evals, without DenseCRF when config.crf is False."""
  names = config.get('evals', evaluators_lib.DEFAULT)
  return [n for n in names if n != 'crf' or config.crf]


def evaluate_model(model, config, vocab, workdir, *, step, writer=None):
  """Scores `model` on config.eval_split; writes WORKDIR/eval/samples.jsonl,
  metrics.json and metrics.md, and (with `writer`) the evaluators' pictures."""
  evaluators = evaluators_lib.create(evaluator_names(config))
  source = dataset_lib.load_source(config, config.eval_split)
  with_baselines = 'baselines' in evaluators and sources.has_all_objects(config.dataset)
  index = input_pipeline.sentence_index(source)
  total = len(index) if config.num_eval_examples < 0 else min(config.num_eval_examples, len(index))
  index, positions = process_shard(index, total)
  eval_iter = input_pipeline.create_eval_iterator(
      source, vocab, batch_size=config.eval_batch_size, image_size=config.image_size,
      max_words=config.max_words, with_baselines=with_baselines, index=index,
      clip_radius=config.get('clip_radius'))
  samples = []
  progress = progress_lib.Progress('eval', len(positions), unit='examples')
  for batch in eval_iter:
    probs = np.asarray(predict_probabilities(model, models.inputs(model, batch)))
    for j in np.flatnonzero(batch['valid'])[:len(positions) - len(samples)]:
      scored = scored_example(batch, j, probs[j], positions[len(samples)])
      sample = {'position': scored.position, 'record': scored.record,
                'sentence': scored.sentence, 'expression': scored.text}
      for evaluator in evaluators.values():
        sample.update(evaluator.update(scored))
      samples.append(sample)
    progress.update(len(samples))
    if len(samples) >= len(positions):
      break
  progress.update(len(samples), force=True)
  if jax.process_count() > 1:
    samples = merge_processes(samples, evaluators)

  results = {}
  for evaluator in evaluators.values():
    results.update(evaluator.results(samples))
  results['step'] = step
  if jax.process_index() == 0:
    _write(results, samples, evaluators, config, workdir)
    if writer is not None:
      for evaluator in evaluators.values():
        evaluator.write(writer, step)
  return results


def process_shard(index, total):
  """This process's share of the first `total` expressions, every process_count-th
  one: (its index, the evaluation-order positions of its expressions)."""
  start, step = jax.process_index(), jax.process_count()
  shard = dataclasses.replace(index, pairs=index.pairs[:total][start::step],
                              texts=index.texts[:total][start::step])
  return shard, list(range(total))[start::step]


def _allgather_json(obj):
  """[obj of process 0, obj of process 1, ...] for a JSON-serializable obj."""
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.int32(data.size))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:data.size] = data
  gathered = multihost_utils.process_allgather(padded)
  return [json.loads(row[:n].tobytes()) for row, n in zip(gathered, sizes)]


def merge_processes(samples, evaluators):
  """Every process's samples in evaluation order, and each evaluator merged with
  every process's state (the same on every process)."""
  parts = _allgather_json({'samples': samples,
                           'states': {k: e.state() for k, e in evaluators.items()}})
  for name, evaluator in evaluators.items():
    evaluator.merge([part['states'][name] for part in parts])
  return sorted((s for part in parts for s in part['samples']), key=lambda s: s['position'])


def _write(results, samples, evaluators, config, workdir):
  out = os.path.join(workdir, config.get('eval_dir', 'eval'))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'samples.jsonl'), 'w') as f:
    f.writelines(json.dumps(s, sort_keys=True) + '\n' for s in samples)
  with open(os.path.join(out, 'metrics.json'), 'w') as f:
    json.dump(results, f, indent=2, sort_keys=True)
  rows = {}
  for evaluator in evaluators.values():
    rows.update(evaluator.rows(samples))
  text = (f'{config.dataset} {config.eval_split}, step {results["step"]}, '
          f'{results["num_examples"]} expressions (%)\n\n' + metrics_lib.markdown_table(rows))
  text += ''.join(evaluator.markdown(samples) for evaluator in evaluators.values())
  text += '\n' + metrics_lib.DEFINITIONS
  with open(os.path.join(out, 'metrics.md'), 'w') as f:
    f.write(text)
  logging.info('Evaluation:\n%s', text)


ARCHITECTURE_KEYS = ('model', 'dtype', 'image_size', 'max_words')


def evaluate(config, workdir, *, step=None):
  """Restores a checkpoint (latest or `step`) and evaluates it.

  The model, its input size and the vocabulary always come from the checkpoint;
  the evaluation settings (data_dir, eval_split, crf, evals, batch size) from
  `config` when given, else from the checkpoint too. Pictures and metrics go to
  TensorBoard in WORKDIR too.
  """
  model, saved, vocab, step = checkpoints.restore_model(workdir, step)
  if config is None:
    config = saved
  else:
    config = config.copy_and_resolve_references()
    for key in ARCHITECTURE_KEYS:
      config[key] = saved[key]
  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  metrics = evaluate_model(model, config, vocab, workdir, step=step, writer=writer)
  writer.write_scalars(step, writers.eval_scalars(metrics, config.get('eval_dir', 'eval')))
  writer.close()
  return metrics
