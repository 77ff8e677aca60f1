"""DenseCRF post-processing snaps a blurry probability map to image edges."""

import numpy as np
import pytest

from cmsa_jax.run import crf


def test_crf_recovers_sharp_object_from_blurry_probabilities():
  h, w = 48, 64
  yy, xx = np.mgrid[:h, :w]
  obj = (yy - 24) ** 2 + (xx - 30) ** 2 < 12 ** 2
  image = np.where(obj[..., None], [220, 30, 30], [30, 30, 220]).astype(np.uint8)
  # A blurred, shifted guess: a wide soft disk off by 3 pixels.
  d = np.sqrt((yy - 24) ** 2 + (xx - 33) ** 2)
  prob = 1 / (1 + np.exp((d - 12) / 3.0))
  before = np.logical_and(prob >= 0.5, obj).sum() / np.logical_or(prob >= 0.5, obj).sum()
  image.flags.writeable = False  # As np.asarray(PIL image) gives.
  out = crf.dense_crf(image, prob)
  after = np.logical_and(out, obj).sum() / np.logical_or(out, obj).sum()
  assert out.dtype == bool and out.shape == (h, w)
  assert after > before and after > 0.95


def test_crf_bad_shapes():
  with pytest.raises(ValueError, match='matching prob'):
    crf.dense_crf(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4)))
