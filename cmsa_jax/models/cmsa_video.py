"""The CMSA model for video: the image model on the annotated frame, its visual
features first updated by cross-frame self-attention over the clip (Eq.9-11).

The backbone runs on every frame of the clip (2τ+1 frames: activation memory
grows linearly with τ; frozen, as in the paper, it is never differentiated).
At each level the model uses (Res3, Res4, Res5, or Res5 alone with
fusion='res5') a CFSA of its own (cfsa.py) turns the clip's features into the
annotated frame's V_c + V̂; then Eq.1-7 run as in the image model
(cmsa_image.Model.decode), Eq.8 is its loss. Every level gets CFSA because GMLF
fuses all of them into the mask: a level without it would give the fusion a
motion-blind view of the frame. `cfsa=False` is the ablation: the image model
on the annotated frame alone.
"""

import inspect

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax.models import cfsa as cfsa_lib
from cmsa_jax.models import cmsa_image


class Model(cmsa_image.Model):
  """Cross-modal self-attention network for referring video segmentation.

  Takes every argument of cmsa_image.Model and `cfsa` (use CFSA), `cfsa_impl`
  ('blocked' or the 'dense' reference), `frame_weight` (Eq.11's
  normalisation, as Eq.4's word_weight), `cfsa_tokens` ('visual': the paper's,
  'position' or 'relative'), `cfsa_values` ('linear': the paper's, or
  'moments') and `cfsa_out_init` ('xavier' or 'zeros': V̂ = 0 at the start); see
  cfsa.py. The defaults are the paper's CFSA (configs/demo_video.py chooses its
  own, README "Video"). Returns cmsa_image.Model's outputs
  for the annotated frame and, with CFSA,
    frame_weights: (B, L, T) α of Eq.11 per level.
    frame_attention: (B, L, T, T) [t, t'] the attention frame t's queries put
      on frame t' per level (row c: where the annotated frame looked).
  """

  input_keys = ('frames', 'frame_mask', 'tokens', 'token_mask')
  target_key = 'mask'

  def __init__(self, *, cfsa: bool = True, cfsa_impl: str = 'blocked',
               frame_weight: str = 'temperature', cfsa_tokens: str = 'visual',
               cfsa_values: str = 'linear', cfsa_out_init: str = 'xavier', **image_args):
    cfsa_lib.check_choices(cfsa_impl, frame_weight, cfsa_tokens, cfsa_values)
    super().__init__(**image_args)
    self.use_cfsa = cfsa
    if not cfsa:
      return
    arg = lambda name: image_args.get(name, _IMAGE_DEFAULTS[name])
    self.cfsa = nnx.List([
        cfsa_lib.CFSA(self.backbone.levels[level],
                      attn_dim=arg('attn_dim'), impl=cfsa_impl, frame_weight=frame_weight,
                      tokens=cfsa_tokens, values=cfsa_values, out_init=cfsa_out_init,
                      dtype=arg('dtype'),
                      rngs=image_args['rngs'])
        for level in self.levels])

  def __call__(self, frames: jax.Array, frame_mask: jax.Array, tokens: jax.Array,
               token_mask: jax.Array) -> dict[str, jax.Array]:
    """frames: (B, T, H, W, 3) RGB in [0, 255], T odd, the annotated frame in the
    middle; frame_mask: (B, T) bool, False on edge-padded frames; tokens and
    token_mask as cmsa_image.Model."""
    if frames.ndim != 5 or frames.shape[1] % 2 != 1 or frame_mask.shape != frames.shape[:2]:
      raise ValueError(f'frames must be (B, T odd, H, W, 3) with frame_mask (B, T), got '
                       f'{frames.shape} and {frame_mask.shape}.')
    cmsa_image.check_inputs(frames[:, frames.shape[1] // 2], tokens, token_mask)
    return self.head(self.features(frames), frame_mask, tokens, token_mask, frames.shape[2:4])

  def features(self, frames: jax.Array) -> dict[str, jax.Array]:
    """The backbone's {level: (B, T', h, w, C)} of the frames the model reads: every
    frame with CFSA (T' = T), the annotated one without (T' = 1)."""
    b, t, height, width, _ = frames.shape
    if not self.use_cfsa:
      frames, t = frames[:, t // 2:t // 2 + 1], 1
    clip = self.backbone(cmsa_image.normalize_images(frames.reshape(b * t, height, width, 3)))
    return {level: clip[level].reshape((b, t) + clip[level].shape[1:]) for level in self.levels}

  def head(self, features, frame_mask, tokens, token_mask, size) -> dict[str, jax.Array]:
    """Everything after the backbone: CFSA (Eq.9-11) on `features` (as `features`
    returns them), then Eq.1-7 on the annotated frame; logits at `size`."""
    if not self.use_cfsa:
      return self.decode({level: x[:, 0] for level, x in features.items()}, tokens,
                         token_mask, size)
    outputs = {}
    for level, layer in zip(self.levels, self.cfsa):
      outputs[level] = layer(self.normalize(features[level]), frame_mask)  # Eq.1's v / ||v||.
    out = self.decode({level: o.features for level, o in outputs.items()}, tokens,
                      token_mask, size)
    out['frame_weights'] = jnp.stack([o.frame_weights for o in outputs.values()], 1)
    out['frame_attention'] = jnp.stack([o.frame_attention for o in outputs.values()], 1)
    return out


_IMAGE_DEFAULTS = {name: p.default for name, p in
                   inspect.signature(cmsa_image.Model.__init__).parameters.items()}
# The run loop checks config.model against the signature: show the image arguments too.
Model.__init__.__signature__ = inspect.signature(Model.__init__).replace(parameters=[
    p for p in inspect.signature(Model.__init__).parameters.values()
    if p.kind != inspect.Parameter.VAR_KEYWORD] + [
        p for name, p in inspect.signature(cmsa_image.Model.__init__).parameters.items()
        if name != 'self'])
