r"""Converts a torchvision ResNet / DeepLabV3 checkpoint into a backbone `.npz`.

Nothing is downloaded: fetch the checkpoint on a machine with internet first,
either torchvision's ResNet-101 IMAGENET1K_V1
(https://download.pytorch.org/models/resnet101-63fe2227.pth) or
DeepLabV3-ResNet-101 COCO_WITH_VOC_LABELS_V1
(https://download.pytorch.org/models/deeplabv3_resnet101_coco-586e9e4e.pth).
Reading `.pth` needs torch; `.npz` / `.safetensors` with the same keys do not.

  python -m cmsa_jax.tools.import_weights \
      --input=resnet101-63fe2227.pth --output=backbone.npz

Then set `config.backbone_init = "backbone.npz"` (the 'resnet' backbone's
`load` also reads the torchvision file itself; converting once reports every
key and drops torch from later runs).
"""

from collections.abc import Sequence

from absl import app
from absl import flags
from flax import nnx

from cmsa_jax.models import weights
from cmsa_jax.models.backbones import resnet

_INPUT = flags.DEFINE_string(
    'input', None, 'torchvision state dict (.pth/.pt/.npz/.safetensors).')
_OUTPUT = flags.DEFINE_string('output', None, 'Converted backbone (.npz).')
_ALLOW_MISSING = flags.DEFINE_list(
    'allow_missing', [],
    'Glob patterns of torch keys that may keep their initial values.')
_BLOCKS = flags.DEFINE_list(
    'blocks', ['3', '4', '23', '3'], 'Bottleneck blocks per stage (ResNet-101).')
_WIDTH = flags.DEFINE_integer('width', 64, 'Channels of the stem and res2.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not _INPUT.value or not _OUTPUT.value:
    raise app.UsageError(
        f'--input and --output are required. {resnet.WEIGHTS_HELP}')
  # Dilations change no weight shapes, so the default ones serve any backbone.
  model = resnet.Backbone(blocks=[int(b) for b in _BLOCKS.value],
                          width=_WIDTH.value, rngs=nnx.Rngs(0))
  state_dict = weights.load_state_dict(_INPUT.value, resnet.WEIGHTS_HELP)
  print(f'{_INPUT.value}: {len(state_dict)} tensors')
  report = resnet.import_torchvision(state_dict, model, allow_missing=_ALLOW_MISSING.value,
                                     source=_INPUT.value)
  print(report)
  weights.save_npz(model, _OUTPUT.value)
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
