"""Multimodal feature of Eq.1: f_pn = [v_p, e_n, s_p] for pixel p and word n.

v_p is the L2-normalized visual feature of pixel p, e_n the L2-normalized
embedding of word n (both by `kernels.l2_normalize`) and s_p the 8-d spatial
coordinate of p. The CMSA module (cmsa.py) mostly consumes the parts; `joint_features` materializes the
concatenation for every (p, n) (the dense reference, attention='none').
"""

import jax.numpy as jnp
import numpy as np

SPATIAL_DIM = 8
CONSTANT_SPATIAL_DIM = 2  # The last two, 1/w and 1/h, are the same at every pixel.


def spatial_coords(h: int, w: int) -> np.ndarray:
  """Spatial feature s_p, (h, w, 8) float32.

  Per cell [xmin, ymin, xmax, ymax, xctr, yctr, 1/w, 1/h] with the cell's box
  in [-1, 1] coordinates (as in the official code's `generate_spatial_batch`).
  """
  if h < 1 or w < 1:
    raise ValueError(f'spatial_coords needs h, w >= 1, got h={h}, w={w}.')
  x_edges = np.arange(w + 1) / w * 2 - 1
  y_edges = np.arange(h + 1) / h * 2 - 1
  xmin, xmax = x_edges[:-1], x_edges[1:]
  ymin, ymax = y_edges[:-1], y_edges[1:]
  per_x = np.stack([xmin, xmax, (xmin + xmax) / 2], -1)  # (w, 3)
  per_y = np.stack([ymin, ymax, (ymin + ymax) / 2], -1)  # (h, 3)
  xs = np.broadcast_to(per_x[None], (h, w, 3))
  ys = np.broadcast_to(per_y[:, None], (h, w, 3))
  inv = np.broadcast_to(np.array([1 / w, 1 / h]), (h, w, 2))
  coords = np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1],
                     xs[..., 2], ys[..., 2], inv[..., 0], inv[..., 1]], -1)
  return coords.astype(np.float32)


def joint_features(visual: jnp.ndarray, words: jnp.ndarray) -> jnp.ndarray:
  """Eq.1 materialized: f_pn = [v_p, e_n, s_p].

  Args:
    visual: (B, h, w, C_v) normalized visual features v.
    words: (B, N, C_l) normalized word embeddings e.

  Returns:
    (B, N, h, w, C_v + C_l + 8).
  """
  b, h, w, cv = visual.shape
  n, cl = words.shape[1:]
  spatial = jnp.asarray(spatial_coords(h, w), visual.dtype)
  shape = (b, n, h, w)
  return jnp.concatenate([
      jnp.broadcast_to(visual[:, None], shape + (cv,)),
      jnp.broadcast_to(words[:, :, None, None], shape + (cl,)),
      jnp.broadcast_to(spatial, shape + (SPATIAL_DIM,)),
  ], axis=-1)
