"""Cross-modal self-attention (Eq.2-3) and word attention-aware pooling (Eq.4-5).

Every pair (pixel p, word n) of the joint feature f_pn = [v_p, e_n, s_p] (Eq.1)
is a token. Query, key and value are linear maps to `attn_dim`, the attention
output is mapped back to the input width and added to f_pn (Eq.3):

  F_pn = f_pn + W_o sum_{p'n'} softmax_{p'n'}(q_pn . k_p'n') v_p'n' + b_o.

Because f_pn concatenates a pixel part and a word part, every linear map splits
as q_pn = qa_p + qb_n with qa_p = W_q [v_p; 0; s_p] + b_q (the bias sits on the
pixel side) and qb_n = W_q [0; e_n; 0]; likewise k and v. The logit is a sum of
four terms

  q_pn . k_p'n' = qa_p.ka_p' ('pp') + qa_p.kb_n' ('pw')
                + qb_n.ka_p' ('wp') + qb_n.kb_n' ('ww'),

of which 'pp' + 'wp' depend on the key pixel p' only and 'pw' + 'ww' on the key
word n' only, so the softmax over all keys (p', n') is exactly the product

  P(p' | p, n) = softmax_p'(qa_p.ka_p' + qb_n.ka_p')       (pixel factor)
  W(n' | p, n) = softmax_n'(qa_p.kb_n' + qb_n.kb_n')       (word factor)

and sum_{p'n'} P W (va_p' + vb_n') = sum_p' P va_p' + sum_n' W vb_n'. The
'factorized' implementation costs O(N (hw)^2) instead of the O((N hw)^2) of the
'dense' reference, which materializes the full attention matrix.

The ablations of Table 2 (`attention`) keep these logit terms:
  'none':       no attention; F_pn = f_pn.
  'word':       'ww' only (words attend to words; uniform over key pixels).
  'pixel':      'pp' only (pixels attend to pixels; uniform over key words).
  'word_pixel': 'pw' and 'wp' (word-pixel pairs: cross terms only).
  'full':       all four (cross-modal self-attention).

Eq.4-5 pool over words: the attention word n' receives is the column sum of
the attention matrix over all valid queries (p, n) and key pixels p', which by
the factorization is sum_{p, n} W(n' | p, n). `word_weight='sum'` takes it as
is (Eq.4 literally; ~h*w mass per word, so the softmax is near one-hot);
'mean' divides it by the number of valid queries h*w*N_valid, so the received
fractions rbar_n lie in [0, 1] and sum to 1 (the softmax is then near uniform:
no word can exceed e/(e + N_valid - 1)); 'temperature' takes
exp(t) * N_valid * rbar_n with a learnable t per level (init 0: logit 1 for a
word that receives its share, up to N_valid for one that receives all).
alpha = softmax over valid words; pooled F_p = sum_n alpha_n F_pn (Eq.5). Table 1's
`pooling` ablation: 'attention' (Eq.4-5), 'avg' or 'max' over valid words.
Padded words are never keys, never pooled and never counted as queries, so
appending padding changes no output. Every expression needs >= 1 valid word.

Weighted-sum pooling is linear, so the factorized path pools before the value
and output maps: sum_n alpha_n F_pn = [v_p, sum_n alpha_n e_n, s_p] +
W_o(Pbar_p . va + Wbar_p . vb) + b_o with Pbar = sum_n alpha_n P(.|., n)
and Wbar = sum_n alpha_n W(.|., n); the (B, N, hw, C) tensor never exists.
P(.|., n) is built one word at a time (a scan, recomputed in the backward
pass), so memory is O(B (hw)^2); 'max' pooling builds F_pn in that scan.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models import kernels
from cmsa_jax.models import multimodal

IMPLS = ('factorized', 'dense')
POOLINGS = ('attention', 'avg', 'max')
WORD_WEIGHTS = ('temperature', 'mean', 'sum')
ATTENTION_TERMS = {
    'none': (),
    'word': ('ww',),
    'pixel': ('pp',),
    'word_pixel': ('pw', 'wp'),
    'full': ('pp', 'pw', 'wp', 'ww'),
}


class CMSAOutput(NamedTuple):
  """features: (B, h, w, C) pooled F_p (Eq.5); word_weights: (B, N) alpha of
  Eq.4 whatever the pooling (uniform over valid words when attention='none'),
  0 on padding;
  pixel_attention: (B, h, w) attention each key pixel receives, averaged over
  valid queries (sums to 1 over pixels)."""
  features: jax.Array
  word_weights: jax.Array
  pixel_attention: jax.Array


def check_choice(name, value, choices):
  """ConfigError unless `value` is one of `choices` (a model switch `name`)."""
  if value not in choices:
    raise errors.ConfigError(f'{name} must be one of {tuple(choices)}, got {value!r}.')


def masked_softmax(logits, mask):
  """Softmax over the last axis restricted to mask (float32)."""
  logits = jnp.where(mask, logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1) * mask


def _uniform(mask):
  """Equal weights on the valid words."""
  return mask / jnp.sum(mask, axis=1, keepdims=True).astype(jnp.float32)


def word_weights(received, mask, hw, word_weight, log_temperature=None):
  """Eq.4: alpha = softmax over valid words of the attention each receives."""
  num_words = jnp.sum(mask, axis=1, keepdims=True)
  if word_weight != 'sum':  # rbar: the fraction of the valid queries' attention.
    received = received / (hw * num_words)
  if word_weight == 'temperature':
    received = received * num_words * jnp.exp(log_temperature)
  return masked_softmax(received, mask)


def _pool(features, weights, mask, pooling):
  """Eq.5 (or avg / max over valid words) of F (B, N, hw, C) -> (B, hw, C)."""
  if pooling == 'max':
    return jnp.max(jnp.where(mask[:, :, None, None], features, -jnp.inf), axis=1)
  if pooling == 'avg':
    weights = _uniform(mask)
  return jnp.einsum('bn,bnpc->bpc', weights.astype(features.dtype), features)


class CMSA(nnx.Module):
  """Cross-modal self-attention + word pooling for one feature level."""

  def __init__(self, visual_dim: int, word_dim: int, *, attn_dim: int = 512,
               impl: str = 'factorized', pooling: str = 'attention',
               word_weight: str = 'temperature', attention: str = 'full',
               qk_init_scale: float = 1.0, custom_gradients: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs):
    check_choice('impl', impl, IMPLS)
    if not qk_init_scale > 0:
      raise errors.ConfigError(f'qk_init_scale must be > 0, got {qk_init_scale}.')
    check_choice('pooling', pooling, POOLINGS)
    check_choice('word_weight', word_weight, WORD_WEIGHTS)
    check_choice('attention', attention, ATTENTION_TERMS)
    if attention == 'none' and pooling == 'attention':
      raise errors.ConfigError("pooling='attention' needs attention != 'none' "
                       '(Eq.4 pools by the attention words receive).')
    self.visual_dim, self.word_dim = visual_dim, word_dim
    self.impl, self.pooling = impl, pooling
    self.word_weight, self.attention = word_weight, attention
    self.custom_gradients = custom_gradients
    self.dtype = dtype
    if attention == 'none':
      return
    in_dim = visual_dim + word_dim + multimodal.SPATIAL_DIM
    # Xavier uniform, the query and key kernels times qk_init_scale.
    linear = lambda i, o, use_bias=True, scale=1.0: nnx.Linear(
        i, o, use_bias=use_bias, dtype=dtype, rngs=rngs,
        kernel_init=nnx.initializers.variance_scaling(scale**2, 'fan_avg', 'uniform'))
    self.query = linear(in_dim, attn_dim, scale=qk_init_scale)  # Eq.2
    # A key bias adds q.b_k to every logit of a query: the softmax ignores it, so
    # its gradient is exactly zero and Adam would only amplify rounding noise.
    # The spatial map's 1/w, 1/h channels are the same for every key token, so
    # their key weights act as such a bias too: `_key_kernel` leaves them out.
    self.key = linear(in_dim, attn_dim, use_bias=False, scale=qk_init_scale)
    self.value = linear(in_dim, attn_dim)
    self.out = linear(attn_dim, in_dim)  # Eq.3, back to the input width.
    if word_weight == 'temperature':  # Eq.4's learnable sharpness, t (log scale).
      self.word_log_temperature = nnx.Param(jnp.zeros((), jnp.float32))

  def __call__(self, visual: jax.Array, words: jax.Array,
               mask: jax.Array) -> CMSAOutput:
    """visual: (B, h, w, C_v) and words: (B, N, C_l), both L2-normalized;
    mask: (B, N) bool, True on valid words."""
    b, h, w, cv = visual.shape
    if cv != self.visual_dim or words.shape[-1] != self.word_dim:
      raise ValueError(
          f'CMSA expects visual (..., {self.visual_dim}) and words '
          f'(..., {self.word_dim}), got visual {visual.shape}, words {words.shape}.')
    if words.shape[0] != b or mask.shape != words.shape[:2]:
      raise ValueError(f'CMSA got mismatched visual {visual.shape}, '
                       f'words {words.shape}, mask {mask.shape}.')
    visual, words = visual.astype(self.dtype), words.astype(self.dtype)
    mask = jnp.asarray(mask, bool)  # A traced array even when given numpy.
    if self.attention == 'none':
      run = self._no_attention
    else:
      run = self._dense if self.impl == 'dense' else self._factorized
    features, weights, pixel_attention = run(visual, words, mask)
    return CMSAOutput(features.reshape(b, h, w, -1), weights,
                      pixel_attention.reshape(b, h, w))

  def _no_attention(self, visual, words, mask):
    b, h, w, _ = visual.shape
    joint = multimodal.joint_features(visual, words).reshape(b, words.shape[1], h * w, -1)
    weights = _uniform(mask)
    uniform_pixels = jnp.full((b, h * w), 1 / (h * w), jnp.float32)
    return _pool(joint, weights, mask, self.pooling), weights, uniform_pixels

  def _dense(self, visual, words, mask):
    """Reference: the full (N hw) x (N hw) attention over all tokens."""
    joint = multimodal.joint_features(visual, words)  # Eq.1
    b, n, h, w, c = joint.shape
    hw = h * w
    tokens = joint.reshape(b, n * hw, c)  # Token i = n * hw + p.
    key = lambda x: x @ self._key_kernel()
    q, k, v = self.query(tokens), key(tokens), self.value(tokens)
    if self.attention == 'full':
      logits = jnp.einsum('bid,bjd->bij', q, k)  # Eq.2
    else:  # Split each map into its pixel part (with bias) and word part.
      pixel_only = jnp.concatenate([
          jnp.ones(self.visual_dim), jnp.zeros(self.word_dim),
          jnp.ones(multimodal.SPATIAL_DIM)]).astype(tokens.dtype)
      qa, ka = self.query(tokens * pixel_only), key(tokens * pixel_only)
      parts = {'pp': (qa, ka), 'pw': (qa, k - ka), 'wp': (q - qa, ka),
               'ww': (q - qa, k - ka)}
      logits = sum(jnp.einsum('bid,bjd->bij', *parts[t])
                   for t in ATTENTION_TERMS[self.attention])
    token_mask = jnp.repeat(mask, hw, axis=1)
    attn = masked_softmax(logits, token_mask[:, None, :])
    out = self.out(jnp.einsum('bij,bjd->bid', attn.astype(v.dtype), v))
    features = (tokens + out).reshape(b, n, hw, c)  # Eq.3
    # Column sums: the attention each token receives from the valid queries.
    received = jnp.einsum('bi,bij->bj', token_mask.astype(attn.dtype), attn)
    received = received.reshape(b, n, hw)
    weights = self._word_weights(jnp.sum(received, 2), mask, hw)
    pixel_attention = jnp.sum(received, 1) / (hw * jnp.sum(mask, 1, keepdims=True))
    return _pool(features, weights, mask, self.pooling), weights, pixel_attention

  def _word_weights(self, received, mask, hw):
    t = self.word_log_temperature[...] if self.word_weight == 'temperature' else None
    return word_weights(received, mask, hw, self.word_weight, t)

  def _key_kernel(self):
    """The key kernel with the rows of the key-constant 1/w, 1/h channels at 0
    (their gradient is then exactly 0, not rounding noise)."""
    return self.key.kernel[...].astype(self.dtype).at[-multimodal.CONSTANT_SPATIAL_DIM:].set(0)

  def _split(self, kernel, bias, visual, words, spatial):
    """Pixel part W[v_p; 0; s_p] + b (B, hw, d), word part W[0; e_n; 0] (B, N, d)."""
    kernel = kernel.astype(self.dtype)
    cv, cl = self.visual_dim, self.word_dim
    pixel = visual @ kernel[:cv] + spatial @ kernel[cv + cl:]
    if bias is not None:
      pixel = pixel + bias[...].astype(self.dtype)
    return pixel, words @ kernel[cv:cv + cl]

  def _factorized(self, visual, words, mask):
    """Exact O(N (hw)^2) attention through the pixel x word factorization."""
    b, h, w, _ = visual.shape
    n, hw = words.shape[1], h * w
    visual = visual.reshape(b, hw, -1)
    spatial = jnp.asarray(multimodal.spatial_coords(h, w), self.dtype).reshape(hw, -1)
    joint_with = lambda word: jnp.concatenate([  # [v_p, word, s_p] (Eq.1)
        visual, jnp.broadcast_to(word[:, None], (b, hw, self.word_dim)),
        jnp.broadcast_to(spatial, (b, hw, multimodal.SPATIAL_DIM))], axis=-1)
    qa, qb = self._split(self.query.kernel[...], self.query.bias, visual, words, spatial)
    ka, kb = self._split(self._key_kernel(), None, visual, words, spatial)
    va, vb = self._split(self.value.kernel[...], self.value.bias, visual, words, spatial)
    terms = ATTENTION_TERMS[self.attention]
    f32 = jnp.float32
    # Logits accumulate and come out in float32 whatever the compute dtype.
    dot = lambda x, y: jnp.einsum('bid,bjd->bij', x, y, preferred_element_type=f32)

    # Eq.2, word factor W[b, p, n, n'] = softmax_n'(pw + ww), padded n' masked.
    word_logits = jnp.zeros((b, 1, 1, n), f32)
    if 'pw' in terms:
      word_logits += dot(qa, kb)[:, :, None]
    if 'ww' in terms:
      word_logits += dot(qb, kb)[:, None]
    word_attn = jnp.broadcast_to(
        masked_softmax(word_logits, mask[:, None, None, :]), (b, hw, n, n))
    # Eq.4: word n' receives sum over valid queries (p, n) of W(n' | p, n).
    received = jnp.einsum('bpnm,bn->bm', word_attn, mask.astype(f32))
    weights = self._word_weights(received, mask, hw)

    # Eq.2, pixel factor P_n[b, p, p'] = softmax_p'(pp + wp).
    pixel_self = dot(qa, ka) if 'pp' in terms else jnp.zeros((b, hw, hw), f32)
    word_pixel = dot(qb, ka) if 'wp' in terms else jnp.zeros((b, n, hw), f32)
    dt = self.dtype
    if self.pooling == 'max':  # Not linear: build each F_pn (Eq.3), max over n.
      scan_weights = jnp.ones((b, n), f32)  # pool_step gets P_n itself.
      def pool_step(acc, pixel_attn, i):
        attended = (jnp.einsum('bpq,bqd->bpd', pixel_attn.astype(dt), va)
                    + jnp.einsum('bpm,bmd->bpd', word_attn[:, :, i].astype(dt), vb))
        features = jnp.where(mask[:, i, None, None],
                             joint_with(words[:, i]) + self.out(attended), -jnp.inf)
        return jnp.maximum(acc, features)
      init = jnp.full((b, hw, self.out.out_features), -jnp.inf, dt)
    else:  # Eq.5 by linearity: pool the attention over words first.
      pooling_weights = weights if self.pooling == 'attention' else _uniform(mask)
      scan_weights = pooling_weights  # pool_step gets alpha_n P_n: sum them.
      pool_step = lambda acc, scaled, i: acc + scaled
      init = jnp.zeros((b, hw, hw), f32)

    acc, heat = kernels.scan_pixel_attention(
        pixel_self, word_pixel, scan_weights, mask, pool_step, init,
        custom_gradient=self.custom_gradients)
    pixel_attention = heat / (hw * jnp.sum(mask, 1, keepdims=True))
    if self.pooling == 'max':
      return acc, weights, pixel_attention

    # sum_n alpha_n F_pn = [v_p, sum_n alpha_n e_n, s_p] + W_o(Pbar va + Wbar vb) + b_o.
    pooled_word_attn = jnp.einsum('bpnm,bn->bpm', word_attn, pooling_weights)
    attended = (jnp.einsum('bpq,bqd->bpd', acc.astype(dt), va)
                + jnp.einsum('bpm,bmd->bpd', pooled_word_attn.astype(dt), vb))
    pooled_words = jnp.einsum('bn,bnc->bc', pooling_weights.astype(dt), words)
    return joint_with(pooled_words) + self.out(attended), weights, pixel_attention
