r"""Pretrains a config's backbone on synthetic scenes, as DeepLab is pretrained for the paper.

The paper's backbone is DeepLab ResNet-101 trained for semantic segmentation
before CMSA sees it (and kept frozen by the official code). The synthetic demo
domain has no such network, so this trains one the same way: per-pixel
segmentation of every object's colour, shape and size (background as a class
of each) on the training split of the on-the-fly synthetic scenes, at the
backbone's output stride, with a 1x1 classifier per level (Res3, Res4, Res5)
that is thrown away afterwards. No expression is seen; the test split is not
touched. The result is a `weights.save_npz` file for `config.backbone_init`:

  python -m cmsa_jax.tools.pretrain_backbone --config=configs/demo.py \
      --output=datasets/synthetic_ref/backbone_96px.npz

`datasets/synthetic_ref/backbone_96px.npz` (the demo's) came from that command
on the project's 2-core CPU: 1500 steps of batch 16, about 10 minutes.
"""

from collections.abc import Sequence
import concurrent.futures
import functools

from absl import app
from absl import flags
from absl import logging
from flax import nnx
from ml_collections import config_flags
import numpy as np
import optax

from cmsa_jax import progress as progress_lib
from cmsa_jax.data import synthetic
from cmsa_jax.models import backbones
from cmsa_jax.models import cmsa_image
from cmsa_jax.models import weights
from cmsa_jax.run import state as state_lib

ATTRIBUTES = {'color': tuple(synthetic.COLORS), 'shape': synthetic.SHAPES,
              'size': tuple(synthetic.SIZES)}
STRIDE = 8  # The backbone's output stride.


def attribute_targets(record, stride=STRIDE):
  """{attribute: (h/stride, w/stride, 1 + #values)}: per cell, the fraction of
  its pixels that are background (class 0) or objects of each value."""
  h, w = record['image'].shape[:2]
  if h % stride or w % stride:
    raise ValueError(f'scene of {h}x{w} pixels is not a multiple of the stride {stride}.')
  objects = record['objects']
  targets = {}
  for name, values in ATTRIBUTES.items():
    label = np.zeros((h, w), np.int32)
    for mask, value in zip(objects['mask'], objects[name]):
      label[mask[..., 0] > 0] = values.index(value.decode()) + 1
    onehot = np.eye(len(values) + 1, dtype=np.float32)[label]
    targets[name] = onehot.reshape(h // stride, stride, w // stride, stride, -1).mean((1, 3))
  return targets


def make_batch(source, indices):
  records = [source[int(i)] for i in indices]
  targets = [attribute_targets(r) for r in records]
  return (np.stack([r['image'] for r in records]),
          {name: np.stack([t[name] for t in targets]) for name in ATTRIBUTES})


class Pretrainer(nnx.Module):
  """The backbone with a 1x1 classifier per (level, attribute)."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    """The backbone of `config` (config.model.backbone and its arguments)."""
    args = state_lib.model_args(config)
    self.backbone = backbones.REGISTRY.build(args.get('backbone', 'resnet'),
                                             args.get('backbone_args'), rngs=rngs)
    self.heads = nnx.Dict({
        f'{level}_{name}': nnx.Conv(width, len(values) + 1, (1, 1), rngs=rngs)
        for level, width in self.backbone.levels.items() for name, values in ATTRIBUTES.items()})

  def __call__(self, images):
    features = self.backbone(cmsa_image.normalize_images(images))
    return {key: head(features[key.split('_')[0]]) for key, head in self.heads.items()}


@nnx.jit
def train_step(model, optimizer, images, targets):
  """Cross-entropy against the soft cell targets, summed over levels and attributes."""

  def loss_fn(model):
    logits = model(images)
    losses = {k: optax.softmax_cross_entropy(v, targets[k.split('_', 1)[1]]).mean()
              for k, v in logits.items()}
    return sum(losses.values()), losses

  (loss, losses), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  return loss, losses


def pretrain(config, output, *, steps, batch_size, learning_rate, seed):
  """Trains and writes the backbone; returns the per-step total losses."""
  source = synthetic.SyntheticSource(
      config.train_split, config.synthetic.num_train, seed=config.synthetic.seed,
      image_size=config.synthetic.image_size)
  model = Pretrainer(config, rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, optax.adam(optax.cosine_decay_schedule(learning_rate, steps)),
                            wrt=nnx.Param)
  order = np.random.default_rng(seed)
  progress = progress_lib.Progress('pretrain', steps)
  losses = []
  with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Renders the next batch meanwhile.
    draw = lambda: pool.submit(make_batch, source, order.integers(0, len(source), batch_size))
    pending = draw()
    for step in range(1, steps + 1):
      images, targets = pending.result()
      pending = draw()
      loss, parts = train_step(model, optimizer, images, targets)
      losses.append(float(loss))
      if step % 100 == 0 or step == steps:
        logging.info('pretrain[%d] loss=%.4f %s', step, np.mean(losses[-100:]),
                     ' '.join(f'{k}={float(v):.3f}' for k, v in sorted(parts.items())))
      progress.update(step)
  weights.save_npz(model.backbone, output)
  logging.info('Wrote %s.', output)
  return losses


def _define_flags():
  """The command's flags, defined only when it runs (tests import this module)."""
  return dict(
      config=config_flags.DEFINE_config_file('config', 'configs/demo.py',
                                             'The config whose backbone to pretrain.'),
      output=flags.DEFINE_string('output', None, 'The backbone file to write (.npz).'),
      steps=flags.DEFINE_integer('steps', 1500, 'Training steps.'),
      batch_size=flags.DEFINE_integer('batch_size', 16, 'Scenes per step.'),
      learning_rate=flags.DEFINE_float('learning_rate', 2e-3, 'Adam, cosine decay to 0.'),
      seed=flags.DEFINE_integer('seed', 1, 'Initialisation and scene order.'))


def main(argv: Sequence[str], flag: dict) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flag['output'].value:
    raise app.UsageError('--output=PATH.npz is required.')
  pretrain(flag['config'].value, flag['output'].value, steps=flag['steps'].value,
           batch_size=flag['batch_size'].value, learning_rate=flag['learning_rate'].value,
           seed=flag['seed'].value)


if __name__ == '__main__':
  app.run(functools.partial(main, flag=_define_flags()))
