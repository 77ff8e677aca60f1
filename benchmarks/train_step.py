r"""Train-step speed of a config on this device, against a dense matmul (our roofline).

  python benchmarks/train_step.py --config=configs/gref.py --batch_size=1 --json
  python benchmarks/train_step.py --config=configs/demo.py --find_max_batch
  python benchmarks/train_step.py --config=configs/demo_video.py --json

Builds the config's real train step (train.train_step, jitted with train.py's
shardings over every device, state donated) and runs it on random inputs of the
config's shapes. Reports images/s, the median step time after warm-up, the
compiled program's peak memory and FLOPs (XLA's cost analysis), and the achieved
FLOP/s as a fraction of a dense (n x n) @ (n x n) matmul timed in the same run,
in the config's compute dtype. In the same run (interleaved) it times the backbone forward
alone and everything after it (Eq.1-8: CMSA, GMLF, loss; for video also CFSA)
forward + backward alone, and for video the CFSA levels' forward + backward
alone, so the report says where the step's time goes; with the frozen backbone
(the paper's setting) step ~ backbone forward + head forward/backward + Adam.

`--find_max_batch` compiles (does not run) the step for growing global batches
and reports the largest whose peak memory fits the device (host RAM on CPU).
FLOPs and memory are per device (XLA's partitioned program).
"""

import functools
import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/.
from cmsa_jax import models  # pylint: disable=g-import-not-at-top
from cmsa_jax.models import cmsa_image
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/demo.py', 'Config to measure.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Global batch (default: the config\'s).')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed runs of each program after compiling.')
_ITERS = flags.DEFINE_integer('iters', 3, 'Timed runs of each program (median reported).')
_VOCAB_SIZE = flags.DEFINE_integer('vocab_size', 10_000, 'Vocabulary (embedding rows); '
                                   'G-Ref and RefCOCO have ~10k words.')
_MATMUL_SIZE = flags.DEFINE_integer('matmul_size', None,
                                    'n of the roofline matmul (default 2048 on CPU, else 8192).')
_FIND_MAX_BATCH = flags.DEFINE_bool('find_max_batch', False,
                                    'Report the largest global batch that fits per device.')
_JSON = flags.DEFINE_bool('json', False, 'Print the results as JSON on the last line.')


def random_batch(config, batch_size, vocab_size, seed=0):
  """Model inputs and target of the config's shapes (what the input pipeline yields)."""
  rng = np.random.default_rng(seed)
  s, n = config.image_size, config.max_words
  batch = {'image': rng.integers(0, 256, (batch_size, s, s, 3), dtype=np.uint8),
           'tokens': rng.integers(2, vocab_size, (batch_size, n), dtype=np.int32),
           'token_mask': np.arange(n)[None] < rng.integers(n // 2, n + 1, (batch_size, 1)),
           'mask': (rng.uniform(size=(batch_size, s, s)) > 0.7).astype(np.float32)}
  if config.get('clip_radius') is not None:  # Video: the clip around the annotated frame.
    t = 2 * config.clip_radius + 1
    batch['frames'] = rng.integers(0, 256, (batch_size, t, s, s, 3), dtype=np.uint8)
    batch['frame_mask'] = np.ones((batch_size, t), bool)
  return batch


def median_ms(programs):
  """{name: median wall time (ms)} of the argument-free `programs` {name: fn}.

  After warm-up, the programs run in interleaved rounds, so a change in the
  machine's load affects all of them alike; their outputs are awaited.
  """
  for fn in programs.values():
    for _ in range(_WARMUP.value):
      jax.block_until_ready(fn())
  times = {name: [] for name in programs}
  for _ in range(_ITERS.value):
    for name, fn in programs.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def peak_bytes(compiled):
  stats = compiled.memory_analysis()
  return int(stats.peak_memory_in_bytes or (stats.argument_size_in_bytes + stats.output_size_in_bytes
                                            + stats.temp_size_in_bytes - stats.alias_size_in_bytes))


def flops(compiled):
  cost = compiled.cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost).get('flops', 0.0))


def matmul_program(dtype):
  """(FLOPs, program) of a dense square matmul on one device in `dtype`."""
  n = _MATMUL_SIZE.value or (2048 if jax.devices()[0].platform == 'cpu' else 8192)
  a = jax.device_put(jnp.ones((n, n), dtype), jax.devices()[0])
  matmul = jax.jit(lambda a, b: a @ b)
  return 2 * n**3, lambda: matmul(a, a)


class Step:
  """The config's train step and its two parts, jitted as train.py does."""

  def __init__(self, config, vocab_size):
    self.config = config
    self.graphdef, state, self.tx = state_lib.create_train_state(config, vocab_size)
    self.replicated, self.data = train.shardings(train.make_mesh())
    self.state = train.replicate(state, self.replicated)
    self.jitted = jax.jit(functools.partial(train.train_step, graphdef=self.graphdef, tx=self.tx),
                          in_shardings=(self.replicated, self.data),
                          out_shardings=(self.replicated, self.replicated), donate_argnums=(0,))

  def batch(self, batch_size):
    return train.global_batch(random_batch(self.config, batch_size, _VOCAB_SIZE.value), self.data)

  def compile(self, batch):
    return self.jitted.lower(self.state, batch).compile()

  def model(self, state):
    return state_lib.merge_model(self.graphdef, state)

  def backbone_forward(self, state, batch):
    model = self.model(state)
    if 'frames' in model.input_keys:  # Video: every frame CFSA reads.
      return model.features(batch['frames'])
    return model.backbone(cmsa_image.normalize_images(batch['image']))

  def head_forward_backward(self, state, features, batch):
    """Loss and gradients of everything after the backbone, from its features."""

    def loss_fn(params):
      model = self.model(state.replace(params=params))
      size = batch['image'].shape[1:3]
      if 'frames' in model.input_keys:
        outputs = model.head(features, *models.inputs(model, batch)[1:], size)
      else:
        outputs = model.decode(features, *models.inputs(model, batch)[1:], size)
      return model.loss(outputs, batch)

    return jax.value_and_grad(loss_fn)(state.params)

  def cfsa_forward_backward(self, state, features, batch):
    """Gradients of the video model's CFSA levels alone (a stand-in loss on V_c + V̂)."""

    def loss_fn(params):
      model = self.model(state.replace(params=params))
      return sum(jnp.sum(jnp.tanh(layer(model.normalize(features[level]),
                                        batch['frame_mask']).features))
                 for level, layer in zip(model.levels, model.cfsa))

    return jax.value_and_grad(loss_fn)(state.params)


def measure(step, batch_size):
  """The benchmark's numbers for one global batch size."""
  batch = step.batch(batch_size)
  compiled = step.compile(batch)
  state = step.state

  def run():
    nonlocal state
    state, metrics = compiled(state, batch)
    return metrics

  matmul_flops, programs = matmul_program(jnp.dtype(step.config.dtype))
  programs = {'step': run, 'matmul': programs}
  backbone = jax.jit(step.backbone_forward, in_shardings=(step.replicated, step.data))
  backbone = backbone.lower(state, batch).compile()
  programs['backbone'] = lambda: backbone(state, batch)
  head = cfsa_program = None
  if hasattr(step.model(state), 'decode'):  # Models with a backbone / head split.
    features = backbone(state, batch)
    head = jax.jit(step.head_forward_backward).lower(state, features, batch).compile()
    programs['head'] = lambda: head(state, features, batch)
    if getattr(step.model(state), 'use_cfsa', False):
      cfsa_program = jax.jit(step.cfsa_forward_backward).lower(state, features, batch).compile()
      programs['cfsa'] = lambda: cfsa_program(state, features, batch)
  ms = median_ms(programs)
  step.state = state
  step_ms, backbone_ms = ms['step'], ms['backbone']
  step_flops = flops(compiled)
  tflops = step_flops / step_ms / 1e9
  peak_matmul = matmul_flops / ms['matmul'] / 1e9
  return {
      'images_per_s': batch_size / step_ms * 1e3,
      'step_ms': step_ms,
      'flops_per_step': step_flops * jax.device_count(),
      'achieved_tflops': tflops * jax.device_count(),
      'matmul_tflops': peak_matmul * jax.device_count(),
      'fraction_of_matmul': tflops / peak_matmul,
      'peak_bytes': peak_bytes(compiled),
      'backbone_fwd_ms': backbone_ms,
      'head_fwd_bwd_ms': ms.get('head'),
      'cfsa_fwd_bwd_ms': ms.get('cfsa'),
      'backbone_fwd_flops': flops(backbone) * jax.device_count(),
      'head_fwd_bwd_flops': head and flops(head) * jax.device_count(),
      'cfsa_fwd_bwd_flops': cfsa_program and flops(cfsa_program) * jax.device_count(),
      'step_over_backbone_fwd': step_ms / backbone_ms,
  }


def device_bytes():
  """Memory one device may use: its allocator's limit, or the host's RAM on CPU."""
  stats = jax.devices()[0].memory_stats() or {}
  if 'bytes_limit' in stats:
    return int(stats['bytes_limit'])
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def find_max_batch(step, limit=1 << 14):
  """Largest global batch (a multiple of the device count, at most `limit`) whose
  step fits a device."""
  unit = jax.device_count()
  fits = lambda b: peak_bytes(step.compile(step.batch(b))) <= device_bytes()
  low, high = 0, unit  # fits(low) (or low == 0); grows until high does not fit.
  while fits(high):
    low, high = high, 2 * high
    print(f'global batch {low} fits', flush=True)
    if high > limit:
      return low
  while high - low > unit:
    mid = (low + high) // 2 // unit * unit
    low, high = (mid, high) if fits(mid) else (low, mid)
  return low


def main(argv):
  del argv
  config = _CONFIG.value
  batch_size = _BATCH_SIZE.value or config.batch_size
  train.check_batch_size(batch_size)
  step = Step(config, _VOCAB_SIZE.value)
  result = measure(step, batch_size)
  backbone_args = state_lib.model_args(config)['backbone_args']
  result.update(device=f'{jax.device_count()} x {jax.devices()[0].device_kind}',
                config=config.dataset, batch_size=batch_size, image_size=config.image_size,
                max_words=config.max_words, dtype=config.dtype,
                freeze_backbone=backbone_args.get('frozen', True),
                remat_backbone=backbone_args.get('remat', 'none'),
                remat_cmsa=config.model.get('remat_cmsa', 'none'))
  if _FIND_MAX_BATCH.value:
    result['max_global_batch'] = find_max_batch(step)
  for key, value in result.items():
    print(f'{key}: {value:.4g}' if isinstance(value, float) else f'{key}: {value}')
  if _JSON.value:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == '__main__':
  app.run(main)
