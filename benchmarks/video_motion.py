"""Is motion readable, and can CFSA carry it? Probes on the synthetic video clips.

The motion label of each shape of `cmsa_jax/data/synthetic_video.py` has three
factors: kind (still / stops / moves), direction (none / left / right / up /
down) and speed (none / slow / fast). From the demo's frozen backbone
(configs/demo_video.py) this script reads each shape's features as the mean over
the cells its annotated-frame mask covers (area-weighted at the feature grid),
then

  --mode=probe  fits a linear (softmax) probe per factor on those features in
                every frame of the clip ('clip', T x C inputs) and in the
                annotated frame alone ('frame', C inputs);
  --mode=cfsa   trains a CFSA level alone (cfsa.CFSA on the frozen, L2-normalized
                features of the clip; its V_c + V̂ read as above; a linear head per
                factor) for each --variants entry ('none' = V_c alone: the
                frame-only model; else TOKENS:VALUES of cfsa.CFSA).

Prints held-out accuracy per factor, 'all' (every factor right) and 'all_twins'
('all' among the shapes another shape of the clip looks like), with the
majority-class rate; the last line is JSON.

  python benchmarks/video_motion.py --mode=probe
  python benchmarks/video_motion.py --mode=cfsa --levels=res3 --cache_dir=/tmp/vm
      # default variants: none, the paper's visual:linear, position:linear,
      # relative:linear (the video demo's), relative:moments
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/.
from cmsa_jax.data import synthetic_video  # pylint: disable=g-import-not-at-top
from cmsa_jax.models import cfsa
from cmsa_jax.models import cmsa_image
from cmsa_jax.models import backbones
from cmsa_jax.models import kernels
from configs import demo

FACTORS = {'kind': ('still', 'stops', 'moves'),
           'direction': ('',) + tuple(synthetic_video.DIRECTIONS),
           'speed': ('none', 'slow', 'fast')}
STRIDE = 8


def labels_of(mover, image_size):
  speed = 'none'
  if mover.direction:
    slow = synthetic_video.SPEEDS['slow'] * image_size / 64
    speed = 'slow' if abs(mover.speed - slow) < 1e-6 else 'fast'
  return (FACTORS['kind'].index(mover.motion), FACTORS['direction'].index(mover.direction),
          FACTORS['speed'].index(speed))


def clips(split, num, args):
  """Frames (N, T, S, S, 3), per-shape cell weights (N, K, h, w), labels (N, K, 3), valid
  (N, K) and twin (N, K): another shape of the clip looks the same (shape, colour, size)."""
  grid = args.image_size // STRIDE
  k_max = synthetic_video.MAX_OBJECTS
  frames, cells, labels = [], np.zeros((num, k_max, grid, grid), np.float32), np.zeros(
      (num, k_max, 3), np.int32)
  valid, twin = np.zeros((num, k_max), bool), np.zeros((num, k_max), bool)
  for i in range(num):
    movers, clip, label_maps, _ = synthetic_video.sample_clip(
        args.seed, split, i, image_size=args.image_size, clip_radius=args.clip_radius)
    frames.append(clip)
    c = args.clip_radius
    for k, mover in enumerate(movers):
      area = (label_maps[c] == k).reshape(grid, STRIDE, grid, STRIDE).mean((1, 3))
      cells[i, k] = area / max(area.sum(), 1e-9)
      labels[i, k] = labels_of(mover, args.image_size)
      valid[i, k] = True
      twin[i, k] = sum((m.shape, m.color, m.size) == (mover.shape, mover.color, mover.size)
                       for m in movers) > 1
  return np.stack(frames), cells, labels, valid, twin


def backbone_features(frames, levels):
  """Frozen demo backbone on every frame: {level: (N, T, h, w, C)} float32."""
  config = demo.get_config()
  net = backbones.REGISTRY.build(config.model.backbone, config.model.backbone_args,
                                 rngs=nnx.Rngs(0))
  net.load(config.backbone_init)
  run = nnx.jit(lambda net, x: net(cmsa_image.normalize_images(x)))
  n, t = frames.shape[:2]
  out = {level: [] for level in levels}
  flat = frames.reshape((n * t,) + frames.shape[2:])
  for start in range(0, n * t, 200):
    feats = run(net, jnp.asarray(flat[start:start + 200]))
    for level in levels:
      out[level].append(np.asarray(feats[level]))
  return {level: np.concatenate(x).reshape((n, t) + x[0].shape[1:]) for level, x in out.items()}


def _accuracy(logits, labels, valid, twin):
  """Per factor, 'all' factors right, and 'all_twins': all right among the shapes
  whose look another shape of the clip shares (only motion tells them apart)."""
  right = np.stack([np.argmax(l, -1) == labels[..., f] for f, l in enumerate(logits)], -1)
  result = {name: float(right[..., f][valid].mean()) for f, name in enumerate(FACTORS)}
  result['all'] = float(right.all(-1)[valid].mean())
  result['all_twins'] = float(right.all(-1)[valid & twin].mean())
  return result


def majority(labels, valid):
  out = {name: float(np.bincount(labels[..., f][valid]).max() / valid.sum())
         for f, name in enumerate(FACTORS)}
  joint = labels[valid] @ np.array([100, 10, 1])
  out['all'] = float(np.bincount(joint).max() / valid.sum())
  return out


def fit_heads(train_x, train_y, train_valid, test_x, *, steps, lr, decay):
  """Softmax regression per factor on standardized features: test logits."""
  mean, std = train_x[train_valid].mean(0), train_x[train_valid].std(0) + 1e-6
  x = jnp.asarray((train_x - mean) / std)
  xt = jnp.asarray((test_x - mean) / std)
  dims = [len(v) for v in FACTORS.values()]
  params = [(jnp.zeros((x.shape[-1], d)), jnp.zeros((d,))) for d in dims]
  tx = optax.adam(lr)
  opt = tx.init(params)
  w = jnp.asarray(train_valid, jnp.float32)

  def loss(params):
    total = 0.0
    for f, (kernel, bias) in enumerate(params):
      ce = optax.softmax_cross_entropy_with_integer_labels(x @ kernel + bias, train_y[..., f])
      total += jnp.sum(ce * w) / jnp.sum(w) + decay * jnp.sum(kernel ** 2)
    return total

  @jax.jit
  def step(params, opt):
    grads = jax.grad(loss)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt

  for _ in range(steps):
    params, opt = step(params, opt)
  return [np.asarray(xt @ k + b) for k, b in params]


def pooled(features, cells):
  """(N, K, ...C) mean feature over each shape's cells; features (N, [T,] h, w, C)."""
  if features.ndim == 5:
    return np.einsum('nthwc,nkhw->nktc', features, cells).reshape(cells.shape[:2] + (-1,))
  return np.einsum('nhwc,nkhw->nkc', features, cells)


def probe(train, test, args):
  result = {}
  for level in args.levels.split(','):
    for view in ('frame', 'clip'):
      pick = (lambda f: f[:, args.clip_radius]) if view == 'frame' else (lambda f: f)
      logits = fit_heads(pooled(pick(train['features'][level]), train['cells']),
                         train['labels'], train['valid'],
                         pooled(pick(test['features'][level]), test['cells']),
                         steps=args.probe_steps, lr=1e-2, decay=args.decay)
      result[f'{level}/{view}'] = _accuracy(logits, test['labels'], test['valid'], test['twin'])
  return result


class Reader(nnx.Module):
  """CFSA (or none) on one level's clip features, then a linear head per factor."""

  def __init__(self, dim, variant, attn_dim, rngs):
    self.cfsa = nnx.data(None)
    if variant != 'none':
      tokens, values = variant.split(':')
      self.cfsa = nnx.data(cfsa.CFSA(dim, attn_dim=attn_dim, impl='dense', tokens=tokens,
                                     values=values, rngs=rngs))
    self.heads = nnx.List([nnx.Linear(dim, len(v), rngs=rngs) for v in FACTORS.values()])

  def __call__(self, visual, cells):
    t = visual.shape[1]
    visual = kernels.l2_normalize(visual)
    if self.cfsa is None:
      x = visual[:, t // 2]
    else:
      x = self.cfsa(visual, jnp.ones(visual.shape[:2], bool)).features
    x = jnp.einsum('nhwc,nkhw->nkc', x, cells)
    return [head(x) for head in self.heads]


def train_reader(train, test, level, variant, args):
  model = Reader(train['features'][level].shape[-1], variant, args.attn_dim, nnx.Rngs(args.seed))
  opt = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, visual, cells, labels, valid):
    def loss_fn(model):
      w = valid.astype(jnp.float32)
      return sum(jnp.sum(optax.softmax_cross_entropy_with_integer_labels(l, labels[..., f]) * w)
                 for f, l in enumerate(model(visual, cells))) / jnp.sum(w)
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss

  predict = nnx.jit(lambda model, visual, cells: model(visual, cells))
  rng = np.random.default_rng(args.seed)
  n = len(train['labels'])
  curve = []
  for i in range(args.steps):
    idx = rng.choice(n, args.batch, replace=False)
    loss = step(model, opt, jnp.asarray(train['features'][level][idx]),
                jnp.asarray(train['cells'][idx]), jnp.asarray(train['labels'][idx]),
                jnp.asarray(train['valid'][idx]))
    if (i + 1) % max(args.steps // 4, 1) == 0:
      curve.append(round(float(loss), 3))
  logits = [[] for _ in FACTORS]
  for start in range(0, len(test['labels']), 100):
    sl = slice(start, start + 100)
    for f, l in enumerate(predict(model, jnp.asarray(test['features'][level][sl]),
                                  jnp.asarray(test['cells'][sl]))):
      logits[f].append(np.asarray(l))
  result = _accuracy([np.concatenate(l) for l in logits], test['labels'], test['valid'],
                     test['twin'])
  result['train_loss_curve'] = curve
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mode', choices=('probe', 'cfsa'), default='probe')
  parser.add_argument('--image_size', type=int, default=64)
  parser.add_argument('--clip_radius', type=int, default=2)
  parser.add_argument('--speeds', default='', help='slow,fast px per frame at 64 px '
                      '(default: synthetic_video.SPEEDS)')
  parser.add_argument('--num_train', type=int, default=800, help='clips')
  parser.add_argument('--num_test', type=int, default=300, help='clips')
  parser.add_argument('--levels', default='res3,res4,res5')
  parser.add_argument('--variants',
                      default='none,visual:linear,position:linear,relative:linear,relative:moments')
  parser.add_argument('--probe_steps', type=int, default=300)
  parser.add_argument('--decay', type=float, default=1e-3)
  parser.add_argument('--steps', type=int, default=400, help='CFSA training steps')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--lr', type=float, default=2e-3)
  parser.add_argument('--attn_dim', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--cache_dir', default='', help='keep the clips\' features here')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()
  if args.speeds:
    synthetic_video.SPEEDS = dict(zip(('slow', 'fast'), map(float, args.speeds.split(','))))
  start = time.time()
  data = {}
  for split, num in (('train', args.num_train), ('test', args.num_test)):
    name = (f'{args.cache_dir}/{split}_{num}_{args.image_size}_{args.clip_radius}_'
            f'{"_".join(map(str, synthetic_video.SPEEDS.values()))}_{args.levels}_{args.seed}'
            '_twin.npz')
    if args.cache_dir and os.path.exists(name):
      with np.load(name) as f:
        data[split] = dict(features={level: f[level] for level in args.levels.split(',')},
                           cells=f['cells'], labels=f['labels'], valid=f['valid'],
                           twin=f['twin'])
      continue
    frames, cells, labels, valid, twin = clips(split, num, args)
    data[split] = dict(features=backbone_features(frames, args.levels.split(',')), cells=cells,
                       labels=labels, valid=valid, twin=twin)
    if args.cache_dir:
      np.savez(name, cells=cells, labels=labels, valid=valid, twin=twin,
               **data[split]['features'])
  setup = dict(image_size=args.image_size, clip_radius=args.clip_radius,
               speeds=synthetic_video.SPEEDS, shapes_test=int(data['test']['valid'].sum()),
               twins_test=int(data['test']['twin'].sum()))
  print('setup', setup, f'data {time.time() - start:.0f} s', flush=True)
  result = {'setup': setup, 'majority': majority(data['test']['labels'], data['test']['valid'])}
  print('majority', result['majority'], flush=True)
  if args.mode == 'probe':
    result['probe'] = probe(data['train'], data['test'], args)
    for name, acc in result['probe'].items():
      print(name, acc, flush=True)
  else:
    result['cfsa'] = {}
    for level in args.levels.split(','):
      for variant in args.variants.split(','):
        acc = train_reader(data['train'], data['test'], level, variant, args)
        result['cfsa'][f'{level}/{variant}'] = acc
        print(level, variant, acc, f'{time.time() - start:.0f} s', flush=True)
  if args.json:
    print(json.dumps(result))


if __name__ == '__main__':
  main()
