"""Dense vs blocked cross-frame self-attention (CFSA, Eq.9-11).

One CFSA level (Res5: C = 2048 -> attn_dim 512) over a clip of T = 2τ+1 frames,
forward+backward (gradients w.r.t. the parameters: the backbone below it is frozen,
as in the paper, so no gradient flows into the visual features), on the
default JAX device: median wall time after warm-up, peak memory from XLA's
compiled memory analysis (temp + output + argument bytes, as
benchmarks/cmsa_attention.py) and max|a - b| / max|b| over all gradients.

  python benchmarks/cfsa_attention.py --json     # last line is JSON

compares both at --size (default: paper scale, 11 frames x 40x40 = 17,600 tokens;
dense needs ~6.2 GiB there), then, with --paper_size > 0, runs the blocked one
alone at that side and compiles, without running, the dense one there for its
memory (for a machine where dense does not fit at --size). --tokens / --values
choose the CFSA (default: the video demo's, configs/demo_video.py).
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import cmsa_attention  # The CMSA benchmark's timing and memory helpers.
from cmsa_jax.models import cfsa, kernels


def _inputs(batch, frames, size, visual_dim, seed=0):
  visual = np.random.default_rng(seed).normal(size=(batch, frames, size, size, visual_dim))
  return kernels.l2_normalize(jnp.asarray(visual, jnp.float32)), jnp.ones((batch, frames), bool)


def _grad_fn(graphdef):
  def loss(state, visual, frame_mask):  # Differentiated w.r.t. state only.
    out = nnx.merge(graphdef, state)(visual, frame_mask)
    # tanh then a plain sum: XLA:CPU's fused multiply-reduce is slow.
    return (jnp.sum(jnp.tanh(out.features)) + jnp.sum(jnp.tanh(out.frame_weights))
            + jnp.sum(jnp.tanh(out.frame_attention)))
  return jax.grad(loss)


def _split(impl, args):
  module = cfsa.CFSA(args.visual_dim, attn_dim=args.attn_dim, impl=impl, tokens=args.tokens,
                     values=args.values, rngs=nnx.Rngs(0))
  return nnx.split(module)


def compare(args):
  """Both implementations with identical parameters at --size."""
  inputs = _inputs(args.batch, args.frames, args.size, args.visual_dim)
  results = {}
  for impl, repeats in (('dense', args.repeats_dense), ('blocked', args.repeats)):
    graphdef, state = _split(impl, args)
    results[impl] = cmsa_attention.measure(_grad_fn(graphdef), (state,) + inputs, repeats)
  (t_dense, m_dense, g_dense), (t_blocked, m_blocked, g_blocked) = (
      results['dense'], results['blocked'])
  return dict(dense_s=t_dense, blocked_s=t_blocked, speedup=t_dense / t_blocked,
              dense_bytes=m_dense, blocked_bytes=m_blocked, memory_ratio=m_dense / m_blocked,
              max_rel_diff=cmsa_attention.max_rel_diff(g_blocked, g_dense, as_one=True))


def paper_scale(args):
  """Blocked forward+backward at --paper_size, and the dense one's compiled memory."""
  inputs = _inputs(args.batch, args.frames, args.paper_size, args.visual_dim)
  graphdef, state = _split('blocked', args)
  seconds, blocked_bytes, _ = cmsa_attention.measure(_grad_fn(graphdef), (state,) + inputs,
                                                      args.repeats_paper)
  graphdef, state = _split('dense', args)
  dense = jax.jit(_grad_fn(graphdef)).lower(state, *inputs).compile()
  return dict(size=args.paper_size, blocked_s=seconds, blocked_bytes=blocked_bytes,
              dense_bytes_compiled=cmsa_attention.memory_bytes(dense))


def _shape(args, size):
  extra = f'+{cfsa.TIME_DIM + 8}' if args.tokens == 'position' else ''
  return (f'B={args.batch} T={args.frames} {size}x{size} C={args.visual_dim}{extra}'
          f'->{args.attn_dim} tokens={args.tokens} values={args.values}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--frames', type=int, default=11, help='2τ+1')
  parser.add_argument('--size', type=int, default=40,
                      help='feature side, dense vs blocked (40: the paper\'s 320 px input)')
  parser.add_argument('--paper_size', type=int, default=0,
                      help='feature side, blocked alone (0: skip)')
  parser.add_argument('--tokens', choices=cfsa.TOKENS, default='relative')
  parser.add_argument('--values', choices=cfsa.VALUES, default='linear')
  parser.add_argument('--visual_dim', type=int, default=2048)
  parser.add_argument('--attn_dim', type=int, default=512)
  parser.add_argument('--repeats_dense', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=3, help='timed runs of the blocked version')
  parser.add_argument('--repeats_paper', type=int, default=1)
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()

  device = str(jax.devices()[0].device_kind)
  mib = lambda b: b / 2**20
  print(f'device: {device}; forward+backward of one CFSA level')
  result = dict(compare(args), device=device, shape=_shape(args, args.size))
  print(f"{_shape(args, args.size)}: dense {result['dense_s']:.2f} s {mib(result['dense_bytes']):.0f} MiB, "
        f"blocked {result['blocked_s']:.2f} s {mib(result['blocked_bytes']):.0f} MiB; "
        f"speedup {result['speedup']:.2f}x, memory ratio {result['memory_ratio']:.1f}x, "
        f"max rel diff {result['max_rel_diff']:.1e}")
  if args.paper_size:
    paper = paper_scale(args)
    print(f"{_shape(args, args.paper_size)}: blocked {paper['blocked_s']:.2f} s "
          f"{mib(paper['blocked_bytes']):.0f} MiB; dense would need "
          f"{mib(paper['dense_bytes_compiled']):.0f} MiB (compiled, not run)")
    result['paper'] = dict(paper, shape=_shape(args, args.paper_size))
  if args.json:
    print(json.dumps(result))


if __name__ == '__main__':
  main()
