"""Annotation parsers of the video referring-segmentation sources (A2D Sentences,
JHMDB Sentences): expressions, video lists, instance masks and the folder layout.

Frame ids are 1-indexed throughout, as in both datasets' file names. Frames and
clips are read by `cmsa_jax.media.frames` and `cmsa_jax.media.clips`.
"""

import concurrent.futures
import contextlib
import csv
import dataclasses
import multiprocessing
from pathlib import Path
import zlib

import h5py
import numpy as np
import scipy.io
from absl import logging

from cmsa_jax import errors

# A2D actor-action codes are 10 * actor + action, both 1-indexed (Xu et al., CVPR'15).
A2D_ACTORS = ('adult', 'baby', 'ball', 'bird', 'car', 'cat', 'dog')
A2D_ACTIONS = ('climbing', 'crawling', 'eating', 'flying', 'jumping', 'rolling',
               'running', 'walking', 'none')


# Text annotations.

@dataclasses.dataclass(frozen=True)
class Expression:
  """One referring expression: `id` is its 0-based data row in the annotation file."""
  id: int
  video_id: str
  instance_id: int
  text: str


# What csv, h5py and scipy.io raise on damaged files (tests/test_fuzz_builders.py).
_READ_ERRORS = errors.MALFORMED_INPUT + (csv.Error, scipy.io.matlab.MatReadError,
                                         NotImplementedError, RuntimeError, zlib.error,
                                         UnboundLocalError)  # scipy.io on a damaged .mat.


@contextlib.contextmanager
def _reading(path):
  """Turns what reading a damaged text or mask file raises into an InputError naming it."""
  with errors.reading_as_input(path, _READ_ERRORS, 'cannot be read'):
    try:
      yield
    except UnicodeDecodeError as e:
      raise errors.InputError(f'{errors.one_line(path)}: not UTF-8 text (byte {e.start}: '
                              f'{e.object[e.start:e.start + 4]!r})') from None


def _csv_lines(path):
  """(line number, fields) of every non-blank row of a comma-separated UTF-8 file."""
  with _reading(path), open(path, newline='', encoding='utf-8-sig') as f:
    reader = csv.reader(f)
    return [(reader.line_num, row) for row in reader if any(field.strip() for field in row)]


def _csv_rows(path, header):
  """(data_row_index, fields) of a comma-separated file; skips the header and blank lines.

  A row with more fields than `header` keeps the surplus in its last field, so an
  unquoted comma inside a free-text last column is not lost.
  """
  rows = [row for _, row in _csv_lines(path)]
  if rows and [field.strip().lower() for field in rows[0]] == list(header):
    rows = rows[1:]
  for index, row in enumerate(rows):
    if len(row) < len(header):
      raise errors.InputError(f'{errors.one_line(path)}: data row {index} has {len(row)} fields,'
                              f' expected {len(header)} ({",".join(header)}): {row}')
    yield index, row[:len(header) - 1] + [','.join(row[len(header) - 1:])]


def _integer(text):
  """int of a field of ASCII digits, else None ('1 (copy)', '²', '')."""
  text = text.strip()
  return int(text) if text.isascii() and text.isdigit() else None


def read_a2d_annotations(path):
  """Expressions of `a2d_annotation.txt` (video_id,instance_id,query).

  Texts are stripped of surrounding spaces (222 published rows have some).
  Rows whose instance_id is not an integer are dropped with a warning: the
  published file has one, `T6bNPuKV-wY,1 (copy),...`, an annotator's duplicate
  of instance 1, which every public A2D Sentences loader drops too.
  """
  expressions = []
  for index, (video_id, instance, text) in _csv_rows(
      path, ('video_id', 'instance_id', 'query')):
    if _integer(instance) is None:
      logging.warning('%s: dropping data row %d with instance_id %r: %s,%s,%s',
                      path, index, instance, video_id, instance, text)
      continue
    expressions.append(Expression(index, video_id.strip(), _integer(instance), text.strip()))
  return expressions


def read_jhmdb_annotations(path):
  """Expressions of `jhmdb_annotation.txt` (video_id,query), texts stripped; instance 0."""
  return [Expression(index, video_id.strip(), 0, text.strip())
          for index, (video_id, text) in _csv_rows(path, ('video_id', 'query'))]


@dataclasses.dataclass(frozen=True)
class A2DVideo:
  """One row of A2D's `Release/videoset.csv`; subset 0 is train, 1 is test."""
  video_id: str
  label: int
  subset: int


def read_a2d_videoset(path):
  """Rows of `videoset.csv`: vid,label,start,end,height,width,frames,annotated frames,subset."""
  videos, name = [], errors.one_line(path)
  for line, row in _csv_lines(path):
    if len(row) != 9:
      raise errors.InputError(f'{name}:{line}: expected 9 fields, got {len(row)}: {row}')
    try:
      videos.append(A2DVideo(row[0].strip(), int(float(row[1])), int(float(row[8]))))
    except (ValueError, OverflowError):  # 'x', 'nan', 'inf'.
      raise errors.InputError(f'{name}:{line}: non-numeric label or subset in {row}') from None
  return videos


def read_lines(path):
  """Non-blank stripped lines of a text file, e.g. `a2d_missed_videos.txt`."""
  with _reading(path):
    text = Path(path).read_text(encoding='utf-8-sig')
  return [line.strip() for line in text.splitlines() if line.strip()]


# Masks.

def a2d_label_name(code):
  """'adult-climbing' for A2D code 11; codes outside the table stay numeric text."""
  actor, action = divmod(int(code), 10)
  if 1 <= actor <= len(A2D_ACTORS) and 1 <= action <= len(A2D_ACTIONS):
    return f'{A2D_ACTORS[actor - 1]}-{A2D_ACTIONS[action - 1]}'
  return str(int(code))


@dataclasses.dataclass(frozen=True)
class A2DFrame:
  """Instances annotated in one A2D frame: ids, (n, H, W) {0, 1} masks, actor-action codes."""
  instance_ids: list
  masks: np.ndarray
  labels: list | None


def read_a2d_frame(path):
  """Reads one `a2d_annotation_with_instances/<vid>/<frame>.h5`.

  `reMask` is stored transposed, (n, W, H), or (W, H) for a single instance;
  `id` (actor-action codes, optional) is (1, n). Defects public loaders report
  in the published files are repaired with a warning: more masks than instance
  ids (95Nq6fQoP2o/32, I0MlLHTWCro/20, IRrbHQjE4LQ/16) keeps the first ones; a
  repeated instance id (EadxBPmQvtg/25) keeps its first mask. Fewer masks or
  codes than ids cannot be paired; they, a damaged file, missing or non-numeric
  datasets, and non-integer ids raise InputError (a ValueError) naming `path`.
  """
  name = errors.one_line(path)
  with _reading(path), h5py.File(path, 'r') as f:
    ids = _integers(_h5_array(f, 'instance', path), 'instance', path)
    if not ids:  # a frame without instances
      return A2DFrame([], np.zeros((0, 0, 0), np.uint8), [])
    masks = _h5_array(f, 'reMask', path)
    labels = _integers(_h5_array(f, 'id', path), 'id', path) if 'id' in f else None
  if masks.ndim not in (2, 3):
    raise errors.InputError(f'{name}: reMask has shape {masks.shape}, expected (n, W, H) or (W, H)')
  masks = ((masks[None] if masks.ndim == 2 else masks) > 0).astype(np.uint8).swapaxes(1, 2)
  if len(masks) < len(ids):
    raise errors.InputError(f'{name}: {len(ids)} instance ids {ids} but {len(masks)} masks')
  if labels is not None and len(labels) < len(ids):
    raise errors.InputError(f'{name}: {len(ids)} instance ids {ids} but {len(labels)} id codes')
  if len(masks) > len(ids):
    logging.warning('%s: %d masks for %d instance ids %s; keeping the first %d',
                    path, len(masks), len(ids), ids, len(ids))
  keep = [k for k, i in enumerate(ids) if i not in ids[:k]]
  if len(keep) < len(ids):
    logging.warning('%s: repeated instance ids %s; keeping the first mask of each', path, ids)
  return A2DFrame([ids[k] for k in keep], masks[keep],
                  None if labels is None else [labels[k] for k in keep])


def _h5_array(f, key, path):
  """The numeric array `key` of an open HDF5 file, stored in the file itself.

  External links, external raw storage and virtual datasets would read other
  files; they, a missing or non-numeric `key`, are an InputError naming `path`.
  """
  name = errors.one_line(path)
  link = f.get(key, getlink=True)
  if link is None:
    raise errors.InputError(f'{name}: no dataset {key!r}')
  if not isinstance(link, h5py.HardLink) or not isinstance(f[key], h5py.Dataset):
    raise errors.InputError(f'{name}: {key!r} is a {type(link).__name__} / '
                            f'{type(f[key]).__name__}, not a dataset stored in the file')
  dataset = f[key]
  if dataset.is_virtual or dataset.id.get_create_plist().get_external_count():
    raise errors.InputError(f'{name}: dataset {key!r} is stored in other files')
  array = np.asarray(dataset[()])
  if array.dtype.kind not in 'biuf':
    raise errors.InputError(f'{name}: dataset {key!r} holds {array.dtype}, not numbers')
  return array


def _integers(array, key, path):
  """The values of a numeric array as a list of ints; InputError for NaN or fractions."""
  values = np.ravel(array)
  if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
    raise errors.InputError(f'{errors.one_line(path)}: {key!r} holds non-integers '
                            f'{values[:5].tolist()}')
  return [int(v) for v in values]


def read_puppet_mask(path):
  """JHMDB `puppet_mask.mat` `part_mask` (H, W, T) as (T, H, W) uint8 in {0, 1}.

  Reads MATLAB v5 files (scipy) and v7.3 files (HDF5, which store the array
  transposed, (T, W, H)). InputError naming `path` for a damaged file, a
  missing or non-numeric `part_mask`, or one that is not 2-D or 3-D.
  """
  name = errors.one_line(path)
  with _reading(path):
    if h5py.is_hdf5(path):
      with h5py.File(path, 'r') as f:
        mask = _h5_array(f, 'part_mask', path).T
    else:
      mask = _in_child(_load_part_mask, path)
      if mask is None:
        raise errors.InputError(f'{name}: no variable part_mask')
  if mask.dtype.kind not in 'biuf':
    raise errors.InputError(f'{name}: part_mask holds {mask.dtype}, not numbers')
  if mask.ndim == 2:
    mask = mask[..., None]
  if mask.ndim != 3:
    raise errors.InputError(f'{name}: part_mask has shape {mask.shape}, expected (H, W, T)')
  return (np.moveaxis(mask, -1, 0) > 0).astype(np.uint8)


def _load_part_mask(path):
  mat = scipy.io.loadmat(path, variable_names=['part_mask'])
  return np.asarray(mat['part_mask']) if 'part_mask' in mat else None


def _in_child(fn, path):
  """fn(path) in a forked process. scipy's MATLAB v5 reader (C code) corrupts memory on
  some damaged files and the process segfaults later (tests/test_fuzz_builders.py): a
  child's crash is an InputError naming the file, and the builder's memory stays intact."""
  context = multiprocessing.get_context('fork')
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as child:
    try:
      return child.submit(fn, path).result()
    except concurrent.futures.process.BrokenProcessPool:
      raise errors.InputError(f'{errors.one_line(path)}: the reader crashed on it '
                              '(a damaged file)') from None


def uniform_frame_ids(num_frames, count):
  """`count` frame ids spread evenly over [1, num_frames], first and last included."""
  return sorted({int(x) for x in np.floor(np.linspace(1, num_frames, count))})


def subfolders(folder):
  """Non-hidden subfolders (skips `.AppleDouble` and the like), sorted by name."""
  return sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith('.'))


def index_videos(root, video_ids):
  """{video_id: category folder} for a `root/<category>/<video_id>/` tree.

  Video ids must be unique across categories; ids absent from the tree are
  left out (the caller decides what that means).
  """
  wanted, index = set(video_ids), {}
  for category in subfolders(root):
    for video in subfolders(category):
      if video.name in wanted:
        if video.name in index:
          raise ValueError(f'{root}: video {video.name} is under both {index[video.name]}'
                           f' and {category.name}')
        index[video.name] = category.name
  return index
