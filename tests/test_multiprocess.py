"""Two JAX processes on this machine (coordinator on 127.0.0.1, CPU devices, gloo
collectives) against one process: the demo's train step on the same global batch,
orbax save/restore from both processes, and evaluation sharded across them."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow  # Subprocesses.

# argv: process_id, num_processes, coordinator port, workdir. One process runs
# without jax.distributed; the others each feed their shard of the stream.
_WORKER = textwrap.dedent('''
    import functools, json, os, sys, time
    import jax
    pid, nproc, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if nproc > 1:
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
      jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=nproc,
                                 process_id=pid, initialization_timeout=120)
    import numpy as np
    import orbax.checkpoint as ocp
    import helpers
    from cmsa_jax.data import input_pipeline, text
    from cmsa_jax.run import checkpoints, dataset, evaluate, state as state_lib, train
    config = helpers.make_tiny_config()  # The demo's, shrunk.
    config.num_eval_examples = 5  # Uneven shards: 3 + 2.
    source = dataset.load_source(config, config.train_split)
    index = input_pipeline.sentence_index(source)
    vocab = text.Vocabulary.build(index.texts)
    graphdef, state, tx = state_lib.create_train_state(config, len(vocab))
    local_batch = train.check_batch_size(config.batch_size)
    it = input_pipeline.create_train_iterator(
        source, vocab, batch_size=local_batch, image_size=config.image_size,
        max_words=config.max_words, seed=config.seed, shard_index=jax.process_index(),
        shard_count=jax.process_count(), index=index)
    repl, data = train.shardings(train.make_mesh())
    step = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx),
                   in_shardings=(repl, data), out_shardings=(repl, repl))
    state = train.replicate(state, repl)
    model_class = state_lib.model_class(config)
    batches = [train.global_batch(train.model_batch(next(it), model_class), data) for _ in range(2)]
    step = step.lower(state, batches[0]).compile()
    # All processes compiled: the first collective's set-up (gloo, 30 s) cannot time out.
    open(os.path.join(workdir, f'ready_{pid}'), 'w').close()
    while not all(os.path.exists(os.path.join(workdir, f'ready_{i}')) for i in range(nproc)):
      time.sleep(0.1)
    for batch in batches:
      state, metrics = step(state, batch)
    mngr = checkpoints.checkpoint_manager(config, workdir)
    mngr.save(2, args=checkpoints.checkpoint_items(state, config, vocab), force=True)
    mngr.wait_until_finished()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = mngr.restore(2, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract))).state
    mngr.close()
    params = {jax.tree_util.keystr(p): np.asarray(v)
              for p, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), state, restored))
    model = state_lib.merge_model(graphdef, jax.device_get(state))
    scores = evaluate.evaluate_model(model, config, vocab, workdir, step=2)
    np.savez(os.path.join(workdir, f'params_{pid}.npz'), **params)
    print(json.dumps({'process_count': jax.process_count(), 'device_count': jax.device_count(),
                      'local_batch': int(batch['image'].addressable_shards[0].data.shape[0]),
                      'loss': float(metrics['loss']), 'restored_equal': all(same),
                      'restored_sharding': str(jax.tree.leaves(restored)[0].sharding),
                      'eval': scores}))
''')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run(workdir, num_processes, cache):
  """Starts the worker in `num_processes` processes; returns their JSON results.

  They share a persistent compilation cache (`cache`): the model's eager
  initialisation compiles ~90 small programs, once instead of in every process.
  """
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=os.pathsep.join(
      [ROOT, os.path.join(ROOT, 'tests')]), JAX_COMPILATION_CACHE_DIR=str(cache),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0', JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  env.pop('XLA_FLAGS', None)  # One CPU device per process.
  port = str(_free_port())
  os.makedirs(workdir)
  procs = [subprocess.Popen([sys.executable, '-c', _WORKER, str(i), str(num_processes), port,
                             str(workdir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(num_processes)]
  outs = []
  try:
    for p in procs:
      stdout, stderr = p.communicate(timeout=300)
      assert p.returncode == 0, stderr[-3000:]
      outs.append(json.loads(stdout.strip().splitlines()[-1]))
  finally:
    for p in procs:
      p.kill()
  return outs


def test_two_processes_equal_one(tmp_path):
  single, = _run(tmp_path / 'single', 1, tmp_path / 'cache')
  pair = _run(tmp_path / 'pair', 2, tmp_path / 'cache')
  assert single['process_count'] == 1 and single['local_batch'] == 4
  for i, r in enumerate(pair):
    assert r['process_count'] == 2 and r['device_count'] == 2 and r['local_batch'] == 2
    # Each process holds the same replicated state, restored from the shared checkpoint.
    assert r['restored_equal'], r['restored_sharding']
    assert abs(r['loss'] - single['loss']) <= 1e-5
    params = np.load(tmp_path / 'pair' / f'params_{i}.npz')
    reference = np.load(tmp_path / 'single' / 'params_0.npz')
    assert sorted(params) == sorted(reference)
    for k in reference:
      np.testing.assert_allclose(params[k], reference[k], atol=1e-5, rtol=0, err_msg=k)
    # Each process scored its shard of the eval split; combined, the same as one process.
    assert r['eval']['num_examples'] == single['eval']['num_examples'] == 5
    assert r['eval'].keys() == single['eval'].keys()
    for k, v in single['eval'].items():
      assert r['eval'][k] == pytest.approx(v, abs=1e-9), k
  with open(tmp_path / 'pair' / 'eval' / 'metrics.json') as f:
    assert json.load(f) == pytest.approx(single['eval'])
  # Every expression's line, in evaluation order, whichever process scored it.
  samples = [(tmp_path / run / 'eval' / 'samples.jsonl').read_text() for run in ('single', 'pair')]
  assert samples[0] == samples[1] and len(samples[0].splitlines()) == 5
