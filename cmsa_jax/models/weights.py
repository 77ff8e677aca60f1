"""Pretrained ResNet weights: torchvision state dicts -> `cmsa_jax.models.resnet.ResNet`.

Nothing is downloaded here. Get one of these files on a machine with internet
(e.g. `torchvision.models.resnet101(weights='IMAGENET1K_V1')` caches it):

* ImageNet ResNet-101 (torchvision `ResNet101_Weights.IMAGENET1K_V1`):
  https://download.pytorch.org/models/resnet101-63fe2227.pth
* DeepLabV3-ResNet-101 (torchvision `DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1`):
  https://download.pytorch.org/models/deeplabv3_resnet101_coco-586e9e4e.pth

then convert it once with `python -m cmsa_jax.tools.import_weights` and point
`config.backbone_init` at the resulting `.npz`. Both expect RGB images in
[0, 1] normalised with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).

Two key spaces are involved: torch keys (`layer1.0.conv1.weight`) in the
original files, and nnx paths (`layer1/0/conv1/kernel`) in converted files.
"""

from collections.abc import Callable, Iterable, Mapping
import dataclasses
import fnmatch
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models.resnet import ResNet

WEIGHTS_HELP = (
    'Download a torchvision checkpoint on a machine with internet: ResNet-101 '
    'IMAGENET1K_V1 (https://download.pytorch.org/models/resnet101-63fe2227.pth) '
    'or DeepLabV3-ResNet-101 COCO_WITH_VOC_LABELS_V1 '
    '(https://download.pytorch.org/models/deeplabv3_resnet101_coco-586e9e4e.pth).')

# Torch keys with no counterpart in the backbone, by reason (after the
# DeepLabV3 `backbone.` prefix is removed).
IGNORED = {
    'batch-norm step counters': ('*num_batches_tracked',),
    'ImageNet classifier': ('fc.*',),
    'DeepLabV3 heads': ('classifier.*', 'aux_classifier.*'),
}
DEEPLAB_PREFIX = 'backbone.'

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Transform:
  """A named map from a torch tensor to its JAX layout."""
  name: str
  fn: Callable[[np.ndarray], np.ndarray]


OIHW_TO_HWIO = Transform('OIHW->HWIO', lambda w: w.transpose(2, 3, 1, 0))
IDENTITY = Transform('identity', lambda w: w)

_BN = (('weight', 'scale'), ('bias', 'bias'), ('running_mean', 'mean'),
       ('running_var', 'var'))


def _conv_bn(conv_key: str, bn_key: str, conv: Path, bn: Path):
  yield f'{conv_key}.weight', (conv + ('kernel',), OIHW_TO_HWIO)
  for torch_name, name in _BN:
    yield f'{bn_key}.{torch_name}', (bn + (name,), IDENTITY)


def torchvision_key_table(model: ResNet) -> dict[str, tuple[Path, Transform]]:
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


@dataclasses.dataclass
class ImportReport:
  """What `import_torchvision_resnet` did with each torch key."""
  loaded: list[str] = dataclasses.field(default_factory=list)
  kept_initial: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  unexpected: list[str] = dataclasses.field(default_factory=list)
  mismatched: list[str] = dataclasses.field(default_factory=list)
  ignored: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  @property
  def ok(self) -> bool:
    return not (self.missing or self.unexpected or self.mismatched)

  def __str__(self) -> str:
    lines = [f'loaded {len(self.loaded)} tensors']
    if self.kept_initial:
      lines.append(f'kept initial values of {len(self.kept_initial)} '
                   f'(allow_missing): {_brief(self.kept_initial)}')
    lines += [f'ignored {len(keys)} {reason}: {_brief(keys)}'
              for reason, keys in self.ignored.items() if keys]
    for name in ('missing', 'unexpected', 'mismatched'):
      if keys := getattr(self, name):
        lines += [f'{name} ({len(keys)}):'] + [f'  {k}' for k in keys]
    return '\n'.join(lines)


def _brief(keys: list[str], n: int = 4) -> str:
  more = f', ... (+{len(keys) - n})' if len(keys) > n else ''
  return ', '.join(keys[:n]) + more


def _matches(key: str, patterns: Iterable[str]) -> bool:
  return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _path_str(path: Path) -> str:
  return '/'.join(map(str, path))


def _variables(model: nnx.Module) -> dict[Path, nnx.Variable]:
  return dict(nnx.to_flat_state(nnx.state(model)))


def _assign(model: nnx.Module, values: Mapping[Path, np.ndarray]) -> None:
  variables = _variables(model)
  nnx.update(model, nnx.from_flat_state(
      [(p, jnp.asarray(v, variables[p].dtype)) for p, v in values.items()]))


def import_torchvision_resnet(state_dict: Mapping[str, np.ndarray],
                              model: ResNet,
                              allow_missing: Iterable[str] = ()) -> ImportReport:
  """Copies a torchvision ResNet or DeepLabV3 state dict into `model`.

  Every tensor is transformed through `torchvision_key_table` and shape
  checked. Keys of a DeepLabV3 checkpoint lose their `backbone.` prefix; keys
  in `IGNORED` are reported, not loaded. Missing keys matching an
  `allow_missing` glob pattern (on torch keys, e.g. 'layer4.*') keep their
  initial values.

  Raises:
    ValueError listing every missing (not allowed), unexpected and mis-shaped
    key; the model is left unchanged then.
  """
  allow_missing = tuple(allow_missing)
  if any(k.startswith(DEEPLAB_PREFIX) for k in state_dict):
    state_dict = {k.removeprefix(DEEPLAB_PREFIX): v
                  for k, v in state_dict.items()}
  table = torchvision_key_table(model)
  variables = _variables(model)
  report = ImportReport(ignored={reason: [] for reason in IGNORED})
  values = {}
  for key, tensor in state_dict.items():
    if key not in table:
      reason = next((r for r, pats in IGNORED.items() if _matches(key, pats)),
                    None)
      (report.ignored[reason] if reason else report.unexpected).append(key)
      continue
    path, transform = table[key]
    value = transform.fn(np.asarray(tensor))
    want = variables[path].shape
    if value.shape == want:
      values[path] = value
      report.loaded.append(key)
    else:
      report.mismatched.append(
          f'{key} {np.shape(tensor)} -> {_path_str(path)}: {value.shape} '
          f'after {transform.name}, model has {want}')
  for key in table.keys() - state_dict.keys():
    (report.kept_initial if _matches(key, allow_missing)
     else report.missing).append(key)
  report.kept_initial.sort()
  report.missing.sort()
  if not report.ok:
    raise ValueError(f'Cannot import the ResNet weights:\n{report}')
  _assign(model, values)
  return report


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'Reading {path} needs PyTorch (`pip install torch`; cmsa_jax does not '
        'require it). Alternatively save the state dict as .npz or '
        '.safetensors (same keys) where torch is installed.') from e
  state_dict = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(state_dict, Mapping) or not all(
      isinstance(v, torch.Tensor) for v in state_dict.values()):
    raise ValueError(f'{path} does not hold a flat state dict of tensors.')
  return {k: (v.float() if v.is_floating_point() else v).numpy()
          for k, v in state_dict.items()}


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads {key: array} from a `.pth`/`.pt` (needs torch), `.npz` or `.safetensors`."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'No weights file at {path}. {WEIGHTS_HELP}')
  ext = os.path.splitext(path)[1].lower()
  if ext in ('.pth', '.pt'):
    return _read_torch(path)
  if ext == '.npz':
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  if ext == '.safetensors':
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return load_file(path)
  raise ValueError(f'Unknown weights format {ext!r} of {path}; expected '
                   '.pth, .pt, .npz or .safetensors.')


def save_backbone(model: nnx.Module, path: str) -> None:
  """Saves every variable of `model` to an `.npz` keyed by nnx path."""
  if not path.endswith('.npz'):
    raise ValueError(f'Backbone files are .npz; got path {path}.')
  np.savez(path, **{_path_str(p): np.asarray(v[...])
                    for p, v in _variables(model).items()})


def load_backbone(model: nnx.Module, path: str) -> None:
  """Loads a `save_backbone` file into `model`, which must match it exactly.

  Raises:
    FileNotFoundError if `path` does not exist; ValueError naming `path` and
    every missing, unexpected or mis-shaped entry (the model is unchanged).
  """
  if not os.path.exists(path):
    raise errors.NotFoundError(
        f'No backbone file at {path}. Create it with `python -m '
        f'cmsa_jax.tools.import_weights`. {WEIGHTS_HELP}')
  stored = load_state_dict(path)
  variables = {_path_str(p): (p, v) for p, v in _variables(model).items()}
  problems = [f'missing {k}' for k in sorted(variables.keys() - stored.keys())]
  problems += [f'unexpected {k}' for k in sorted(stored.keys() - variables.keys())]
  problems += [f'mis-shaped {k}: file has {stored[k].shape}, model has {v.shape}'
             for k, (_, v) in variables.items()
             if k in stored and stored[k].shape != v.shape]
  if problems:
    raise errors.ConfigError(f'Backbone file {path} does not fit the model:\n  ' +
                     '\n  '.join(problems))
  _assign(model, {p: stored[k] for k, (p, _) in variables.items()})
