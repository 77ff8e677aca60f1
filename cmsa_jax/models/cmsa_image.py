"""The CMSA referring-segmentation model for images and its loss (Eq.8).

Two parts chosen by name (cmsa_jax/models/backbones/, cmsa_jax/models/text/):
the backbone's feature levels (the paper: ResNet Res3, Res4, Res5 at output
stride 8) each form the joint feature of Eq.1 with the text encoder's word
features (the paper: a word embedding), go through their own cross-modal
self-attention and word pooling (Eq.2-5, cmsa.py) and are fused by GMLF
(Eq.6-7, gmlf.py) into one logit map, upsampled bilinearly to the input.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cmsa_jax.models import cmsa
from cmsa_jax.models import gmlf
from cmsa_jax.models import kernels
from cmsa_jax.models import multimodal
from cmsa_jax.models import remat
from cmsa_jax.models import backbones
from cmsa_jax.models import text

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # torchvision.
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

def normalize_images(images: jax.Array) -> jax.Array:
  """RGB in [0, 255] -> ImageNet-standardized float32 (torchvision convention)."""
  return (images.astype(jnp.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD


def check_inputs(images, tokens, token_mask):
  """ValueError naming the input unless images are (B, H, W, 3) and tokens match token_mask."""
  if images.ndim != 4 or images.shape[-1] != 3 or not (
      jnp.issubdtype(images.dtype, jnp.floating) or images.dtype == jnp.uint8):
    raise ValueError('images must be uint8 or float (B, H, W, 3) RGB in [0, 255], got '
                     f'{images.dtype} {images.shape}.')
  # (B, N) word ids, or (B, N, K) sub-word ids per word (a text encoder's own tokenizer).
  if tokens.ndim not in (2, 3) or not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f'tokens must be integer (B, N) or (B, N, K), got {tokens.dtype} '
                     f'{tokens.shape}.')
  if token_mask.shape != tokens.shape[:2] or token_mask.dtype != jnp.bool_:
    raise ValueError(f'token_mask must be bool (B, N) as tokens {tokens.shape}, '
                     f'got {token_mask.dtype} {token_mask.shape}.')
  if images.shape[0] != tokens.shape[0]:
    raise ValueError(f'images {images.shape} and tokens {tokens.shape} differ in batch size.')


class Model(nnx.Module):
  """Cross-modal self-attention network for referring image segmentation.

  Returns a dict with
    logits: (B, H, W) float32 mask logits at the input size.
    word_attention: (B, L, N) the Eq.4 word weights of each level (Res3,
      Res4, Res5; only Res5, L = 1, when fusion='res5'), 0 on padding.
    heatmap: (B, h, w) in [0, 1] at feature size: the attention each pixel
      receives in Res5's CMSA, summed over all valid queries, min-max
      normalized per image (Fig.7-style; all 0 where it is uniform).

  Parts: `backbone` names a backbone of cmsa_jax/models/backbones/ built with
  `backbone_args` (default: the paper's ResNet-101, frozen), `text_encoder` a
  text encoder of cmsa_jax/models/text/ built with `text_args` and
  `vocab_size` (default: the paper's word embedding, C_l = 1000). They are the
  attributes `backbone` and `embed` (the name the word embedding had before
  parts, so older checkpoints keep their parameter paths); `load_pretrained`
  loads their weights and `trainable` is the nnx filter of the parameters that
  training updates (those of the parts that are not `frozen`, and the rest).

  `dtype` is the compute dtype (parameters stay float32; softmax statistics, the
  logits and the loss are float32 whatever it is). `remat_cmsa` checkpoints each
  level's CMSA with a named policy of `remat.POLICIES` (a backbone may take its
  own `remat`).
  """

  input_keys = ('image', 'tokens', 'token_mask')  # __call__'s arguments.
  target_key = 'mask'
  parts = ('backbone', 'embed')  # Attributes holding the model parts.

  def __init__(self, *, vocab_size: int, backbone: str = 'resnet',
               backbone_args: dict | None = None, text_encoder: str = 'embed',
               text_args: dict | None = None,
               attn_dim: int = 512, fusion_dim: int = 500,
               cmsa_impl: str = 'factorized', pooling: str = 'attention',
               word_weight: str = 'temperature', attention: str = 'full',
               qk_init_scale: float = 1.0, fusion: str = 'gated',
               fusion_relu: bool = False, custom_gradients: bool = True,
               remat_cmsa: str = 'none', dtype=jnp.float32, rngs: nnx.Rngs):
    remat.check('remat_cmsa', remat_cmsa)
    self.remat_cmsa = remat_cmsa
    self.backbone = backbones.REGISTRY.build(backbone, backbone_args, dtype=dtype, rngs=rngs)
    self.embed = text.REGISTRY.build(text_encoder, text_args, vocab_size=vocab_size,
                                     dtype=dtype, rngs=rngs)
    self.custom_gradients = custom_gradients
    levels = tuple(self.backbone.levels)
    self.levels = levels[-1:] if fusion == 'res5' else levels
    visual_dims = [self.backbone.levels[level] for level in self.levels]
    word_dim = self.embed.width
    self.cmsa = nnx.List([
        cmsa.CMSA(c, word_dim, attn_dim=attn_dim, impl=cmsa_impl,
                  pooling=pooling, word_weight=word_weight,
                  attention=attention, qk_init_scale=qk_init_scale,
                  custom_gradients=custom_gradients, dtype=dtype, rngs=rngs)
        for c in visual_dims])
    self.fusion = gmlf.GMLF(
        [c + word_dim + multimodal.SPATIAL_DIM for c in visual_dims],
        dim=fusion_dim, fusion=fusion, relu=fusion_relu, dtype=dtype, rngs=rngs)

  def load_pretrained(self, **paths: str) -> None:
    """Loads each part's weights: load_pretrained(backbone=PATH, embed=PATH); '' skips."""
    unknown = sorted(set(paths) - set(self.parts))
    if unknown:
      raise ValueError(f'load_pretrained: {unknown} are not parts of the model ({self.parts}).')
    for name, path in paths.items():
      if path:
        getattr(self, name).load(path)

  @property
  def trainable(self):
    """nnx filter of the parameters training updates: all but those of frozen parts."""
    frozen = tuple(name for name in self.parts if getattr(self, name).frozen)
    return nnx.All(nnx.Param, lambda path, _: not path or path[0] not in frozen)

  def __call__(self, images: jax.Array, tokens: jax.Array,
               token_mask: jax.Array) -> dict[str, jax.Array]:
    """images: (B, H, W, 3) float RGB in [0, 255]; tokens: (B, N) int;
    token_mask: (B, N) bool, True on words (each expression needs one)."""
    check_inputs(images, tokens, token_mask)
    return self.decode(self.backbone(normalize_images(images)), tokens, token_mask,
                       images.shape[1:3])

  def normalize(self, x: jax.Array) -> jax.Array:
    """Eq.1's x / ||x|| over channels."""
    return kernels.l2_normalize(x, custom_gradient=self.custom_gradients)

  def decode(self, features, tokens, token_mask, size) -> dict[str, jax.Array]:
    """Eq.1-7 on one image's backbone features {level: (B, h, w, C)}, logits at `size`."""
    (height, width), b = size, tokens.shape[0]
    words = self.normalize(self.embed(tokens, token_mask))  # Eq.1
    run_level = remat.wrap(
        lambda layer, visual, words, mask: layer(self.normalize(visual), words, mask),
        self.remat_cmsa)
    outputs = [run_level(layer, features[level], words, token_mask)
               for level, layer in zip(self.levels, self.cmsa)]
    logits = self.fusion([o.features for o in outputs])
    logits = jax.image.resize(logits, (b, height, width), 'bilinear')
    heat = outputs[-1].pixel_attention
    low = jnp.min(heat, axis=(1, 2), keepdims=True)
    span = jnp.max(heat, axis=(1, 2), keepdims=True) - low
    heatmap = jnp.where(span > 0, (heat - low) / jnp.where(span > 0, span, 1), 0)
    heatmap = jnp.clip(heatmap, 0, 1)
    return dict(logits=logits,
                word_attention=jnp.stack([o.word_weights for o in outputs], 1),
                heatmap=heatmap)

  def loss(self, outputs: dict[str, jax.Array], batch) -> jax.Array:
    return bce_loss(outputs['logits'], batch[self.target_key])  # Eq.8


def bce_loss(logits: jax.Array, masks: jax.Array) -> jax.Array:
  """Eq.8: binary cross-entropy of logits vs {0, 1} masks, mean over pixels."""
  if logits.shape != masks.shape:
    raise ValueError(f'logits {logits.shape} and masks {masks.shape} differ in shape.')
  x = logits.astype(jnp.float32)
  z = masks.astype(jnp.float32)
  # log(1 + e^x) - x z, written to never overflow.
  return jnp.mean(jnp.maximum(x, 0) - x * z + jnp.log1p(jnp.exp(-jnp.abs(x))))
