"""Fuzzed builder inputs: refs pickles through the restricted unpickler, A2D / JHMDB
annotation files with mutated rows, and mask files (.h5, .mat v5 and v7.3) truncated,
mutated or of the wrong shape.

Each reader gives its documented result or an `errors.UserError` (an InputError is a
ValueError too, so a build skips and counts the example) naming the file; a pickle
never runs anything (property in tests/fuzzing.py). The annotation samples are a few
rows shaped like the published files (../shared/real-annotations), shipped here.
"""

import importlib
import io
import pickle
import pickletools

import h5py
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

import fuzzing
from cmsa_jax.records import safe_pickle
from cmsa_jax.records import video
from cmsa_jax.tools import build_dataset

pytestmark = pytest.mark.fuzz

with tfds.core.utils.add_sys_path(build_dataset.DATASETS_DIR):
  ref_coco = importlib.import_module('ref_coco_seg.ref_coco_seg_dataset_builder')


def _sandboxed(tmp_path_factory, name, data):
  sandbox = fuzzing.decoys(tmp_path_factory.mktemp('builder'))
  path = sandbox / name
  path.write_bytes(data)
  return sandbox, path


# Pickles.

REFS = [{'ref_id': 0, 'ann_id': 7, 'image_id': 3, 'split': 'train', 'category_id': 1,
         'file_name': 'COCO_train2014_000000000003_7.jpg',
         'sentences': [{'raw': 'man on the left', 'tokens': ['man', 'on', 'the', 'left'],
                        'sent_id': 0, 'sent': 'man on the left'}]},
        {'ref_id': 1, 'ann_id': 8, 'image_id': 3, 'split': 'testA', 'category_id': 1,
         'sentences': [{'raw': b'caf\xc3\xa9 sign', 'tokens': [b'caf\xe9'], 'sent_id': 1}],
         'box': (1.5, 2.0, 3, 4), 'tags': {'a', 'b'}, 'flags': frozenset([1]), 'none': None}]
PICKLE_SEEDS = [pickle.dumps(REFS, protocol=p) for p in (0, 2, 5)]


class _RunsCommand:

  def __reduce__(self):
    return (__import__('os').system, ('touch pwned',))


GLOBALS = [b'os\nsystem\n', b'builtins\neval\n', b'__builtin__\nset\n', b'builtins\nfrozenset\n',
           b'builtins\nbytes\n', b'_codecs\nencode\n', b'copyreg\n_reconstructor\n',
           b'builtins\ngetattr\n', b'subprocess\nPopen\n', b'numpy.core.multiarray\n_reconstruct\n']


@st.composite
def opcode_streams(draw):
  """Pickles written opcode by opcode with plausible arguments: any stack and memo
  shape the unpickler can be driven into, dangerous globals included."""
  out = [b'\x80' + bytes([draw(st.integers(0, 5))])] if draw(st.booleans()) else []
  for _ in range(draw(st.integers(1, 30))):
    op = draw(st.sampled_from(pickletools.opcodes))
    out.append(op.code.encode('latin1'))
    arg = op.arg
    if arg is None:
      continue
    if arg.n >= 0:
      out.append(draw(st.binary(min_size=arg.n, max_size=arg.n) | st.just(b'\0' * arg.n)))
    elif arg.name.endswith('pair'):
      out.append(draw(st.sampled_from(GLOBALS)))
    elif arg.n == pickletools.UP_TO_NEWLINE:
      out.append(draw(st.sampled_from([b'0', b'1', b'-7', b'99999999999', b'1.5', b'nan', b"'a'",
                                       b'"x"', b'abc', b'']) | st.binary(max_size=8)) + b'\n')
    else:
      size = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
              pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[arg.n]
      payload = draw(st.binary(max_size=8) | st.sampled_from([b'os', b'system', b'set']))
      declared = draw(st.sampled_from([len(payload), 2**(8 * size - 1) - 1]))
      out.append(declared.to_bytes(size, 'little', signed=False) + payload)
  if draw(st.booleans()):
    out.append(b'.')
  return b''.join(out)


# A list that contains itself; lists nested 100,000 deep; a billion laughs of shared lists.
SELF_CONTAINING = b'\x80\x02]q\x00h\x00a.'
DEEP = b'\x80\x02' + b']' * 100000 + b'a' * 99999 + b'.'
LAUGHS = b'\x80\x02]q\x00' + b''.join(b'(h%ch%clq%c' % (i, i, i + 1) for i in range(60)) + b'.'
pickles = st.one_of(st.binary(max_size=64), opcode_streams(),
                    st.sampled_from(PICKLE_SEEDS).flatmap(fuzzing.mutated))


def _plain(obj, depth=0, seen=None):
  """Whether `obj` holds only admitted types (each container checked once)."""
  seen = set() if seen is None else seen
  assert depth <= safe_pickle.MAX_DEPTH
  if isinstance(obj, (dict, list, tuple, set, frozenset)):
    if id(obj) in seen:
      return True
    seen.add(id(obj))
    items = [x for kv in obj.items() for x in kv] if isinstance(obj, dict) else obj
    return all(_plain(x, depth + 1, seen) for x in items)
  return obj is None or isinstance(obj, (str, bytes, int, float, bool))


@fuzzing.budget(100)
@given(data=pickles)
@example(data=pickle.dumps(_RunsCommand(), protocol=2))
# Crashes found and fixed in safe_pickle (_MALFORMED, _check_plain, to_text's memo):
@example(data=b'c__builtin__\nset\n.')  # The class set itself, returned as data.
@example(data=SELF_CONTAINING)  # to_text: RecursionError.
@example(data=DEEP)  # to_text: RecursionError.
@example(data=LAUGHS)  # to_text: 2**60 list copies (and any walk of it never ends).
@example(data=b'\x80\x02}]]s.')  # A list as dict key: TypeError (was caught).
@example(data=b'\x80\x02]h\x05.')  # A memo index never put: KeyError.
@example(data=b'\x80\x04\x8e\x00\x00\x00\x00n\x01\x00\x00abc.')  # 1.5 TB bytes: MemoryError.
@example(data=pickle.dumps([{'ref_id': 0, 'sentences': 7}], protocol=2))  # Builder: TypeError.
def test_safe_pickle(tmp_path_factory, data):
  sandbox, path = _sandboxed(tmp_path_factory, 'refs(unc).p', data)
  loaded = fuzzing.check(lambda: safe_pickle.load(path), name=path, sandbox=sandbox, given=path)
  if loaded is not None:
    text = safe_pickle.to_text(loaded)
    assert _plain(loaded) and _plain(text)
  refs = fuzzing.check(lambda: ref_coco._load_refs(path), name=path, sandbox=sandbox, given=path)
  if refs is not None:
    assert all(ref_coco._REF_KEYS.keys() <= r.keys() for r in refs)


# Annotation files.

A2D = ('video_id,instance_id,query\n--h5fAKYurM,0,the pigeon is limping\n'
       '-0cOo0cRVZU,1,Instructor standing on the sideline\n'
       'T6bNPuKV-wY,1 (copy),bird standing in the beach\n'
       'EadxBPmQvtg,2,  man in a red shirt, jumping  \n\n').encode('utf-8-sig')
JHMDB = ('video_id,query\n100_pullups_pullup_f_nm_np1_fr_med_1,man in black pulling up\n'
         'Torwarttraining_catch_f_cm_np1_le_goo_0,"goalkeeper, in green"\n').encode()
VIDEOSET = b'--h5fAKYurM,43,1,112,240,320,112,5,0\n-0cOo0cRVZU,11,1,40,240,426,40,3,1\n'
MISSED = b'54DuhN4-Cj0\n9j8335EwF9M\n'
ANNOTATIONS = {'a2d_annotation.txt': (A2D, video.read_a2d_annotations),
               'jhmdb_annotation.txt': (JHMDB, video.read_jhmdb_annotations),
               'videoset.csv': (VIDEOSET, video.read_a2d_videoset),
               'a2d_missed_videos.txt': (MISSED, video.read_lines)}


@st.composite
def row_edits(draw, seed):
  """`seed` with rows deleted, duplicated, given fields added or removed, quotes,
  NUL bytes, invalid UTF-8, CRLF or a huge field."""
  rows = seed.split(b'\n')
  for _ in range(draw(st.integers(1, 3))):
    i = draw(st.integers(0, len(rows) - 1))
    edit = draw(st.sampled_from(['delete', 'duplicate', 'add_field', 'drop_field', 'quote',
                                 'nul', 'latin1', 'crlf', 'huge', 'unicode']))
    row = rows[i]
    rows[i] = {'delete': b'', 'duplicate': row + b'\n' + row, 'add_field': row + b',x',
               'drop_field': b','.join(row.split(b',')[:-1]), 'quote': b'"' + row,
               'nul': row + b'\0', 'latin1': row + b'caf\xe9', 'crlf': row + b'\r',
               'huge': row + b',' + b'a' * 200000,
               'unicode': row + draw(st.text(max_size=5)).encode('utf-8', 'surrogatepass')}[edit]
  return b'\n'.join(rows)


@fuzzing.budget(60)
@given(kind=st.sampled_from(sorted(ANNOTATIONS)), data=st.data())
@example(kind='a2d_annotation.txt', data=None)
def test_annotation_files(tmp_path_factory, kind, data):
  seed, read = ANNOTATIONS[kind]
  content = seed if data is None else data.draw(
      st.one_of(row_edits(seed), fuzzing.mutated(seed), st.binary(max_size=64)))
  sandbox, path = _sandboxed(tmp_path_factory, kind, content)
  rows = fuzzing.check(lambda: read(path), name=path, sandbox=sandbox, given=path)
  if data is None:
    assert [e.instance_id for e in rows] == [0, 1, 2]  # The '(copy)' row is dropped.
  if rows is not None:
    assert isinstance(rows, list)


# Masks.

def _h5(instance, re_mask, ids=None):
  buffer = io.BytesIO()
  with h5py.File(buffer, 'w') as f:
    f['instance'] = instance
    f['reMask'] = re_mask
    if ids is not None:
      f['id'] = ids
  return buffer.getvalue()


def _mat(part_mask, v73=False):
  if v73:
    buffer = io.BytesIO()
    with h5py.File(buffer, 'w') as f:
      f['part_mask'] = np.asarray(part_mask).T
    return buffer.getvalue()
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, {'part_mask': part_mask})
  return buffer.getvalue()


MASK = (np.arange(6 * 5 * 2).reshape(6, 5, 2) % 3 == 0).astype(np.uint8)
MASK_SEEDS = {'h5': [_h5(np.array([[1, 2]]), MASK.transpose(2, 1, 0), np.array([[11, 12]])),
                     _h5(np.array([[1]]), MASK[..., 0].T)],
              'mat': [_mat(MASK), _mat(MASK, v73=True)]}
shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)
dtypes = st.sampled_from(['uint8', 'float64', 'int64', 'bool', 'S3', 'complex64'])


@st.composite
def h5_files(draw):
  if draw(st.booleans()):
    return draw(st.sampled_from(MASK_SEEDS['h5']).flatmap(fuzzing.mutated))
  instance = np.ones(draw(shapes), draw(dtypes))
  re_mask = np.ones(draw(shapes), draw(dtypes))
  ids = draw(st.none() | st.builds(lambda s, d: np.full(s, 11, d), shapes, dtypes))
  return _h5(instance, re_mask, ids)


@st.composite
def mat_files(draw):
  if draw(st.booleans()):
    return draw(st.sampled_from(MASK_SEEDS['mat']).flatmap(fuzzing.mutated))
  array = np.ones(draw(shapes), draw(dtypes))
  return _mat(array, v73=draw(st.booleans()))


def _compressed_mat(array):
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, {'part_mask': array}, do_compression=True)
  return buffer.getvalue()


@fuzzing.budget(60)
@given(data=h5_files())
# Crashes found and fixed in video._READ_ERRORS: h5py's RuntimeError on a damaged B-tree.
@example(data=MASK_SEEDS['h5'][0].replace(b'TREE', b'TRFE', 1))
def test_a2d_mask_h5(tmp_path_factory, data):
  sandbox, path = _sandboxed(tmp_path_factory, '00001.h5', data)
  frame = fuzzing.check(lambda: video.read_a2d_frame(path), name=path, sandbox=sandbox, given=path)
  if frame is not None:
    assert frame.masks.dtype == np.uint8 and frame.masks.ndim == 3
    assert len(frame.masks) == len(frame.instance_ids) and set(np.unique(frame.masks)) <= {0, 1}


# A .mat whose part_mask data has element type 0xffffffff: scipy's v5 reader (C) corrupted
# memory and the process segfaulted (in the long run); read in a child, it is an InputError.
MAT_SEGFAULT = bytes.fromhex(
    '4d41544c414220352e30204d41542d66696c6520506c6174666f726d3a20706f7369782c2043726561746564'
    '206f6e3a20467269204465632020342031393834333a31332032303236000000000000000000000000000000'
    '0000000000000000000000000000000000000000000000000000000000000000000000000001494d0e000000'
    '8800000006000000080000000900000000000000050000000c00000006000000050000000200000000000000'
    '0100000009000000706172745f6d61736b00000000ffffffff0000003c000000010000010000000100000100'
    '0000010000010100000100000001000001000000010000010100000100000001000001000000010000010100'
    '0001000000000000')


@fuzzing.budget(60)
@given(data=mat_files())
# Crashes found and fixed in video._READ_ERRORS: zlib.error from a damaged compressed .mat,
# h5py's RuntimeError from a damaged v7.3 (HDF5) one.
@example(data=_compressed_mat(MASK)[:136] + b'\0\0' + _compressed_mat(MASK)[138:])
@example(data=MASK_SEEDS['mat'][1].replace(b'HEAP', b'HFAP', 1))
@example(data=MAT_SEGFAULT)
def test_jhmdb_puppet_mask(tmp_path_factory, data):
  sandbox, path = _sandboxed(tmp_path_factory, 'puppet_mask.mat', data)
  mask = fuzzing.check(lambda: video.read_puppet_mask(path), name=path, sandbox=sandbox,
                       given=path)
  if mask is not None:
    assert mask.dtype == np.uint8 and mask.ndim == 3 and set(np.unique(mask)) <= {0, 1}
