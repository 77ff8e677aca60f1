"""Eq.1: spatial coordinates, L2 normalization and the joint feature."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import references
from cmsa_jax.models import kernels
from cmsa_jax.models import multimodal


@pytest.mark.parametrize('h, w', [(1, 1), (3, 5), (40, 40)])
def test_spatial_coords_matches_definition(h, w):
  coords = multimodal.spatial_coords(h, w)
  assert coords.shape == (h, w, 8) and coords.dtype == np.float32
  np.testing.assert_allclose(coords, references.spatial_coords(h, w), atol=1e-6)


def test_spatial_coords_corners():
  coords = multimodal.spatial_coords(4, 2)
  np.testing.assert_allclose(coords[0, 0, :4], [-1, -1, 0, -0.5])
  np.testing.assert_allclose(coords[-1, -1, :4], [0, 0.5, 1, 1])
  np.testing.assert_allclose(coords[2, 1, 6:], [1 / 2, 1 / 4])


def test_spatial_coords_rejects_empty():
  with pytest.raises(ValueError, match='h=0'):
    multimodal.spatial_coords(0, 3)


def test_l2_normalize():
  x = np.random.default_rng(0).normal(size=(2, 3, 7))
  x[1, 2] = 0
  got = np.asarray(kernels.l2_normalize(jnp.asarray(x, jnp.float32)))
  norms = np.linalg.norm(x, axis=-1, keepdims=True)
  want = np.where(norms > 0, x / np.where(norms > 0, norms, 1), 0)
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(got[0], axis=-1), 1, atol=1e-6)
  assert np.all(got[1, 2] == 0)


def test_l2_normalize_gradient():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5, 6)), jnp.float32)
  g = jnp.asarray(np.random.default_rng(3).normal(size=(3, 5, 6)), jnp.float32)
  plain = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  got = jax.vjp(kernels.l2_normalize, x)[1](g)[0]
  want = jax.vjp(plain, x)[1](g)[0]
  np.testing.assert_allclose(got, want, atol=1e-5)
  zero_grad = jax.grad(lambda x: jnp.sum(kernels.l2_normalize(x)))(jnp.zeros((2, 4)))
  np.testing.assert_allclose(zero_grad, 1 / kernels.L2_EPS)


def test_l2_normalize_keeps_dtype():
  x = jnp.ones((2, 4), jnp.bfloat16)
  got = kernels.l2_normalize(x)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), 0.5, atol=1e-2)


def test_joint_features_concatenates_pixel_word_spatial():
  rng = np.random.default_rng(1)
  visual = rng.normal(size=(2, 3, 4, 5))
  words = rng.normal(size=(2, 6, 7))
  joint = np.asarray(multimodal.joint_features(
      jnp.asarray(visual, jnp.float32), jnp.asarray(words, jnp.float32)))
  assert joint.shape == (2, 6, 3, 4, 5 + 7 + 8)
  spatial = references.spatial_coords(3, 4)
  for b, n, i, j in [(0, 0, 0, 0), (1, 5, 2, 3), (0, 3, 1, 2)]:
    want = np.concatenate([visual[b, i, j], words[b, n], spatial[i, j]])
    np.testing.assert_allclose(joint[b, n, i, j], want, atol=1e-6)
