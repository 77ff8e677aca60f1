"""Backbones by name: `config.model.backbone`, built with `config.model.backbone_args`.

A backbone is an nnx.Module with
  __call__(images (B, H, W, 3) float, ImageNet-normalised RGB)
      -> {level: (B, H/8, W/8, C_level)}   (it may return more levels than it uses)
  levels: {level: C_level}   the levels the model uses, lowest first (the paper:
                             Res3, Res4, Res5, all at output stride 8); each gets
                             its own Eq.1-5 and GMLF fuses them (Eq.6-7).
  frozen: bool               whether training leaves its parameters as they are.
  load(path)                 pretrained weights, key table + shape check per tensor.
It is built as `cls(**backbone_args, dtype=..., rngs=...)`.

Adding a backbone: a module here defining such a class, and one line below.
"""

from cmsa_jax.models import parts
from cmsa_jax.models.backbones import resnet

REGISTRY = parts.Registry('backbone', {
    'resnet': resnet.Backbone,  # DeepLab ResNet (the paper's ResNet-101 by default).
})
