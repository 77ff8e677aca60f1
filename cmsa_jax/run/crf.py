"""DenseCRF post-processing with the official CMSA / text_objseg settings."""

import numpy as np
import pydensecrf.densecrf as dcrf

_EPS = 1e-8


def dense_crf(image, prob, *, iterations=5):
  """Refines a foreground probability map; returns a boolean mask.

  image: (H, W, 3) uint8 RGB; prob: (H, W) foreground probability in [0, 1].
  Unary -log p, Gaussian kernel sxy=3 compat=3, bilateral sxy=20 srgb=3
  compat=10, 5 mean-field iterations (official settings).
  """
  image = np.require(image, np.uint8, ['C_CONTIGUOUS', 'WRITEABLE'])  # pydensecrf needs both.
  prob = np.clip(np.asarray(prob, np.float32), _EPS, 1 - _EPS)
  if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != prob.shape:
    raise ValueError(f'image {image.shape} must be (H, W, 3) matching prob {prob.shape}')
  h, w = prob.shape
  crf = dcrf.DenseCRF2D(w, h, 2)
  unary = -np.log(np.stack([1 - prob, prob]).reshape(2, -1))
  crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
  crf.addPairwiseGaussian(sxy=3, compat=3)
  crf.addPairwiseBilateral(sxy=20, srgb=3, rgbim=image, compat=10)
  q = np.asarray(crf.inference(iterations))
  return q.argmax(0).reshape(h, w).astype(bool)
