"""Pictures of the same few held-out predictions at every evaluation, for
TensorBoard: the image, the true mask (white) and the predicted one (red), with
the expression and its IoU written under them."""

import base64
import io

import numpy as np
from PIL import Image
from PIL import ImageDraw

from cmsa_jax.media import image_io
from cmsa_jax.run import metrics
from cmsa_jax.run import predict
from cmsa_jax.run.evaluators import base

NUM = 4  # The first NUM expressions of the evaluation order.
HEIGHT = 128  # Of each of the three panels, in pixels.


def picture(scored):
  """(H, W, 3) uint8: image | true mask | predicted mask, the expression and IoU below."""
  pred = scored.prob >= 0.5
  i, u = metrics.intersection_union(pred, scored.target)
  panels = [scored.image, predict.overlay(scored.image, scored.target, color=(255, 255, 255)),
            predict.overlay(scored.image, pred)]
  height, width = scored.image.shape[:2]
  size = (max(1, round(width * HEIGHT / height)), HEIGHT)
  row = np.concatenate([np.asarray(Image.fromarray(p).resize(size)) for p in panels], 1)
  canvas = Image.new('RGB', (row.shape[1], HEIGHT + 14))
  canvas.paste(Image.fromarray(row))
  ImageDraw.Draw(canvas).text((2, HEIGHT + 1), f'IoU {metrics.iou(i, u):.2f}: {scored.text}',
                              fill=(255, 255, 255))
  return np.asarray(canvas)


class Evaluator(base.Evaluator):
  """Keeps the pictures of the expressions at positions 0..NUM-1."""

  def __init__(self):
    self.pictures = {}

  def update(self, scored):
    if scored.position < NUM:
      self.pictures[scored.position] = picture(scored)
    return {}

  def state(self):
    return {p: base64.b64encode(image_io.encode_png(x)).decode() for p, x in self.pictures.items()}

  def merge(self, states):
    self.pictures = {int(p): np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))
                     for state in states for p, png in state.items()}

  def write(self, writer, step):
    writer.write_images(step, {f'eval_pictures/{p}': x for p, x in sorted(self.pictures.items())})
