"""Dense vs factorized cross-modal self-attention (CMSA) at paper scale.

Times one CMSA level (Eq.2-5) both ways on the default JAX device: median
wall time after warm-up, peak memory from XLA's compiled memory analysis
(temp + output + argument bytes) and the relative difference
max|a - b| / max|b| of the outputs (pooled features and word weights).
Optionally also forward+backward (w.r.t. the parameters and the visual input)
at a size where the dense version still fits.

  python benchmarks/cmsa_attention.py                  # paper scale, fwd
  python benchmarks/cmsa_attention.py --grad_size 30   # + fwd+bwd at 30x30

Dense forward at 40x40 needs ~8.3 GiB; dense forward+backward ~6.2 GiB at
30x30 and ~17.4 GiB at 40x40 (compiled memory analysis), so keep repeats low.
  python benchmarks/cmsa_attention.py --json           # last line is JSON
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cmsa_jax.models import cmsa, kernels, multimodal


def _inputs(batch, words, size, visual_dim, word_dim, seed=0):
  rng = np.random.default_rng(seed)
  visual = rng.normal(size=(batch, size, size, visual_dim)).astype(np.float32)
  embed = rng.normal(size=(batch, words, word_dim)).astype(np.float32)
  mask = np.ones((batch, words), bool)
  return (kernels.l2_normalize(jnp.asarray(visual)),
          kernels.l2_normalize(jnp.asarray(embed)), jnp.asarray(mask))


def _forward(graphdef):
  def f(state, visual, words, mask):
    out = nnx.merge(graphdef, state)(visual, words, mask)
    return out.features, out.word_weights
  return f


def _forward_backward(graphdef):
  def loss(state, visual, words, mask):
    features, weights = _forward(graphdef)(state, visual, words, mask)
    # tanh then a plain sum: XLA:CPU's fused multiply-reduce is slow.
    return jnp.sum(jnp.tanh(features)) + jnp.sum(jnp.tanh(weights))
  return jax.grad(loss, argnums=(0, 1))


def memory_bytes(compiled):
  """Bytes a compiled function holds at once: temporaries, outputs and arguments."""
  m = compiled.memory_analysis()
  return m.temp_size_in_bytes + m.output_size_in_bytes + m.argument_size_in_bytes


def measure(fn, args, repeats):
  """(median seconds, peak bytes, output) of jit(fn)(*args)."""
  compiled = jax.jit(fn).lower(*args).compile()
  out = jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times)), memory_bytes(compiled), out


def max_rel_diff(a, b, *, as_one):
  """max |a - b| / max |b| per output leaf (worst leaf), or over all leaves
  together with as_one (for gradients: some are exactly zero in theory, e.g.
  a key bias shifts all logits of a query equally, so per-leaf ratios of
  rounding noise would mean nothing)."""
  if as_one:
    a, b = ([jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)])]
            for t in (a, b))
  return max(float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def compare(make_fn, *, batch, words, size, visual_dim, word_dim, attn_dim,
            repeats_dense, repeats_factorized, grads=False):
  """Runs make_fn(graphdef) for both impls with identical parameters."""
  args = _inputs(batch, words, size, visual_dim, word_dim)
  results = {}
  for impl, repeats in (('dense', repeats_dense),
                        ('factorized', repeats_factorized)):
    module = cmsa.CMSA(visual_dim, word_dim, attn_dim=attn_dim, impl=impl,
                       rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    results[impl] = measure(make_fn(graphdef), (state,) + args, repeats)
  (t_dense, m_dense, out_dense), (t_fact, m_fact, out_fact) = (
      results['dense'], results['factorized'])
  return dict(dense_s=t_dense, factorized_s=t_fact, speedup=t_dense / t_fact,
              dense_bytes=m_dense, factorized_bytes=m_fact,
              memory_ratio=m_dense / m_fact,
              max_rel_diff=max_rel_diff(out_fact, out_dense, as_one=grads))


def _print_row(name, r):
  print(f"{name:<28} {r['dense_s']:>9.3f} {r['factorized_s']:>9.4f} "
        f"{r['speedup']:>8.1f} {r['dense_bytes'] / 2**20:>10.1f} "
        f"{r['factorized_bytes'] / 2**20:>9.1f} {r['memory_ratio']:>7.1f} "
        f"{r['max_rel_diff']:>9.2e}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--words', type=int, default=20)
  parser.add_argument('--size', type=int, default=40, help='feature map side')
  parser.add_argument('--visual_dim', type=int, default=2048)
  parser.add_argument('--word_dim', type=int, default=1000)
  parser.add_argument('--attn_dim', type=int, default=512)
  parser.add_argument('--repeats_dense', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=10,
                      help='timed runs of the factorized version')
  parser.add_argument('--grad_size', type=int, default=0,
                      help='also time forward+backward at this side (0: skip)')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()

  dims = dict(batch=args.batch, words=args.words, visual_dim=args.visual_dim,
              word_dim=args.word_dim, attn_dim=args.attn_dim,
              repeats_dense=args.repeats_dense,
              repeats_factorized=args.repeats)
  device = str(jax.devices()[0].device_kind)
  shape = (f'B={args.batch} N={args.words} {args.size}x{args.size} '
           f'C={args.visual_dim + args.word_dim + multimodal.SPATIAL_DIM}'
           f'->{args.attn_dim}')
  print(f'device: {device}; {shape}')
  print(f"{'':<28} {'dense s':>9} {'fact. s':>9} {'speedup':>8} "
        f"{'dense MiB':>10} {'fact. MiB':>9} {'mem x':>7} {'rel diff':>9}")
  fwd = compare(_forward, size=args.size, **dims)
  _print_row(f'forward {args.size}x{args.size}', fwd)
  result = dict(fwd, device=device, shape=shape)
  if args.grad_size:
    bwd = compare(_forward_backward, size=args.grad_size, grads=True, **dims)
    _print_row(f'fwd+bwd {args.grad_size}x{args.grad_size}', bwd)
    result['grad'] = dict(bwd, size=args.grad_size)
  if args.json:
    print(json.dumps(result))


if __name__ == '__main__':
  main()
