"""Training: a jitted train step data-parallel over every device, orbax checkpoints.

Reliability: SIGTERM or SIGINT (preemption, Ctrl-C) saves a checkpoint at the
current step, with the data iterator's position, and returns; the same command
resumes exactly there. A non-finite loss or gradient stops training naming the
step and the last good checkpoint, or with config.skip_nonfinite_steps the step
is skipped (parameters and optimizer state unchanged) and counted.
"""

import functools
import signal

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from cmsa_jax import errors
from cmsa_jax import models
from cmsa_jax import progress as progress_lib
from cmsa_jax.data import input_pipeline
from cmsa_jax.run import checkpoints
from cmsa_jax.run import dataset as dataset_lib
from cmsa_jax.run import evaluate
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import writers



def model_batch(batch, model_class):
  """The arrays of an input batch the train step reads: the model's inputs and target."""
  return {k: batch[k] for k in model_class.input_keys + (model_class.target_key,)}


def loss_and_grads(state, batch, *, graphdef):
  """((loss, overall IoU of the batch), gradients w.r.t. the trained parameters)."""

  def loss_fn(params):
    model = state_lib.merge_model(graphdef, state.replace(params=params))
    outputs = model(*models.inputs(model, batch))
    pred, target = outputs['logits'] > 0, batch[model.target_key] > 0.5
    overall_iou = jnp.sum(pred & target) / jnp.maximum(jnp.sum(pred | target), 1)
    return model.loss(outputs, batch), overall_iou

  return jax.value_and_grad(loss_fn, has_aux=True)(state.params)


def apply_gradients(state, grads, *, tx):
  """The optimizer step: the state one step on."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state)


def train_step(state, batch, *, graphdef, tx, skip_nonfinite=False):
  """One Adam step on the model's loss; returns the new state and batch metrics.

  metrics['nonfinite'] is 1 where the loss or a gradient is not finite; with
  `skip_nonfinite` such a step leaves parameters and optimizer state as they were.
  """
  (loss, overall_iou), grads = loss_and_grads(state, batch, graphdef=graphdef)
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  new_state = apply_gradients(state, grads, tx=tx)
  if skip_nonfinite:
    keep = lambda new, old: jnp.where(finite, new, old)
    new_state = new_state.replace(params=jax.tree.map(keep, new_state.params, state.params),
                                  opt_state=jax.tree.map(keep, new_state.opt_state,
                                                         state.opt_state))
  metrics = {'loss': loss, 'train_overall_iou': overall_iou, 'grad_norm': grad_norm,
             'nonfinite': 1 - finite.astype(jnp.int32)}
  return new_state, metrics


def make_mesh():
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def shardings(mesh):
  """(replicated, batch-split-on-'data') NamedShardings."""
  return (jax.NamedSharding(mesh, jax.P()), jax.NamedSharding(mesh, jax.P('data')))


def replicate(tree, replicated):
  """Puts a pytree every host holds identically on every device (as jax.device_put
  would, without its cross-host equality check: one collective per array)."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(replicated, np.asarray(x)), tree)


def global_batch(local_batch, data_sharding):
  """Assembles each host's slice of the batch into one global array per key."""
  return {k: jax.make_array_from_process_local_data(data_sharding, np.asarray(v))
          for k, v in local_batch.items()}


def check_batch_size(batch_size, name='batch_size'):
  if batch_size < 1 or batch_size % jax.device_count():
    raise errors.ConfigError(
        f'config.{name}={batch_size} must be a positive multiple of the device count '
        f'({jax.device_count()}): the global batch is split evenly across devices. '
        f'Set --config.{name}={max(jax.device_count(), batch_size // jax.device_count() * jax.device_count())}.')
  return batch_size // jax.process_count()


class PreemptionFlag:
  """Notes SIGTERM / SIGINT while entered; the loop checks `signal` after each step.

  A second SIGINT stops at once (KeyboardInterrupt). With several JAX processes
  the handlers are not installed: the processes must agree on the step to save,
  which orbax's `reached_preemption` (JAX's preemption sync service) provides.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal = signal.Signals(signum).name
    logging.warning('Received %s: saving a checkpoint after this step, then stopping '
                    '(a second Ctrl-C stops at once).', self.signal)

  def __enter__(self):
    if jax.process_count() == 1:
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


def _skipped(pending, skip_nonfinite, mngr):
  """Steps of `pending` [(step, metrics)] with a non-finite loss or gradient.

  Without `skip_nonfinite` the first one raises errors.NumericalError naming it
  and the last checkpoint (saved before it, so good). Reading the flags here,
  not every step, keeps the host from waiting on each step.
  """
  bad = [(step, m) for step, m in pending if int(m['nonfinite'])]
  if bad and not skip_nonfinite:
    step, m = bad[0]
    mngr.wait_until_finished()
    last = mngr.latest_step()
    where = ('no checkpoint was saved before it' if last is None else
             f'the last good checkpoint is {mngr.directory}/{last} (--mode=eval --step={last} '
             'loads it; training again resumes from it)')
    raise errors.NumericalError(
        f'non-finite loss or gradient at step {step} (loss={float(m["loss"])}, '
        f'grad_norm={float(m["grad_norm"])}); {where}. Lower config.learning_rate, or set '
        '--config.skip_nonfinite_steps=True to skip such steps.')
  for step, _ in bad:
    logging.warning('Skipped step %d: non-finite loss or gradient; parameters and optimizer '
                    'state unchanged.', step)
  return len(bad)


def _summary(history):
  """Mean of each metric over the steps whose loss and gradient were finite."""
  kept = [m for m in history if not int(m['nonfinite'])] or history
  return {k: float(np.mean([m[k] for m in kept])) for k in kept[0] if k != 'nonfinite'}


def train_and_evaluate(config, workdir):
  """Trains (resuming from the latest checkpoint), then evaluates on config.eval_split.

  Returns the evaluation metrics, or None when a signal stopped training early.
  """
  checkpoints.check_writable(workdir)
  local_batch = check_batch_size(config.batch_size)
  # A text encoder's own tokenizer (read first: a missing file stops before the index is
  # built), or the dataset's vocabulary.
  vocab = state_lib.text_tokenizer(config)
  train_source = dataset_lib.load_source(config, config.train_split)
  index = input_pipeline.sentence_index(train_source)
  if vocab is None:
    vocab = dataset_lib.vocabulary(config, workdir, index)
  graphdef, state, tx = state_lib.create_train_state(config, len(vocab))
  checkpoints.check_free_space(workdir, state)
  model_class = state_lib.model_class(config)
  mesh = make_mesh()
  replicated, data_sharding = shardings(mesh)

  train_iter = input_pipeline.create_train_iterator(
      train_source, vocab, batch_size=local_batch, image_size=config.image_size,
      max_words=config.max_words, seed=config.seed, num_workers=config.num_workers,
      shard_index=jax.process_index(), shard_count=jax.process_count(), index=index,
      clip_radius=config.get('clip_radius'))

  mngr = checkpoints.checkpoint_manager(config, workdir)
  state = checkpoints.resume(mngr, workdir, state, train_iter)
  state = replicate(state, replicated)
  skip_nonfinite = config.get('skip_nonfinite_steps', False)
  step_fn = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx,
                                      skip_nonfinite=skip_nonfinite),
                    in_shardings=(replicated, data_sharding),
                    out_shardings=(replicated, replicated), donate_argnums=(0,))

  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  first = int(state.step)
  if first == 0:
    writer.write_hparams(dict(config.to_dict(), num_devices=jax.device_count()))
  progress = progress_lib.Progress('train', config.num_train_steps, first=first)
  schedule = state_lib.learning_rate_schedule(config)
  history, pending, num_skipped, preempted = [], [], 0, False
  with PreemptionFlag() as preemption:
    for step in range(first + 1, config.num_train_steps + 1):
      batch = global_batch(model_batch(next(train_iter), model_class), data_sharding)
      state, metrics = step_fn(state, batch)
      history.append(metrics)
      pending.append((step, metrics))
      preempted = preemption.signal or mngr.reached_preemption(step)
      save = (step % config.checkpoint_every_steps == 0 or step == config.num_train_steps
              or preempted)
      if step % config.log_every_steps == 0 or save:
        num_skipped += _skipped(pending, skip_nonfinite, mngr)
        pending = []
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        summary = _summary(history)
        summary.update(learning_rate=float(schedule(step - 1)), steps_per_second=progress.rate,
                       skipped_nonfinite_steps=num_skipped)
        writer.write_scalars(step, summary)
        history = []
      progress.update(step)
      if save:
        mngr.save(step, args=checkpoints.checkpoint_items(state, config, vocab, train_iter),
                  force=True)
      if (config.get('eval_every_steps') and step % config.eval_every_steps == 0
          and step < config.num_train_steps and not preempted):
        evaluate_and_log(state_lib.merge_model(graphdef, jax.device_get(state)), config, vocab,
                         workdir, step, writer)
      if preempted:
        break
  mngr.wait_until_finished()
  mngr.close()
  if preempted and step < config.num_train_steps:
    writer.close()
    logging.warning('Stopped by %s at step %d: checkpoint saved in %s/%d; run the same command '
                    'again to resume.', preemption.signal or 'preemption', step, mngr.directory,
                    step)
    return None

  model = state_lib.merge_model(graphdef, jax.device_get(state))
  metrics = evaluate_and_log(model, config, vocab, workdir, int(state.step), writer)
  writer.close()
  return metrics


def evaluate_and_log(model, config, vocab, workdir, step, writer):
  """Evaluates `model` (WORKDIR/eval/) and writes the metrics and pictures to `writer`."""
  metrics = evaluate.evaluate_model(model, config, vocab, workdir, step=step, writer=writer)
  writer.write_scalars(step, writers.eval_scalars(metrics))
  return metrics
