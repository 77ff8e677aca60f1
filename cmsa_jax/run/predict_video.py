"""Prediction on a video and an expression: a mask for every frame (each frame in
turn the annotated one, its clip edge-padded at the ends of the video), an
animated overlay, the frame attention of one frame (Eq.9-11: which frames of
its clip it attended to, and the Eq.11 frame weights) and where the referred
object looked (CFSA.query_attention of the pixels of its predicted mask)."""

import os

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from PIL import Image

from cmsa_jax import errors
from cmsa_jax.data import input_pipeline
from cmsa_jax.media import clips as clips_lib
from cmsa_jax.media import frames as frames_lib
from cmsa_jax.run import checkpoints
from cmsa_jax.run import predict

BATCH = 4  # Clips per forward pass.


def load_frames(path):
  """Every frame of a video file or a folder of numbered frames; clear errors otherwise."""
  if not os.path.exists(path):
    raise errors.NotFoundError(f'--video={errors.one_line(path)}: no such file or folder')
  try:
    return frames_lib.read_frames(path)
  except ValueError as e:
    raise errors.InputError(f'--video={errors.one_line(path)}: {e}') from None


@nnx.jit
def _forward(model, frames, frame_mask, tokens, token_mask):
  out = model(frames, frame_mask, tokens, token_mask)
  return jax.nn.sigmoid(out['logits']), out['frame_weights'], out['frame_attention']


@nnx.jit
def _object_attention(model, frames, frame_mask, tokens, token_mask):
  """(B, L, T, h, w): per level, CFSA.query_attention of the annotated frame's
  pixels weighted by the predicted mask (pooled to the level's grid, summing to 1)."""
  features = model.features(frames)
  prob = jax.nn.sigmoid(model.head(features, frame_mask, tokens, token_mask,
                                   frames.shape[2:4])['logits'])
  maps = []
  for level, layer in zip(model.levels, model.cfsa):
    visual = model.normalize(features[level])
    b, _, h, w, _ = visual.shape
    weights = prob.reshape(b, h, prob.shape[1] // h, w, prob.shape[2] // w).mean((2, 4))
    weights = weights / jnp.maximum(weights.sum((1, 2), keepdims=True), 1e-9)
    maps.append(layer.query_attention(visual, frame_mask, weights))
  return jnp.stack(maps, 1)


def object_attention(model, vocab, frames, expression, clip, *, image_size, max_words):
  """Where the object `expression` refers to looks in the clip `clip` (frame indices,
  the annotated one in the middle): (L, T, h, w) shares of its pixels' attention,
  and the clip's frames as the model sees them (T, S, S, 3)."""
  tokens, token_mask = vocab.encode(expression, max_words, strict=True)
  resized = np.stack([input_pipeline.resize_and_pad(frames[i], image_size)[0] for i in clip])
  maps = _object_attention(model, resized[None], clips_lib.clip_mask(clip)[None],
                           tokens[None], token_mask[None])
  return np.asarray(maps[0]), resized


@plt.rc_context(predict.PLAIN_TEXT)
def plot_object_attention(file, resized, clip, maps, levels, frame, expression):
  """Per level a row of the clip's frames (as the model sees them) under the share of
  the referred object's attention on each pixel; a PNG written to `file`."""
  t = len(clip)
  fig, axes = plt.subplots(len(levels), t, figsize=(1.6 * t + 1, 1.8 * len(levels) + 0.6),
                           squeeze=False)
  top = maps.max()
  for row, level in enumerate(levels):
    for col, (ax, i) in enumerate(zip(axes[row], clip)):
      size = resized.shape[1]
      heat = np.kron(maps[row, col], np.ones((size // maps.shape[2], size // maps.shape[3])))
      ax.imshow(resized[col])
      ax.imshow(heat, cmap='magma', alpha=0.6, vmin=0, vmax=top)
      ax.set_title(f'frame {i + 1}' + (' *' if i == frame else '') +
                   f': {maps[row, col].sum():.2f}', fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[row, 0].set_ylabel(level.capitalize())
  fig.suptitle(f'where the pixels of "{expression}" in frame {frame + 1} look '
               '(share of their attention per frame)', fontsize=9)
  fig.tight_layout()
  fig.savefig(file, format='png', dpi=100)
  plt.close(fig)


def run_model(model, vocab, frames, expression, *, image_size, max_words, clip_radius):
  """Probabilities (n, H, W) at the frames' size; frame weights (n, L, T) and
  frame attention (n, L, T, T) of every frame's clip; the clips' frame indices (n, T)."""
  tokens, token_mask = vocab.encode(expression, max_words, strict=True)
  resized = [input_pipeline.resize_and_pad(f, image_size) for f in frames]
  info = resized[0][1]
  n = len(frames)
  clips = np.asarray([clips_lib.clip_frame_ids(c, clip_radius, n) for c in range(1, n + 1)]) - 1
  probs, weights, attention = [], [], []
  for start in range(0, n, BATCH):
    rows = clips[start:start + BATCH]
    rows = np.concatenate([rows, np.repeat(rows[:1], BATCH - len(rows), 0)])  # One shape.
    batch = (np.stack([[resized[i][0] for i in row] for row in rows]),
             np.stack([clips_lib.clip_mask(row) for row in rows]),
             np.repeat(tokens[None], BATCH, 0), np.repeat(token_mask[None], BATCH, 0))
    p, w, a = (np.asarray(x) for x in _forward(model, *batch))
    valid = min(BATCH, n - start)
    probs += [input_pipeline.unpad_and_resize(x, info) for x in p[:valid]]
    weights.append(w[:valid])
    attention.append(a[:valid])
  return np.stack(probs), np.concatenate(weights), np.concatenate(attention), clips


def segment(model, vocab, frames, expression, *, image_size, max_words, clip_radius):
  """The masks (n, H, W) bool of `expression` in every frame, with run_model's frame
  weights, frame attention and clips."""
  probs, weights, attention, clips = run_model(
      model, vocab, frames, expression, image_size=image_size, max_words=max_words,
      clip_radius=clip_radius)
  return probs >= 0.5, weights, attention, clips


def check_video_model(model, saved, workdir):
  """ConfigError unless `model` is a video model with CFSA."""
  if 'frames' not in model.input_keys or not getattr(model, 'use_cfsa', False):
    raise errors.ConfigError(f'{workdir} holds a model without CFSA ({saved.model_name}); '
                             'predict with --image=PATH on one frame instead')


def save_gif(file, frames, masks, fps=8):
  """The overlays of `masks` on `frames` as an animated GIF (a path or a file object)."""
  pictures = [Image.fromarray(predict.overlay(f, m)) for f, m in zip(frames, masks)]
  pictures[0].save(file, format='GIF', save_all=True, append_images=pictures[1:],
                   duration=1000 // fps, loop=0)


@plt.rc_context(predict.PLAIN_TEXT)
def plot_frame_attention(file, frames, clip, weights, attention, levels, frame, expression):
  """Thumbnails of the clip, then per level the attention frame `frame`'s queries put
  on each clip frame (row `frame` of the frame attention) and the Eq.11 weights; a PNG
  written to `file` (a path or a file object)."""
  t = len(clip)
  fig, axes = plt.subplots(1 + len(levels), t, figsize=(1.6 * t + 1, 1.6 + 1.8 * len(levels)),
                           squeeze=False, gridspec_kw={'height_ratios': [1] + [1.1] * len(levels)})
  labels = [f'{i + 1}' + (' (pad)' if not real else '')
            for i, real in zip(clip, clips_lib.clip_mask(clip))]
  for ax, i, label in zip(axes[0], clip, labels):
    ax.imshow(frames[i])
    ax.set_title(f'frame {label}' + (' *' if i == frame else ''), fontsize=8)
    ax.set_axis_off()
  centre = t // 2
  for row, level in enumerate(levels, start=1):
    for ax in axes[row, 1:]:
      ax.remove()
    ax = fig.add_subplot(1 + len(levels), 1, row + 1)
    axes[row, 0].remove()
    x = np.arange(t)
    ax.bar(x - 0.2, attention[row - 1, centre], 0.4, label='attention of frame *')
    ax.bar(x + 0.2, weights[row - 1], 0.4, label='Eq.11 weight α')
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel(level.capitalize())
    if row == 1:
      ax.legend(fontsize=7, loc='upper right')
  fig.suptitle(f'frame attention of frame {frame + 1}: "{expression}"', fontsize=9)
  fig.tight_layout()
  fig.savefig(file, format='png', dpi=100)
  plt.close(fig)


def predict_video(config, workdir, video_path, expression, output_dir, *, frame=None, step=None):
  """Writes masks/<frame>.png (1-indexed, at the video's size), overlay.gif,
  frame_attention.png and object_attention.png (of `frame`, 1-indexed; default the
  middle frame)."""
  del config  # Everything comes from the checkpoint.
  frames = load_frames(video_path)
  if frame is not None and not 1 <= frame <= len(frames):
    raise errors.ConfigError(f'--frame={frame}: the video has frames 1..{len(frames)}')
  model, saved, vocab, _ = checkpoints.restore_model(workdir, step)
  check_video_model(model, saved, workdir)
  masks, weights, attention, clips = segment(
      model, vocab, frames, expression, image_size=saved.image_size,
      max_words=saved.max_words, clip_radius=saved.clip_radius)
  os.makedirs(os.path.join(output_dir, 'masks'), exist_ok=True)
  for i, mask in enumerate(masks):
    Image.fromarray(mask.astype(np.uint8) * 255).save(
        os.path.join(output_dir, 'masks', f'{i + 1:05d}.png'))
  paths = {'masks': os.path.join(output_dir, 'masks'),
           'overlay': os.path.join(output_dir, 'overlay.gif'),
           'frame_attention': os.path.join(output_dir, 'frame_attention.png'),
           'object_attention': os.path.join(output_dir, 'object_attention.png')}
  save_gif(paths['overlay'], frames, masks)
  c = len(frames) // 2 if frame is None else frame - 1
  plot_frame_attention(paths['frame_attention'], frames, clips[c], weights[c], attention[c],
                       model.levels, c, expression)
  maps, resized = object_attention(model, vocab, frames, expression, clips[c],
                                   image_size=saved.image_size, max_words=saved.max_words)
  plot_object_attention(paths['object_attention'], resized, clips[c], maps, model.levels, c,
                        expression)
  logging.info('%d frames; masks cover %.1f%% on average; wrote %s', len(frames),
               100 * masks.mean(), ', '.join(paths.values()))
  return paths
