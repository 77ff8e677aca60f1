"""DeepLab ResNet backbone (torchvision ResNet v1.5 with dilated last stages).

Mirrors torchvision's `resnet101(replace_stride_with_dilation=[False, True, True])`
layer for layer (module names included: `conv1`, `bn1`, `layer1`..`layer4`), so
torchvision ImageNet and DeepLabV3 weights imported by `cmsa_jax.models.weights` give
the same outputs as PyTorch. Images are NHWC; padding is explicit and symmetric
as in PyTorch. Batch norm is frozen: it always uses the running statistics.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models import remat as remat_lib

EXPANSION = 4  # Bottleneck output channels = EXPANSION * width of the stage.
STAGES = ('res2', 'res3', 'res4', 'res5')

# torchvision initialises convs with kaiming_normal_(mode='fan_out').
_kaiming = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class FrozenBatchNorm(nnx.Module):
  """Batch norm that always normalises with its running statistics.

  `scale` / `bias` are trainable `nnx.Param`s; `mean` / `var` are
  `nnx.BatchStat`s that no optimizer (filtering on `nnx.Param`) touches.
  """

  def __init__(self, features: int, *, eps: float = 1e-5, dtype=jnp.float32):
    self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x):
    mul = self.scale[...] * jax.lax.rsqrt(self.var[...] + self.eps)
    add = self.bias[...] - self.mean[...] * mul
    return x * mul.astype(self.dtype) + add.astype(self.dtype)


def _conv(cin, cout, k, *, stride=1, dilation=1, dtype, rngs):
  """Bias-free conv with PyTorch's symmetric padding `dilation * (k - 1) // 2`."""
  pad = dilation * (k - 1) // 2
  return nnx.Conv(
      cin, cout, (k, k), strides=stride, kernel_dilation=dilation,
      padding=((pad, pad), (pad, pad)), use_bias=False,
      kernel_init=_kaiming, dtype=dtype, rngs=rngs)


class Bottleneck(nnx.Module):
  """1x1 -> 3x3 (strided, dilated) -> 1x1 residual block (ResNet v1.5)."""

  def __init__(self, cin: int, width: int, *, stride: int, dilation: int,
               dtype, rngs: nnx.Rngs):
    cout = width * EXPANSION
    self.conv1 = _conv(cin, width, 1, dtype=dtype, rngs=rngs)
    self.bn1 = FrozenBatchNorm(width, dtype=dtype)
    self.conv2 = _conv(width, width, 3, stride=stride, dilation=dilation,
                       dtype=dtype, rngs=rngs)
    self.bn2 = FrozenBatchNorm(width, dtype=dtype)
    self.conv3 = _conv(width, cout, 1, dtype=dtype, rngs=rngs)
    self.bn3 = FrozenBatchNorm(cout, dtype=dtype)
    if stride != 1 or cin != cout:  # torchvision's `downsample`.
      self.downsample_conv = _conv(cin, cout, 1, stride=stride, dtype=dtype,
                                   rngs=rngs)
      self.downsample_bn = FrozenBatchNorm(cout, dtype=dtype)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x):
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = nnx.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    if self.downsample_conv is not None:
      x = self.downsample_bn(self.downsample_conv(x))
    return nnx.relu(x + y)


def stage_strides(dilations: Sequence[int]) -> tuple[int, ...]:
  """Stage strides for per-stage `dilations`, as torchvision derives them.

  Stage 1 has stride 1; a later stage nominally has stride 2, and where its
  dilation doubles the previous one that stride is replaced by dilation
  (torchvision's `replace_stride_with_dilation`).
  """
  dilations = tuple(dilations)
  if len(dilations) != 4 or dilations[0] != 1 or any(
      d not in (p, 2 * p) for p, d in zip(dilations, dilations[1:])):
    raise ValueError(
        'dilations must be 4 values starting at 1, each equal to or twice the '
        f'previous one (e.g. (1, 1, 2, 4)); got {dilations}.')
  return (1,) + tuple(1 if d == 2 * p else 2
                      for p, d in zip(dilations, dilations[1:]))


class ResNet(nnx.Module):
  """Bottleneck ResNet returning the four stage outputs.

  With the default `dilations=(1, 1, 2, 4)` the output stride is 8: a 320x320
  input gives 80x80 `res2` and 40x40 `res3`, `res4`, `res5`. `remat` names the
  `remat.POLICIES` entry each stage is checkpointed with.
  """

  def __init__(self, *, blocks: Sequence[int] = (3, 4, 23, 3), width: int = 64,
               dilations: Sequence[int] = (1, 1, 2, 4), remat: str = 'none',
               dtype=jnp.float32, rngs: nnx.Rngs):
    if len(blocks) != 4 or min(blocks) < 1:
      raise errors.ConfigError(f'blocks must be 4 positive counts; got {blocks}.')
    remat_lib.check('remat_backbone', remat)
    strides = stage_strides(dilations)
    self.dtype, self.remat = dtype, remat
    # Stem: 7x7/2 conv (padding 3) then 3x3/2 max pool (padding 1).
    self.conv1 = _conv(3, width, 7, stride=2, dtype=dtype, rngs=rngs)
    self.bn1 = FrozenBatchNorm(width, dtype=dtype)
    cin, prev_dilation = width, 1
    for i, (n, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
      w = width * 2**i
      # As torchvision: the first block of a stage uses the *previous* stage's
      # dilation in its 3x3 conv (e.g. layer3.0 has dilation 1, layer4.0 has
      # 2); only the blocks after it use the stage's own dilation.
      layer = [Bottleneck(cin, w, stride=stride, dilation=prev_dilation,
                          dtype=dtype, rngs=rngs)]
      layer += [Bottleneck(w * EXPANSION, w, stride=1, dilation=dilation,
                           dtype=dtype, rngs=rngs) for _ in range(n - 1)]
      setattr(self, f'layer{i + 1}', nnx.List(layer))
      cin, prev_dilation = w * EXPANSION, dilation

  def __call__(self, x) -> dict[str, jax.Array]:
    """Maps normalised (B, H, W, 3) images to {'res2', ..., 'res5'} (NHWC)."""
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'ResNet expects (B, H, W, 3) images; got {x.shape}.')
    x = nnx.relu(self.bn1(self.conv1(x.astype(self.dtype))))
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    run_stage = remat_lib.wrap(_run_stage, self.remat)
    out = {}
    for i, name in enumerate(STAGES):
      x = out[name] = run_stage(getattr(self, f'layer{i + 1}'), x)
    return out


def _run_stage(layer, x):
  for block in layer:
    x = block(x)
  return x


def resnet101(*, dtype=jnp.float32, rngs: nnx.Rngs) -> ResNet:
  """DeepLab ResNet-101 (output stride 8), as torchvision's DeepLabV3 backbone."""
  return ResNet(blocks=(3, 4, 23, 3), width=64, dilations=(1, 1, 2, 4),
                dtype=dtype, rngs=rngs)
