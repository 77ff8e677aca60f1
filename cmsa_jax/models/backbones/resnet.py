"""The 'resnet' backbone: DeepLab ResNet (cmsa_jax/models/resnet.py) as a model part.

Levels Res3, Res4, Res5 at output stride 8, with 8, 16 and 32 x `width`
channels (512, 1024, 2048 for ResNet-101). Frozen by default, as the paper's
DeepLab backbone. `load(path)` takes either a converted `.npz` (keyed by nnx
path: `python -m cmsa_jax.tools.import_weights`, or
`python -m cmsa_jax.tools.pretrain_backbone`) or a torchvision ResNet /
DeepLabV3 checkpoint itself (`.pth` needs torch; `.npz` / `.safetensors` with
the torch keys do not), imported through `torchvision_key_table`.

Nothing is downloaded here. Get one of these files on a machine with internet
(e.g. `torchvision.models.resnet101(weights='IMAGENET1K_V1')` caches it):

* ImageNet ResNet-101 (torchvision `ResNet101_Weights.IMAGENET1K_V1`):
  https://download.pytorch.org/models/resnet101-63fe2227.pth
* DeepLabV3-ResNet-101 (torchvision `DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1`):
  https://download.pytorch.org/models/deeplabv3_resnet101_coco-586e9e4e.pth

Both expect RGB images in [0, 1] normalised with mean (0.485, 0.456, 0.406),
std (0.229, 0.224, 0.225). Two key spaces are involved: torch keys
(`layer1.0.conv1.weight`) in the original files, and nnx paths
(`layer1/0/conv1/kernel`) in converted files.
"""

from collections.abc import Iterable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cmsa_jax.models import resnet
from cmsa_jax.models import weights

WEIGHTS_HELP = (
    'Download a torchvision checkpoint on a machine with internet: ResNet-101 '
    'IMAGENET1K_V1 (https://download.pytorch.org/models/resnet101-63fe2227.pth) '
    'or DeepLabV3-ResNet-101 COCO_WITH_VOC_LABELS_V1 '
    '(https://download.pytorch.org/models/deeplabv3_resnet101_coco-586e9e4e.pth), '
    'optionally convert it with `python -m cmsa_jax.tools.import_weights`.')

# Torch keys with no counterpart in the backbone, by reason (after the
# DeepLabV3 `backbone.` prefix is removed).
IGNORED = {
    'batch-norm step counters': ('*num_batches_tracked',),
    'ImageNet classifier': ('fc.*',),
    'DeepLabV3 heads': ('classifier.*', 'aux_classifier.*'),
}
DEEPLAB_PREFIX = 'backbone.'
LEVEL_WIDTH = {'res3': 2, 'res4': 4, 'res5': 8}  # x width * EXPANSION.

_BN = (('weight', 'scale'), ('bias', 'bias'), ('running_mean', 'mean'),
       ('running_var', 'var'))


class Backbone(resnet.ResNet):
  """ResNet returning {'res2', ..., 'res5'}; the model uses `levels` of them.

  Attributes:
    levels: {'res3': C3, 'res4': C4, 'res5': C5}, channels of each level the
      model uses (all at output stride 8 with the default dilations).
    frozen: whether training leaves its parameters as they are (the paper).
  """

  def __init__(self, *, blocks: Sequence[int] = (3, 4, 23, 3), width: int = 64,
               dilations: Sequence[int] = (1, 1, 2, 4), remat: str = 'none',
               frozen: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
    super().__init__(blocks=tuple(blocks), width=width, dilations=tuple(dilations),
                     remat=remat, dtype=dtype, rngs=rngs)
    self.frozen = frozen
    self.levels = {level: width * resnet.EXPANSION * m for level, m in LEVEL_WIDTH.items()}

  def load(self, path: str) -> weights.ImportReport | None:
    """Weights from a converted `.npz` or a torchvision checkpoint (see the module doc)."""
    state_dict = weights.load_state_dict(path, WEIGHTS_HELP)
    if weights.is_converted(state_dict):
      return weights.load_npz(self, state_dict, what='resnet backbone',
                              source=f'weights file {path}')
    return import_torchvision(state_dict, self, source=f'weights file {path}')


def _conv_bn(conv_key: str, bn_key: str, conv: weights.Path, bn: weights.Path):
  yield f'{conv_key}.weight', (conv + ('kernel',), weights.OIHW_TO_HWIO)
  for torch_name, name in _BN:
    yield f'{bn_key}.{torch_name}', (bn + (name,), weights.IDENTITY)


def torchvision_key_table(model: resnet.ResNet) -> weights.KeyTable:
  """torch key -> (nnx path, transform) for every variable of `model`."""
  table = dict(_conv_bn('conv1', 'bn1', ('conv1',), ('bn1',)))
  for stage in range(1, 5):
    for j, block in enumerate(getattr(model, f'layer{stage}')):
      key, path = f'layer{stage}.{j}', (f'layer{stage}', j)
      for k in (1, 2, 3):
        table.update(_conv_bn(f'{key}.conv{k}', f'{key}.bn{k}',
                              path + (f'conv{k}',), path + (f'bn{k}',)))
      if block.downsample_conv is not None:
        table.update(_conv_bn(f'{key}.downsample.0', f'{key}.downsample.1',
                              path + ('downsample_conv',),
                              path + ('downsample_bn',)))
  return table


def import_torchvision(state_dict: Mapping[str, np.ndarray], model: resnet.ResNet,
                       allow_missing: Iterable[str] = (),
                       source: str = 'the state dict') -> weights.ImportReport:
  """Copies a torchvision ResNet or DeepLabV3 state dict into `model`.

  Every tensor goes through `torchvision_key_table` and is shape checked. Keys
  of a DeepLabV3 checkpoint lose their `backbone.` prefix; keys in `IGNORED`
  are reported, not loaded. Missing keys matching an `allow_missing` glob
  pattern (on torch keys, e.g. 'layer4.*') keep their initial values.

  Raises:
    errors.ConfigError listing every missing (not allowed), unexpected and
    mis-shaped key; the model is left unchanged then.
  """
  if any(k.startswith(DEEPLAB_PREFIX) for k in state_dict):
    state_dict = {k.removeprefix(DEEPLAB_PREFIX): v for k, v in state_dict.items()}
  return weights.import_state_dict(state_dict, model, torchvision_key_table(model),
                                   what='resnet backbone', source=source, ignored=IGNORED,
                                   allow_missing=allow_missing)
