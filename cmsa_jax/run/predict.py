"""Prediction on one image and expression: the mask, an overlay, the word
attention of each level (the paper's Fig. 5 b) and a spatial heatmap (Fig. 7)."""

import os

from absl import logging
from flax import nnx
import jax
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from PIL import Image

from cmsa_jax import errors
from cmsa_jax import models
from cmsa_jax.data import input_pipeline
from cmsa_jax.media import image_io
from cmsa_jax.run import checkpoints
from cmsa_jax.run import crf

def load_image(path):
  """Any image Pillow reads, as displayed: (H, W, 3) uint8 RGB (see image_io.to_rgb).

  Clear error naming the file otherwise.
  """
  if not os.path.isfile(path):
    raise errors.NotFoundError(f'--image={errors.one_line(path)}: no such file')
  return image_io.read_rgb(path)


def upsample(x, size):
  """Bilinear resize of a (h, w) map to (size, size)."""
  return np.asarray(jax.image.resize(x, (size, size), 'bilinear'))


@nnx.jit
def _forward(model, inputs):
  out = model(*inputs)
  return jax.nn.sigmoid(out['logits']), out['heatmap'], out['word_attention']


def run_model(model, vocab, image, expression, *, image_size, max_words):
  """Probability (H, W), heatmap (H, W) at the image's size, word attention (3, n), words.

  Compiled once for the model's fixed input size: any image size after that runs
  without compiling.
  """
  example, info = input_pipeline.encode(image, expression, vocab, image_size=image_size,
                                        max_words=max_words, strict=True)
  prob, heatmap, word_attention = _forward(
      model, models.inputs(model, {k: v[None] for k, v in example.items()}))
  prob = input_pipeline.unpad_and_resize(np.asarray(prob)[0], info)
  heatmap = input_pipeline.unpad_and_resize(upsample(heatmap[0], image_size), info)
  n = int(example['token_mask'].sum())
  words = vocab.tokenize(expression)[:n]
  return prob, heatmap, np.asarray(word_attention)[0, :, :n], words  # NumPy: no compile per n.


def segment(model, vocab, image, expression, *, image_size, max_words, use_crf):
  """The mask (H, W) bool of `expression` in `image`, with run_model's heatmap, word
  attention and words; DenseCRF refines the probability map when `use_crf`."""
  prob, heatmap, weights, words = run_model(model, vocab, image, expression,
                                            image_size=image_size, max_words=max_words)
  mask = crf.dense_crf(image, prob) if use_crf else prob >= 0.5
  return mask, heatmap, weights, words


def overlay(image, mask, color=(255, 40, 40), alpha=0.5):
  """`image` (H, W, 3) uint8 with the pixels of `mask` blended towards `color`."""
  out = image.copy()  # Blends only the masked pixels: a 10000x10000 photo stays uint8.
  out[mask] = ((1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)).astype(np.uint8)
  return out


# Figures showing a user's text draw it as typed: '$' would start matplotlib's math mode
# (`$\x$` raised ParseFatalException; found by tests/test_fuzz_text.py).
PLAIN_TEXT = {'text.parse_math': False}


@plt.rc_context(PLAIN_TEXT)
def _plot_word_attention(path, weights, levels, words, vocab, expression):
  fig, axes = plt.subplots(len(levels), 1, figsize=(max(4, 0.8 * len(words) + 1), 6),
                           sharex=True, squeeze=False)
  axes = axes[:, 0]
  labels = [w if w in vocab else f'{w} (unk)' for w in words]
  for ax, level, w in zip(axes, levels, weights):
    ax.bar(range(len(w)), w, color='tab:blue')
    ax.set_ylabel(level.capitalize())
    ax.set_ylim(0, max(1e-6, float(weights.max())) * 1.1)
  axes[-1].set_xticks(range(len(labels)), labels, rotation=45, ha='right')
  fig.suptitle(f'word attention: "{expression}"')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _plot_heatmap(path, image, heatmap, max_side=1200):
  # The figure is 600 px wide: a 10000x10000 photo is subsampled before matplotlib sees it.
  stride = max(1, -(-max(image.shape[:2]) // max_side))
  image, heatmap = image[::stride, ::stride], heatmap[::stride, ::stride]
  fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
  ax.imshow(image)
  ax.imshow(heatmap, cmap='jet', alpha=0.5)
  ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def predict(config, workdir, image_path, expression, output_dir, *, step=None):
  """Writes mask.png, overlay.png, word_attention.png and heatmap.png to output_dir."""
  image = load_image(image_path)
  model, saved, vocab, step = checkpoints.restore_model(workdir, step)
  mask, heatmap, weights, words = segment(
      model, vocab, image, expression, image_size=saved.image_size, max_words=saved.max_words,
      use_crf=config.crf if config is not None else saved.crf)
  os.makedirs(output_dir, exist_ok=True)
  paths = {name: os.path.join(output_dir, name + '.png')
           for name in ('mask', 'overlay', 'word_attention', 'heatmap')}
  Image.fromarray(mask.astype(np.uint8) * 255).save(paths['mask'])
  Image.fromarray(overlay(image, mask)).save(paths['overlay'])
  _plot_word_attention(paths['word_attention'], weights, model.levels, words, vocab, expression)
  _plot_heatmap(paths['heatmap'], image, heatmap)
  logging.info('Checkpoint step %d: the mask covers %.1f%% of the image; wrote %s', step,
               100 * mask.mean(), ', '.join(paths.values()))
  return paths
