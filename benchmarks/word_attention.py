r"""Word attention (Eq.4) of several trained models on one held-out synthetic expression.

Picks the `--index`-th test expression of `--family` (e.g. negation, relation) in
the test split the first workdir's config generates, runs every model on it
(`cmsa_jax.run.predict.run_model`, as `--mode=predict`) and draws, side by
side, the image with the referred object outlined, each model's mask (yellow outline,
the target dashed white) and its word weights per level; prints the weights and
each mask's IoU.

  python benchmarks/word_attention.py --workdirs=runs/demo,runs/demo_best \
      --labels="paper model (embed),best model" --family=negation \
      --output=docs/word_attention_negation.png
"""

import os
import sys

from absl import app
from absl import flags
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cmsa_jax.data import synthetic  # pylint: disable=g-import-not-at-top
from cmsa_jax.run import checkpoints
from cmsa_jax.run import predict

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Trained workdirs (synthetic_ref).',
                              required=True)
_LABELS = flags.DEFINE_list('labels', None, 'A label per workdir (default: the workdirs).')
_FAMILY = flags.DEFINE_string('family', 'negation', 'Expression family to draw.')
_INDEX = flags.DEFINE_integer('index', 0, 'Which expression of the family (test split order).')
_OUTPUT = flags.DEFINE_string('output', 'word_attention.png', 'The picture (.png).')


def find_expression(config, family, index):
  """(scene index, record, sentence index) of the index-th `family` test expression."""
  seen = 0
  for r in range(config.synthetic.num_eval):
    record = synthetic.generate_example(config.synthetic.seed, config.eval_split, r,
                                        image_size=config.synthetic.image_size)
    for s, f in enumerate(record['sentences']['family']):
      if f.decode() == family:
        if seen == index:
          return r, record, s
        seen += 1
  raise app.UsageError(f'the test split has {seen} {family!r} expressions, no --index={index}')


def main(argv):
  del argv
  labels = _LABELS.value or _WORKDIRS.value
  if len(labels) != len(_WORKDIRS.value):
    raise app.UsageError('--labels needs one label per workdir.')
  models = [checkpoints.restore_model(w) for w in _WORKDIRS.value]
  config = models[0][1]
  scene, record, s = find_expression(config, _FAMILY.value, _INDEX.value)
  expression = record['sentences']['text'][s].decode()
  target = record['objects']['mask'][int(record['sentences']['object_index'][s])][..., 0] > 0
  image = record['image']
  fig, axes = plt.subplots(2, len(models) + 1, figsize=(4 * (len(models) + 1), 7),
                           gridspec_kw={'height_ratios': [3, 2]})
  axes[0, 0].imshow(image)
  axes[0, 0].contour(target, levels=[0.5], colors='white', linewidths=1.5)
  axes[0, 0].set_title(f'test scene {scene}: target outlined')
  axes[1, 0].axis('off')
  axes[1, 0].text(0, 0.5, f'"{expression}"', fontsize=11, wrap=True)
  print(f'test scene {scene}, {_FAMILY.value}: "{expression}"')
  for column, ((model, saved, vocab, step), label) in enumerate(zip(models, labels), 1):
    prob, _, weights, words = predict.run_model(
        model, vocab, image, expression, image_size=saved.image_size,
        max_words=saved.max_words)
    mask = prob >= 0.5
    iou = (mask & target).sum() / max((mask | target).sum(), 1)
    axes[0, column].imshow(image)  # Outlines: the prediction (yellow), the target (white).
    axes[0, column].contour(target, levels=[0.5], colors='white', linewidths=1, linestyles='--')
    if mask.any():
      axes[0, column].contour(mask, levels=[0.5], colors='yellow', linewidths=1.5)
    axes[0, column].set_title(f'{label}\nstep {step}, IoU {iou:.2f}')
    width = 0.8 / len(weights)
    for k, (level, w) in enumerate(zip(model.levels, weights)):
      axes[1, column].bar(np.arange(len(words)) + k * width, w, width, label=level)
    axes[1, column].set_xticks(np.arange(len(words)) + 0.4 - width / 2, words, rotation=45,
                               ha='right')
    axes[1, column].set_ylim(0, 1)
    axes[1, column].legend(fontsize=7)
    print(f'{label} (step {step}): IoU {iou:.3f}; word weights per level:')
    for level, w in zip(model.levels, weights):
      print(f'  {level}: ' + ' '.join(f'{word}={x:.2f}' for word, x in zip(words, w)))
  for ax in axes[0]:
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(_OUTPUT.value, dpi=100)
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
