"""Pretrained weights into model parts: what every part's `load(path)` shares.

A part imports a foreign checkpoint (torch / safetensors keys) through an
explicit key table {file key: (nnx path, Transform)} with `import_state_dict`,
and reads back its own converted files (`.npz` keyed by nnx path, written by
`save_npz`) with `load_npz`. Both check the shape of every tensor and leave the
part unchanged on any mismatch; the error is one line naming the file, the
part, and every array that differs, is missing or is extra.
"""

from collections.abc import Callable, Iterable, Mapping
import dataclasses
import fnmatch
import os
import pickle
import zipfile
import zlib

import jax.numpy as jnp
import numpy as np
from flax import nnx
import safetensors
import safetensors.numpy

from cmsa_jax import errors

Path = tuple[str | int, ...]
_LISTED = 8  # Keys named per kind of mismatch in an error.


@dataclasses.dataclass(frozen=True)
class Transform:
  """A named map from a checkpoint tensor to its JAX layout."""
  name: str
  fn: Callable[[np.ndarray], np.ndarray]


OIHW_TO_HWIO = Transform('OIHW->HWIO', lambda w: w.transpose(2, 3, 1, 0))
IDENTITY = Transform('identity', lambda w: w)
TRANSPOSE = Transform('(out,in)->(in,out)', lambda w: w.T)  # torch Linear -> nnx.Linear.

KeyTable = dict[str, tuple[Path, Transform]]


@dataclasses.dataclass
class ImportReport:
  """What `import_state_dict` did with each file key."""
  loaded: list[str] = dataclasses.field(default_factory=list)
  kept_initial: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  unexpected: list[str] = dataclasses.field(default_factory=list)
  mismatched: list[str] = dataclasses.field(default_factory=list)
  ignored: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  @property
  def ok(self) -> bool:
    return not (self.missing or self.unexpected or self.mismatched)

  def problems(self) -> str:
    """One line: the missing, unexpected and mis-shaped keys."""
    return '; '.join(f'{name} ({len(keys)}): {brief(keys, _LISTED)}'
                     for name in ('missing', 'unexpected', 'mismatched')
                     if (keys := getattr(self, name)))

  def __str__(self) -> str:
    lines = [f'loaded {len(self.loaded)} tensors']
    if self.kept_initial:
      lines.append(f'kept initial values of {len(self.kept_initial)} '
                   f'(allow_missing): {brief(self.kept_initial)}')
    lines += [f'ignored {len(keys)} {reason}: {brief(keys)}'
              for reason, keys in self.ignored.items() if keys]
    for name in ('missing', 'unexpected', 'mismatched'):
      if keys := getattr(self, name):
        lines += [f'{name} ({len(keys)}):'] + [f'  {k}' for k in keys]
    return '\n'.join(lines)


def brief(keys: list[str], n: int = 4) -> str:
  """The first `n` keys and how many more."""
  more = f', ... (+{len(keys) - n})' if len(keys) > n else ''
  return ', '.join(keys[:n]) + more


def _matches(key: str, patterns: Iterable[str]) -> bool:
  return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def path_str(path: Path) -> str:
  return '/'.join(map(str, path))


def variables(module: nnx.Module) -> dict[Path, nnx.Variable]:
  """{nnx path: variable} of every variable of `module`."""
  return dict(nnx.to_flat_state(nnx.state(module)))


def assign(module: nnx.Module, values: Mapping[Path, np.ndarray]) -> None:
  """Sets the variables at `values`' paths, in each variable's dtype."""
  current = variables(module)
  nnx.update(module, nnx.from_flat_state(
      [(p, jnp.asarray(v, current[p].dtype)) for p, v in values.items()]))


def import_state_dict(state_dict: Mapping[str, np.ndarray], module: nnx.Module,
                      table: KeyTable, *, what: str, source: str = 'the state dict',
                      ignored: Mapping[str, Iterable[str]] | None = None,
                      allow_missing: Iterable[str] = ()) -> ImportReport:
  """Copies `state_dict` into `module` through `table`, checking every shape.

  Keys matching a glob of `ignored` ({reason: patterns}) are reported, not
  loaded; missing keys matching an `allow_missing` glob keep their initial
  values. `what` names the part in errors.

  Raises:
    errors.ConfigError, one line naming `source`, `what` and every missing
    (not allowed), unexpected and mis-shaped key; `module` is unchanged then.
  """
  ignored = dict(ignored or {})
  allow_missing = tuple(allow_missing)
  current = variables(module)
  report = ImportReport(ignored={reason: [] for reason in ignored})
  values = {}
  for key, tensor in state_dict.items():
    if key not in table:
      reason = next((r for r, pats in ignored.items() if _matches(key, pats)), None)
      (report.ignored[reason] if reason else report.unexpected).append(key)
      continue
    path, transform = table[key]
    value = transform.fn(np.asarray(tensor))
    want = current[path].shape
    if value.shape == want:
      values[path] = value
      report.loaded.append(key)
    else:
      report.mismatched.append(
          f'{key} {np.shape(tensor)} -> {path_str(path)}: {value.shape} '
          f'after {transform.name}, model has {want}')
  for key in table.keys() - state_dict.keys():
    (report.kept_initial if _matches(key, allow_missing) else report.missing).append(key)
  report.kept_initial.sort()
  report.missing.sort()
  report.unexpected.sort()
  if not report.ok:
    raise errors.ConfigError(f'{source} does not fit the {what}: {report.problems()}')
  assign(module, values)
  return report


# What numpy's .npz/.npy parser, zipfile, safetensors and torch.load raise on a damaged
# file (tests/test_fuzz_weights.py).
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, RuntimeError,
                zipfile.BadZipFile, zlib.error, pickle.UnpicklingError,
                safetensors.SafetensorError)


def load_state_dict(path: str, where: str = '') -> dict[str, np.ndarray]:
  """Reads {key: array} from a `.pth`/`.pt` (needs torch), `.npz` or `.safetensors`.

  `where` tells the user where to get the file if it is missing. A damaged
  file, or one holding arrays that are not real numbers (object, text, complex),
  is an InputError naming it.
  """
  name = errors.one_line(path)
  if not os.path.exists(path):
    raise errors.NotFoundError(f'No weights file at {name}. {where}'.strip())
  ext = os.path.splitext(path)[1].lower()
  if ext not in ('.pth', '.pt', '.npz', '.safetensors'):
    raise errors.ConfigError(f'Unknown weights format {errors.one_line(ext)!r} of {name}; '
                             'expected .pth, .pt, .npz or .safetensors.')
  try:
    if ext in ('.pth', '.pt'):
      state_dict = _read_torch(path)
    elif ext == '.npz':
      with np.load(path, allow_pickle=False) as f:
        state_dict = {k: f[k] for k in f.files}
    else:
      state_dict = safetensors.numpy.load_file(path)
  except errors.UserError:
    raise
  except _READ_ERRORS as e:
    raise errors.InputError(f'{name}: not a readable {ext} weights file ({type(e).__name__}: '
                            f'{errors.one_line(e)[:200]})') from None
  if bad := [f'{errors.one_line(k)[:60]} ({v.dtype})' for k, v in state_dict.items()
             if v.dtype.kind not in 'biuf']:
    raise errors.InputError(f'{name}: {len(bad)} arrays are not real numbers: {brief(bad)}')
  return state_dict


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.MissingPackageError(
        f'Reading {errors.one_line(path)} needs PyTorch (`pip install torch`; cmsa_jax does not '
        'require it). Alternatively save the state dict as .npz or '
        '.safetensors (same keys) where torch is installed.') from None
  state_dict = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(state_dict, Mapping) or not all(
      isinstance(v, torch.Tensor) for v in state_dict.values()):
    raise errors.InputError(f'{errors.one_line(path)} does not hold a flat state dict of tensors.')
  return {k: (v.float() if v.is_floating_point() else v).numpy()
          for k, v in state_dict.items()}


def save_npz(module: nnx.Module, path: str) -> None:
  """Saves every variable of `module` to an `.npz` keyed by nnx path ('layer1/0/conv1/kernel')."""
  if not path.endswith('.npz'):
    raise ValueError(f'Converted weights files are .npz; got path {path}.')
  np.savez(path, **{path_str(p): np.asarray(v[...]) for p, v in variables(module).items()})


def is_converted(state_dict: Mapping[str, np.ndarray]) -> bool:
  """Whether a file's keys are nnx paths (a `save_npz` file), not a foreign checkpoint's."""
  return bool(state_dict) and all('/' in k or '.' not in k for k in state_dict)


def load_npz(module: nnx.Module, state_dict: Mapping[str, np.ndarray], *, what: str,
             source: str) -> None:
  """Loads a `save_npz` file's arrays into `module`, which must match it exactly.

  Raises:
    errors.ConfigError, one line naming `source`, `what` and every missing,
    extra or mis-shaped array; `module` is unchanged then.
  """
  current = {path_str(p): (p, v) for p, v in variables(module).items()}
  missing = sorted(current.keys() - state_dict.keys())
  extra = sorted(state_dict.keys() - current.keys())
  misshaped = [f'{k} file {tuple(state_dict[k].shape)} model {tuple(v.shape)}'
               for k, (_, v) in sorted(current.items())
               if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
  problems = [f'{name} ({len(keys)}): {brief(keys, _LISTED)}'
              for name, keys in (('shapes differ', misshaped), ('missing', missing),
                                 ('extra', extra)) if keys]
  if problems:
    raise errors.ConfigError(f'{source} does not fit the {what}: ' + '; '.join(problems))
  assign(module, {p: state_dict[k] for k, (p, _) in current.items()})
