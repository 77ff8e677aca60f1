"""Fuzzed weights files: `weights.load_state_dict` and the backbone part's `load`.

Truncated and mutated .npz / .safetensors files, arrays of wrong dtypes
(int, bool, float16, complex, text) and shapes, random bytes, and .pth files
(torch.load's own restricted unpickler when torch is installed). Each load gives
the file's arrays, or an `errors.UserError` naming the file and leaves the model
as it was (property in tests/fuzzing.py).
"""

import io
import zipfile

from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

import fuzzing
from cmsa_jax.models import weights
from cmsa_jax.models.backbones import resnet

pytestmark = pytest.mark.fuzz


BACKBONE = resnet.Backbone(blocks=(1, 1, 1, 1), width=2, rngs=nnx.Rngs(0))


def _arrays(module):
  return {weights.path_str(p): np.asarray(v[...]) for p, v in weights.variables(module).items()}


def _npz(arrays):
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def _safetensors(arrays):
  return safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


SAVERS = {'.npz': _npz, '.safetensors': _safetensors}
DTYPES = ['float32', 'float16', 'float64', 'int8', 'int64', 'uint8', 'bool', 'complex64', '<U3']


@st.composite
def weight_files(draw, arrays):
  """(extension, bytes): the backbone's own file, mutated, or with arrays retyped/reshaped."""
  ext = draw(st.sampled_from(sorted(SAVERS) + ['.pth']))
  if ext == '.pth':
    return ext, draw(st.binary(max_size=64) | st.sampled_from(
        [b'PK\x03\x04', _npz(arrays)]).flatmap(fuzzing.mutated))
  arrays = dict(arrays)
  for key in draw(st.lists(st.sampled_from(sorted(arrays)), max_size=3, unique=True)):
    edit = draw(st.sampled_from(['dtype', 'shape', 'drop', 'rename']))
    if edit == 'dtype':
      dtype = draw(st.sampled_from(DTYPES if ext == '.npz' else DTYPES[:7]))
      arrays[key] = arrays[key].astype(dtype)
    elif edit == 'shape':
      arrays[key] = np.zeros(draw(st.lists(st.integers(0, 3), max_size=4)), np.float32)
    elif edit == 'drop':
      del arrays[key]
    else:
      arrays[key + '.x'] = arrays.pop(key)
  data = SAVERS[ext](arrays)
  if draw(st.booleans()):
    data = draw(fuzzing.mutated(data))
  return ext, data


def _npz_with_object_array():
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as z:
    with z.open('a.npy', 'w') as f:
      np.lib.format.write_array(f, np.array([{'x': 1}], object), allow_pickle=True)
  return buffer.getvalue()


ARRAYS = _arrays(BACKBONE)


@fuzzing.budget(20)
@given(file=weight_files(ARRAYS))
# Crashes found and fixed in weights.load_state_dict (_READ_ERRORS, the dtype check):
@example(file=('.npz', _npz_with_object_array()))  # allow_pickle=False: ValueError.
@example(file=('.npz', _npz(dict(ARRAYS, **{'conv1/kernel': ARRAYS['conv1/kernel'] + 1j}))))
@example(file=('.npz', _npz(dict(ARRAYS, **{'conv1/kernel': np.array(['abc'])}))))
@example(file=('.safetensors', _safetensors(ARRAYS)[:100]))  # SafetensorError.
@example(file=('.pth', b'PK\x03\x04'))  # Without torch: ImportError.
def test_backbone_weights(tmp_path_factory, file):
  ext, data = file
  sandbox = fuzzing.decoys(tmp_path_factory.mktemp('weights'))
  path = sandbox / f'backbone{ext}'
  path.write_bytes(data)
  before = _arrays(BACKBONE)
  stored = fuzzing.check(lambda: weights.load_state_dict(str(path)), name=path,
                         sandbox=sandbox, given=path)
  if stored is not None:
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in 'biuf' for v in stored.values())
  try:
    loaded = fuzzing.check(lambda: BACKBONE.load(str(path)) or True, name=path,
                           sandbox=sandbox, given=path)
    after = _arrays(BACKBONE)
    if not loaded:
      assert all(np.array_equal(before[k], after[k]) for k in before), 'a failed load changed it'
    assert all(v.dtype == before[k].dtype for k, v in after.items())  # Cast to the model's.
  finally:
    weights.assign(BACKBONE, {p: before[weights.path_str(p)] for p in weights.variables(BACKBONE)})
