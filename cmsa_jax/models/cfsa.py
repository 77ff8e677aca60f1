"""Cross-frame self-attention (Eq.9-11) over a clip of T = 2τ+1 frames.

Every (frame t, pixel p) of the clip is a token. `tokens='visual'` is the
paper's: g_tp = v_tp, the L2-normalized visual feature (as in Eq.1);
`tokens='position'` adds where and when it is, g_tp = [v_tp, s_p, δ_t], with the
8-d spatial feature s_p of Eq.1 and the frame's time relative to the annotated
frame c, δ_t = (t - c) / max(τ, 1). `tokens='relative'` sees where a key is
*relative to its query*: query and key tokens are g_tp = [v_tp, δ_t], the logit
of Eq.9 gets a learnable locality term -λ ||x_p - x_p'||² (x_p = the cell centre
(x_ctr, y_ctr) of s_p, λ = exp(l) > 0), and the value of key t'p' for query tp is
built from ĝ = [v_t'p', x_p' - x_p, δ_t'], so the attended value carries where
what the query matched went, from the query's own pixel. Query and key are linear
maps of g to `attn_dim`; the value is `values='linear'` (the paper's)
W_v g + b_v, or `values='moments'` W_v [g, δ_t g, δ_t² g] + b_v (with ĝ for the
relative tokens): a value map per time moment, so the attention-weighted sum
carries sum r δ s and sum r δ² s (how the matched position changes with time),
where a value linear in g only gives the average position and the average time
of what was matched (docs/experiments.md, "video motion"). `tests/references.py`
writes these out. Relative values need no per-pair tensor: sum r δ^m (x_p' - x_p) =
sum r δ^m x_p' - x_p sum r δ^m, so the attention sums values of the keys' own x_p'
(and δ^m, m >= 1), and the query's x_p is subtracted after it (`CFSA._relative`);
dense and blocked attention are the same code for every token type. W_o is
Xavier-initialised, or 0 with `out_init='zeros'` (V̂ = 0 at the start).

  Eq.9   r(t'p' | tp) = softmax over valid keys (t', p') of q_tp . k_t'p'
                        (- λ ||x_p - x_p'||² with tokens='relative')
  Eq.10  v̂_tp = W_o sum_{t'p'} r(t'p' | tp) v_t'p' + b_o              (C_v channels)
  Eq.11  α = softmax over valid frames t of the attention frame t receives,
         β_t = sum over valid queries (t'', p) and key pixels p' of r(tp' | t''p),
         V̂_p = sum_t α_t v̂_tp,   V_c := V_c + V̂                     (annotated frame c)

β are column sums: row sums are constant (each query's attention sums to 1), as
decided for Eq.4, and Eq.11 normalises β like Eq.4 (`frame_weight`, see
cmsa.word_weights): 'sum' literally, 'mean' as the fraction β / (hw T_valid) and
'temperature' as exp(t) T_valid times that fraction with a learnable t.

Edge-padded frames (a video shorter than the clip repeats its first or last
frame) are marked invalid in `frame_mask`: they are never keys, never pooled and
never counted as queries, so a padded clip gives the output of the clip without
the padding.

`impl='dense'` materializes the (T hw)^2 attention and is the test reference.
`impl='blocked'` never holds more than one (hw, hw) frame-pair block: a scan over
query frames runs an online (flash-style) softmax over key frames for the outputs
and the log-sum-exp, then a second pass over key frames for the column sums of
the normalised attention (per pair of frames: the frame-to-frame attention).
Every block is recomputed in the backward pass (jax.checkpoint on the query-frame
and key-frame steps, which keep only the online-softmax carries), so beyond the
clip's features, q, k, v and outputs, memory holds O(hw^2) at a time, and plain
autodiff gives the gradient. At paper scale (11 x 40x40, C = 2048 -> 512)
forward+backward needs 563 MiB against the dense 6.2 GiB
(benchmarks/cfsa_attention.py).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models import cmsa
from cmsa_jax.models import multimodal

IMPLS = ('blocked', 'dense')
FRAME_WEIGHTS = cmsa.WORD_WEIGHTS
TOKENS = ('position', 'relative', 'visual')
VALUES = ('linear', 'moments')
OUT_INITS = ('xavier', 'zeros')
TIME_DIM = 1
CENTRE_DIMS = slice(4, 6)  # (x_ctr, y_ctr) of multimodal.spatial_coords.
LOCALITY_INIT = 4.0  # λ at the start: exp(-λ d²) halves at d = 0.42 (1.7 cells of 8).
MOMENTS = 3  # Values of g ⊗ (1, δ, δ²).
_NEG = -1e30  # Finite "minus infinity": a fully masked block keeps exp() finite.


class CFSAOutput(NamedTuple):
  """features: (B, h, w, C_v) V_c + V̂ of the annotated frame; frame_weights:
  (B, T) α of Eq.11, 0 on invalid frames; frame_attention: (B, T, T) entry
  [t, t'] the attention frame t's queries put on frame t' (mean over t's pixels;
  rows of valid frames sum to 1, of invalid ones are 0)."""
  features: jax.Array
  frame_weights: jax.Array
  frame_attention: jax.Array


def attention_rows(q, k, frame_mask, bias=None):
  """r of Eq.9 for the queries q (B, T_q, hw, d) over every valid key of k (B, T, hw, d):
  (B, T_q, hw, T, hw) float32; bias: None or (hw, hw) added to every frame pair's logits."""
  (b, tq, hw, d), t = q.shape, k.shape[1]
  logits = jnp.einsum('bid,bjd->bij', q.reshape(b, tq * hw, d),
                      k.reshape(b, t * hw, d)).astype(jnp.float32)  # Eq.9
  if bias is not None:
    logits = (logits.reshape(b, tq, hw, t, hw) + bias[:, None]).reshape(logits.shape)
  attn = cmsa.masked_softmax(logits, jnp.repeat(frame_mask, hw, axis=1)[:, None, :])
  return attn.reshape(b, tq, hw, t, hw)


def dense_attention(q, k, v, frame_mask, bias=None):
  """Eq.9-10 with the full (T hw)^2 matrix. q, k: (B, T, hw, d); v: (B, T, hw, d_v);
  bias as `attention_rows`.

  Returns (sum r v (B, T, hw, d_v), frame-to-frame attention (B, T, T))."""
  b, t, hw, _ = q.shape
  blocks = attention_rows(q, k, frame_mask, bias)
  out = jnp.einsum('bij,bjd->bid', blocks.reshape(b, t * hw, t * hw).astype(v.dtype),
                   v.reshape(b, t * hw, v.shape[-1])).reshape(v.shape)  # Eq.10's sum.
  return out, jnp.einsum('bspuq->bsu', blocks) / hw


def blocked_attention(q, k, v, frame_mask, bias=None):
  """Same as `dense_attention` one (hw, hw) frame-pair block at a time."""
  b, t, hw, _ = q.shape
  d = v.shape[-1]
  valid = frame_mask[:, :, None, None]
  f32 = jnp.float32

  def logits(q_frame, j):
    s = jnp.einsum('bpd,bqd->bpq', q_frame, k[:, j]).astype(f32)  # Eq.9, one block.
    return jnp.where(valid[:, j], s if bias is None else s + bias, _NEG)

  @jax.checkpoint
  def query_frame(_, q_frame):
    @jax.checkpoint  # The backward pass keeps the carries and recomputes each block.
    def online(carry, j):  # Online softmax over key frames.
      m, total, acc = carry
      s = logits(q_frame, j)
      # The result does not depend on m, so its gradient is exact without it.
      m_new = jax.lax.stop_gradient(jnp.maximum(m, jnp.max(s, axis=-1)))
      p = jnp.where(valid[:, j], jnp.exp(s - m_new[..., None]), 0)
      scale = jnp.exp(m - m_new)
      acc = acc * scale[..., None] + jnp.einsum('bpq,bqd->bpd', p.astype(v.dtype), v[:, j])
      return (m_new, total * scale + jnp.sum(p, axis=-1), acc), None

    init = (jnp.full((b, hw), _NEG, f32), jnp.zeros((b, hw), f32), jnp.zeros((b, hw, d), f32))
    (m, total, acc), _ = jax.lax.scan(online, init, jnp.arange(t))
    log_total = m + jnp.log(total)

    @jax.checkpoint
    def column_sums(_, j):  # Second pass: the normalised block, summed.
      p = jnp.where(valid[:, j], jnp.exp(logits(q_frame, j) - log_total[..., None]), 0)
      return None, jnp.einsum('bpq->b', p)

    _, received = jax.lax.scan(column_sums, None, jnp.arange(t))
    return None, ((acc / total[..., None]).astype(v.dtype), received.T / hw)

  _, (out, frame_attention) = jax.lax.scan(query_frame, None, jnp.swapaxes(q, 0, 1))
  return jnp.swapaxes(out, 0, 1), jnp.swapaxes(frame_attention, 0, 1)


_ATTENTION = {'dense': dense_attention, 'blocked': blocked_attention}


def time_coords(num_frames: int, centre: int) -> jax.Array:
  """δ_t = (t - c) / max(τ, 1), (T, 1), with τ = num_frames // 2."""
  return ((jnp.arange(num_frames) - centre) / max(num_frames // 2, 1))[:, None].astype(jnp.float32)


class CFSA(nnx.Module):
  """Cross-frame self-attention and frame pooling for one feature level."""

  def __init__(self, visual_dim: int, *, attn_dim: int = 512, impl: str = 'blocked',
               frame_weight: str = 'temperature', tokens: str = 'visual',
               values: str = 'linear', out_init: str = 'xavier', dtype=jnp.float32,
               rngs: nnx.Rngs):
    check_choices(impl, frame_weight, tokens, values)
    cmsa.check_choice('cfsa_out_init', out_init, OUT_INITS)
    self.visual_dim, self.impl, self.frame_weight, self.dtype = visual_dim, impl, frame_weight, dtype
    self.tokens, self.values = tokens, values
    where_dim = {'visual': 0, 'position': multimodal.SPATIAL_DIM + TIME_DIM,
                 'relative': TIME_DIM}[tokens]  # Of the query and key tokens.
    value_dim = visual_dim + (2 + TIME_DIM if tokens == 'relative' else where_dim)
    linear = lambda i, o, use_bias=True: nnx.Linear(
        i, o, use_bias=use_bias, dtype=dtype, rngs=rngs,
        kernel_init=nnx.initializers.xavier_uniform())
    self.query = linear(visual_dim + where_dim, attn_dim)
    self.key = linear(visual_dim + where_dim, attn_dim, use_bias=False)  # See cmsa.CMSA.
    self.value = linear(value_dim * (MOMENTS if values == 'moments' else 1), attn_dim)
    self.out = linear(attn_dim, visual_dim)
    if out_init == 'zeros':  # V̂ = 0 at the start: the video model starts as the image model.
      self.out.kernel[...] = jnp.zeros_like(self.out.kernel[...])
    if frame_weight == 'temperature':  # Eq.11's learnable sharpness, t (log scale).
      self.frame_log_temperature = nnx.Param(jnp.zeros((), jnp.float32))
    if tokens == 'relative':  # l of Eq.9's locality term, λ = exp(l).
      self.log_locality = nnx.Param(jnp.log(jnp.float32(LOCALITY_INIT)))

  def __call__(self, visual: jax.Array, frame_mask: jax.Array) -> CFSAOutput:
    """visual: (B, T, h, w, C_v) L2-normalized, T odd, the annotated frame in the
    middle; frame_mask: (B, T) bool, False on edge-padded frames."""
    b, t, h, w, cv = visual.shape
    centre, hw = t // 2, h * w
    q, k, v, bias, frame_mask = self._attention_inputs(visual, frame_mask)
    attended, frame_attention = _ATTENTION[self.impl](q, k, v, frame_mask, bias)  # Eq.9-10
    if self.tokens == 'relative':
      attended = self._relative(attended, _centres(h, w))
    frame_attention = frame_attention * frame_mask[:, :, None]  # Valid queries only.
    received = jnp.sum(frame_attention, axis=1) * hw
    temperature = self.frame_log_temperature[...] if self.frame_weight == 'temperature' else None
    weights = cmsa.word_weights(received, frame_mask, hw, self.frame_weight, temperature)
    # Eq.11 before W_o (linear, and sum_t α_t = 1): V̂ = W_o sum_t α_t attended_t + b_o.
    pooled = jnp.einsum('bt,btpd->bpd', weights.astype(attended.dtype), attended)
    features = visual.reshape(b, t, hw, cv)[:, centre].astype(self.dtype) + self.out(pooled)
    return CFSAOutput(features.reshape(b, h, w, cv), weights, frame_attention)

  def query_attention(self, visual: jax.Array, frame_mask: jax.Array,
                      query_weights: jax.Array) -> jax.Array:
    """Where chosen queries of the annotated frame look: sum_p w_p r(t'p' | cp),
    (B, T, h, w), for query_weights w (B, h, w) (e.g. the predicted mask, summing
    to 1: then each map is the share of their attention on frame t' pixel p').
    visual and frame_mask as __call__."""
    b, t, h, w, _ = visual.shape
    q, k, _, bias, frame_mask = self._attention_inputs(visual, frame_mask)
    rows = attention_rows(q[:, t // 2:t // 2 + 1], k, frame_mask, bias)[:, 0]
    return jnp.einsum('bp,bptq->btq', query_weights.reshape(b, h * w), rows).reshape(b, t, h, w)

  def _attention_inputs(self, visual, frame_mask):
    """q, k (B, T, hw, attn_dim), v (B, T, hw, attn_dim + moment sums), the logits'
    (hw, hw) bias or None, and the frame mask with the annotated frame valid."""
    b, t, h, w, cv = visual.shape
    if cv != self.visual_dim or t % 2 != 1 or frame_mask.shape != (b, t):
      raise ValueError(f'CFSA expects visual (B, T odd, h, w, {self.visual_dim}) and '
                       f'frame_mask (B, T), got {visual.shape} and {frame_mask.shape}.')
    centre, hw = t // 2, h * w
    frame_mask = jnp.asarray(frame_mask, bool).at[:, centre].set(True)
    visual = visual.astype(self.dtype).reshape(b, t, hw, cv)
    delta = time_coords(t, centre)  # (T, 1)
    spatial = (_centres(h, w) if self.tokens == 'relative'  # x_p: for the values only.
               else jnp.asarray(multimodal.spatial_coords(h, w)).reshape(hw, -1))
    position = jnp.concatenate([  # [s_p, δ_t] (or [x_p, δ_t]) of every token, (T, hw, ·).
        jnp.broadcast_to(spatial[None], (t,) + spatial.shape),
        jnp.broadcast_to(delta[:, None], (t, hw, TIME_DIM))], -1).astype(self.dtype)
    key_kernel, bias = self.key.kernel[...], None
    if self.tokens == 'position':
      # 1/w, 1/h are the same for every key: their rows act as a key bias (held at 0).
      key_kernel = key_kernel.at[cv + multimodal.SPATIAL_DIM - multimodal.CONSTANT_SPATIAL_DIM:
                                 cv + multimodal.SPATIAL_DIM].set(0)
    if self.tokens == 'relative':  # Eq.9's locality term, the same for every frame pair.
      bias = -jnp.exp(self.log_locality[...]) * jnp.sum(
          (spatial[:, None] - spatial[None]) ** 2, -1)
    where = {'visual': None, 'position': position, 'relative': position[..., -TIME_DIM:]}
    q = self._project(self.query.kernel[...], self.query.bias, visual, where[self.tokens])
    k = self._project(key_kernel, None, visual, where[self.tokens])
    v = self._values(visual, None if self.tokens == 'visual' else position, delta)
    if self.tokens == 'relative':  # sum r δ^m of each query, m >= 1: columns after v.
      v = jnp.concatenate([v, jnp.broadcast_to(
          delta[None, :, None] ** jnp.arange(1, self._moments()).astype(self.dtype),
          (b, t, hw, self._moments() - 1))], -1)
    return q, k, v, bias, frame_mask

  def _moments(self):
    return MOMENTS if self.values == 'moments' else 1

  def _project(self, kernel, bias, visual, position):
    """W g_tp + b without building g (g_tp = [v_tp, position_tp] or v_tp): (B, T, hw, d)."""
    kernel = kernel.astype(self.dtype)
    out = jnp.einsum('btpc,cd->btpd', visual, kernel[:self.visual_dim])
    if position is not None:
      out = out + jnp.einsum('tpc,cd->tpd', position, kernel[self.visual_dim:])
    return out if bias is None else out + bias[...].astype(self.dtype)

  def _values(self, visual, position, delta):
    """Eq.10's values: W_v g + b ('linear') or W_v [g, δ g, δ² g] + b ('moments')."""
    kernel = self.value.kernel[...]
    if self.values == 'linear':
      return self._project(kernel, self.value.bias, visual, position)
    parts = jnp.split(kernel, MOMENTS)  # The rows of g, δ g and δ² g.
    out = self._project(parts[0], self.value.bias, visual, position)
    for power in range(1, MOMENTS):
      scale = (delta[:, 0] ** power).astype(self.dtype)[None, :, None, None]
      out = out + scale * self._project(parts[power], None, visual, position)
    return out

  def _relative(self, attended, centres):
    """The values of the keys' x_p' (from `_values`), made x_p' - x_p of the query:
    sum r δ^m (x_p' - x_p) = sum r δ^m x_p' - x_p sum r δ^m, per moment m."""
    d = self.value.kernel.shape[-1]
    sums = jnp.concatenate([jnp.ones(attended.shape[:-1] + (1,), attended.dtype),  # m = 0
                            attended[..., d:]], -1)
    rows = jnp.split(self.value.kernel[...], self._moments())  # Per moment: [v, x, δ] rows.
    centre_rows = jnp.stack([r[self.visual_dim:self.visual_dim + 2] for r in rows])  # (M, 2, d)
    own = jnp.einsum('pc,mcd->pmd', centres, centre_rows.astype(self.dtype))
    return attended[..., :d] - jnp.einsum('btpm,pmd->btpd', sums, own)


def _centres(h: int, w: int) -> jax.Array:
  """x_p = (x_ctr, y_ctr) of each cell of an (h, w) grid, (hw, 2)."""
  return jnp.asarray(multimodal.spatial_coords(h, w)[..., CENTRE_DIMS]).reshape(h * w, 2)


def check_choices(impl: str, frame_weight: str, tokens: str, values: str) -> None:
  """ConfigError for an unknown choice or an incompatible pair (one line naming both)."""
  cmsa.check_choice('cfsa_impl', impl, IMPLS)
  cmsa.check_choice('frame_weight', frame_weight, FRAME_WEIGHTS)
  cmsa.check_choice('cfsa_tokens', tokens, TOKENS)
  cmsa.check_choice('cfsa_values', values, VALUES)
  if values == 'moments' and tokens == 'visual':
    raise errors.ConfigError(
        "cfsa_values='moments' with cfsa_tokens='visual': moments weight the tokens by "
        "time, and visual tokens carry no position, so V̂ could not say where a shape went; "
        "use cfsa_tokens='position' or cfsa_values='linear'.")
