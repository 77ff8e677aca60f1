"""Eq.1-3 kernels with hand-written backward passes, for XLA:CPU.

They exist for XLA:CPU, which runs the fused multiply-reduce of JAX's autodiff
rules ~20x slower than the equivalent einsum.
`custom_gradient=False` (config.model.custom_gradients=False) differentiates the
same forward with plain autodiff.
"""

import jax
import jax.numpy as jnp

L2_EPS = 1e-12


def _l2_normalize_parts(x):
  x = x.astype(jnp.float32)
  sq_norm = jnp.einsum('...c,...c->...', x, x)[..., None]
  inv_norm = jax.lax.rsqrt(jnp.maximum(sq_norm, L2_EPS**2))
  return x * inv_norm, inv_norm, sq_norm > L2_EPS**2


def _l2_normalize(x):
  return _l2_normalize_parts(x)[0].astype(x.dtype)


def l2_normalize(x: jax.Array, *, custom_gradient: bool = True) -> jax.Array:
  """Eq.1's v / ||v||: x / max(||x||, 1e-12) over the last axis, norm in float32.

  The written-out backward is ~10x faster on XLA:CPU than the autodiff rule.
  """
  return (_l2_normalize_custom if custom_gradient else _l2_normalize)(x)


def _l2_normalize_fwd(x):
  y, inv_norm, above_eps = _l2_normalize_parts(x)
  return y.astype(x.dtype), (y, inv_norm, above_eps)


def _l2_normalize_bwd(residuals, g):
  y, inv_norm, above_eps = residuals
  g32 = g.astype(jnp.float32)
  inner = jnp.einsum('...c,...c->...', g32, y)[..., None]
  return ((inv_norm * (g32 - jnp.where(above_eps, y * inner, 0))).astype(g.dtype),)


_l2_normalize_custom = jax.custom_vjp(_l2_normalize)
_l2_normalize_custom.defvjp(_l2_normalize_fwd, _l2_normalize_bwd)


def _weighted_softmax(logits, weight, count):
  """(weight * P, count * 1^T P) for P = softmax(logits) over the last axis.

  logits: (B, hw, hw); weight, count: (B,). The written-out backward is ~20x
  faster on XLA:CPU than the autodiff rule.
  """
  unnormalized = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  inv_total = 1 / jnp.sum(unnormalized, axis=-1)
  return (unnormalized * (weight[:, None] * inv_total)[..., None],
          jnp.einsum('bpq,bp->bq', unnormalized, count[:, None] * inv_total))


def _weighted_softmax_fwd(logits, weight, count):
  return _weighted_softmax(logits, weight, count), (logits, weight, count)


def _weighted_softmax_bwd(residuals, cotangents):
  logits, weight, count = residuals
  g_scaled, g_summed = cotangents
  p = jax.nn.softmax(logits, axis=-1)
  # dL/dP = weight g_scaled + count 1 g_summed^T; softmax: P (dL/dP - <dL/dP, P>).
  inner = (weight[:, None] * jnp.einsum('bpq,bpq->bp', g_scaled, p)
           + count[:, None] * jnp.einsum('bpq,bq->bp', p, g_summed))
  g_logits = p * (weight[:, None, None] * g_scaled
                  + count[:, None, None] * g_summed[:, None, :] - inner[..., None])
  return g_logits, jnp.einsum('bpq,bpq->b', g_scaled, p), jnp.zeros_like(count)


_weighted_softmax_custom = jax.custom_vjp(_weighted_softmax)
_weighted_softmax_custom.defvjp(_weighted_softmax_fwd, _weighted_softmax_bwd)


def scan_pixel_attention(pixel_self, word_pixel, weights, mask, pool_step, init, *,
                         custom_gradient=True):
  """Folds pool_step over the words' weighted pixel attention weights_n P_n.

  P_n = softmax_p'(pixel_self + word_pixel[:, n]) (B, hw, hw) is built one
  word at a time and recomputed in the backward pass, so memory stays
  O(B (hw)^2) rather than O(B N (hw)^2). Returns (the fold, the attention
  each key pixel p' receives from the valid queries: sum_{valid n, p} P_n[p, p']).
  """
  weighted_softmax = _weighted_softmax_custom if custom_gradient else _weighted_softmax
  b, hw = pixel_self.shape[:2]
  # Keeps XLA:CPU from fusing the logit matmuls into the softmax reductions
  # (10x slower) when the logits do not depend on the word and get hoisted.
  pixel_self, word_pixel = jax.lax.optimization_barrier((pixel_self, word_pixel))
  counts = mask.astype(jnp.float32)

  @jax.checkpoint
  def step(carry, i):
    acc, heat = carry
    scaled, received = weighted_softmax(
        pixel_self + word_pixel[:, i, None], weights[:, i], counts[:, i])
    return (pool_step(acc, scaled, i), heat + received), None

  carry = (init, jnp.zeros((b, hw), jnp.float32))
  return jax.lax.scan(step, carry, jnp.arange(word_pixel.shape[1]))[0]
