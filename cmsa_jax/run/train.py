"""Training: a jitted train step data-parallel over every device, orbax checkpoints."""

import functools

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
from cmsa_jax.data import sources
from cmsa_jax.run import checkpoints
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


def train_step(state, batch, *, graphdef, tx):
  """One Adam step on the model's loss; returns the new state and batch metrics."""
  (loss, overall_iou), grads = loss_and_grads(state, batch, graphdef=graphdef)
  metrics = {'loss': loss, 'train_overall_iou': overall_iou,
             'grad_norm': optax.global_norm(grads)}
  return apply_gradients(state, grads, tx=tx), metrics


def make_mesh():
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def shardings(mesh):
  """(replicated, batch-split-on-'data') NamedShardings."""
  return (jax.NamedSharding(mesh, jax.P()), jax.NamedSharding(mesh, jax.P('data')))


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


def train_and_evaluate(config, workdir):
  """Trains (resuming from the latest checkpoint), then evaluates on config.eval_split."""
  local_batch = check_batch_size(config.batch_size)
  train_source = sources.load_source(config, config.train_split)
  index = input_pipeline.sentence_index(train_source)
  vocab = sources.build_vocabulary(config, workdir, index)
  graphdef, state, tx = state_lib.create_train_state(config, len(vocab))
  model_class = state_lib.model_class(config)
  mesh = make_mesh()
  replicated, data_sharding = shardings(mesh)

  train_iter = input_pipeline.create_train_iterator(
      train_source, vocab, batch_size=local_batch, image_size=config.image_size,
      max_words=config.max_words, seed=config.seed, num_workers=config.num_workers,
      shard_index=jax.process_index(), shard_count=jax.process_count(), index=index,
      clip_radius=config.get('clip_radius'))

  mngr = checkpoints.checkpoint_manager(config, workdir)
  if mngr.latest_step() is not None:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    import grain  # pylint: disable=g-import-not-at-top
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data_iter=grain.checkpoint.CheckpointRestore(train_iter)))
    state = restored.state
    logging.info('Resumed from step %d in %s.', int(state.step), workdir)
  state = jax.device_put(state, replicated)
  step_fn = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx),
                    in_shardings=(replicated, data_sharding),
                    out_shardings=(replicated, replicated), donate_argnums=(0,))

  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  first = int(state.step)
  if first == 0:
    writer.write_hparams(dict(config.to_dict(), num_devices=jax.device_count()))
  progress = progress_lib.Progress('train', config.num_train_steps, first=first)
  schedule = state_lib.learning_rate_schedule(config)
  history = []
  for step in range(first + 1, config.num_train_steps + 1):
    batch = global_batch(model_batch(next(train_iter), model_class), data_sharding)
    state, metrics = step_fn(state, batch)
    history.append(metrics)
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      summary = {k: float(np.mean([m[k] for m in history])) for k in history[0]}
      summary.update(learning_rate=float(schedule(step - 1)), steps_per_second=progress.rate)
      writer.write_scalars(step, summary)
      history = []
    progress.update(step)
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
      mngr.save(step, args=checkpoints.checkpoint_items(state, config, vocab, train_iter),
                force=True)
  mngr.wait_until_finished()
  mngr.close()

  model = state_lib.merge_model(graphdef, jax.device_get(state))
  metrics = evaluate.evaluate_model(model, config, vocab, workdir, step=int(state.step))
  writer.write_scalars(int(state.step), {f'eval/{k}': v for k, v in metrics.items()})
  writer.close()
  return metrics
