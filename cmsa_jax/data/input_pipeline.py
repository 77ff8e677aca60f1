"""The input pipeline shared by every dataset: grain over a random-access source.

A source is `tfds.data_source(...)` (or anything with `__len__`/`__getitem__`
returning records in the layout of `cmsa_jax.records.features`). One example is
one expression: `sentence_index` flattens records into (record, sentence)
pairs, and a grain pipeline loads, resizes and batches them.

Geometry follows the official code: an image is scaled by
min(S / h, S / w), its sides rounded, and zero-padded to S x S with the
resized image centred (pad = floor((S - resized) / 2)). Masks are resized
bilinearly and thresholded at 0.5, which keeps a boundary where it is (nearest
neighbour shifts it by up to half an input pixel); at integer scales
`unpad_and_resize` and the same threshold undo it exactly.

For TFDS sources, masks and clip frames are decoded only when needed (a record
holds every object's PNG mask, an example needs one): the source is re-opened
with those features left encoded, and `sentence_index` reads no pixels at all.
"""

import dataclasses
import functools
import io

from absl import flags
import grain
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from tensorflow_datasets.core.data_sources import base as tfds_sources

from cmsa_jax import errors
from cmsa_jax import progress as progress_lib
from cmsa_jax.media import clips

_RESAMPLE = {'bilinear': PIL.Image.BILINEAR, 'nearest': PIL.Image.NEAREST}
# Batched by stacking; everything else an eval example holds stays a list.
_DEVICE_KEYS = ('image', 'mask', 'tokens', 'token_mask', 'frames', 'frame_mask')


@dataclasses.dataclass(frozen=True)
class ResizeInfo:
  """Where an original (height, width) array lies in its padded square."""
  height: int
  width: int
  top: int
  left: int
  resized_height: int
  resized_width: int


def _resize(x, height, width, method):
  """Resizes uint8 or float32 (h, w, ...) to (height, width, ...), same dtype."""
  if x.shape[:2] == (height, width):
    return x
  size, resample = (width, height), _RESAMPLE[method]
  if x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3:
    return np.asarray(PIL.Image.fromarray(x).resize(size, resample))
  planes = np.moveaxis(x.reshape(x.shape[:2] + (-1,)), -1, 0)
  out = [np.asarray(PIL.Image.fromarray(np.ascontiguousarray(p)).resize(size, resample))
         for p in planes]
  return np.stack(out, -1).reshape((height, width) + x.shape[2:])


def resize_and_pad(x, size, *, method='bilinear'):
  """Scales (h, w, ...) to fit in (size, size, ...), zero-padded around it.

  Args:
    x: uint8 or float32 array (h, w) or (h, w, c).
    size: side S of the output.
    method: 'bilinear' or 'nearest'.

  Returns:
    The (S, S, ...) array, same dtype, and the ResizeInfo that undoes it.
  """
  if method not in _RESAMPLE:
    raise ValueError(f'method must be one of {sorted(_RESAMPLE)}, got {method!r}')
  if x.ndim not in (2, 3) or min(x.shape[:2]) < 1 or x.dtype not in (np.uint8, np.float32):
    raise ValueError(f'expected a non-empty uint8 or float32 (h, w) or (h, w, c) array, '
                     f'got {x.dtype} {x.shape}')
  h, w = x.shape[:2]
  scale = min(size / h, size / w)
  rh, rw = max(1, int(np.round(h * scale))), max(1, int(np.round(w * scale)))
  top, left = (size - rh) // 2, (size - rw) // 2
  out = np.zeros((size, size) + x.shape[2:], x.dtype)
  out[top:top + rh, left:left + rw] = _resize(x, rh, rw, method)
  return out, ResizeInfo(h, w, top, left, rh, rw)


def unpad_and_resize(pred, info):
  """Crops the valid window of a padded (S, S, ...) map, resizes it to (h, w, ...).

  Resize LOGITS or probabilities (bilinear), then threshold (> 0 for logits,
  >= 0.5 for probabilities): resizing a thresholded mask loses sub-pixel
  boundaries. uint8 input (images) stays uint8, anything else is float32.
  """
  pred = np.asarray(pred)
  pred = pred if pred.dtype == np.uint8 else pred.astype(np.float32)
  bottom, right = info.top + info.resized_height, info.left + info.resized_width
  if pred.ndim not in (2, 3) or pred.shape[0] < bottom or pred.shape[1] < right:
    raise ValueError(f'pred of shape {pred.shape} does not hold the window of {info}')
  return _resize(pred[info.top:bottom, info.left:right], info.height, info.width, 'bilinear')


def _resize_mask(mask, size):
  """Binary (h, w) -> float32 (S, S) in {0, 1}: bilinear, then >= 0.5.

  Computed on 0/255 uint8 (threshold 128), twice as fast as in float32.
  """
  resized, _ = resize_and_pad((mask != 0).astype(np.uint8) * np.uint8(255), size)
  return (resized >= 128).astype(np.float32)


class _SkipDecoding(tfds.decode.SkipDecoding):
  """SkipDecoding that also works inside a Sequence with the NumPy backend."""

  def decode_batch_example_np(self, serialized_example):
    return serialized_example


def _lazy(source, *, skip_image):
  """For a TFDS source, a twin leaving masks and frames (and image) encoded.

  The twin's decoders replace any the source was opened with.
  """
  if not isinstance(source, tfds_sources.BaseDataSource):
    return source
  features = source.dataset_info.features
  decoders = {'objects': {'mask': _SkipDecoding()}}
  if 'frames' in features:
    decoders['frames'] = _SkipDecoding()
  if skip_image:
    decoders['image'] = _SkipDecoding()
  return dataclasses.replace(source, decoders=decoders)


def _pixels(x, mode, what):
  """A decoded (h, w[, 3]) uint8 array from an array or encoded image bytes; InputError
  naming `what` (e.g. 'record 3: mask of object 0') for bytes that do not decode."""
  if isinstance(x, bytes):
    try:
      with PIL.Image.open(io.BytesIO(x)) as image:
        return np.asarray(image.convert(mode))
    except errors.MALFORMED_INPUT + (PIL.Image.DecompressionBombError,) as e:
      raise errors.InputError(f'{what}: not a readable image ({type(e).__name__}: '
                              f'{errors.one_line(e)})') from None
  x = np.asarray(x)
  return x[..., 0] if mode == 'L' and x.ndim == 3 else x


def _str(text):
  return text.decode('utf-8') if isinstance(text, bytes) else str(text)


@dataclasses.dataclass(frozen=True)
class SentenceIndex:
  """One row per expression: `pairs[i]` = (record, sentence in record)."""
  pairs: np.ndarray  # int64 (n, 2)
  texts: tuple  # str, the expressions

  def __len__(self):
    return len(self.pairs)


def _check_object_index(record, sentence, object_index, num_objects):
  if not 0 <= object_index < num_objects:
    raise errors.InputError(f'record {record}, sentence {sentence}: object_index {object_index} '
                            f'out of range for {num_objects} objects')


def sentence_index(source):
  """Flattens a source into its expressions, in record order.

  Raises ValueError for an empty source or an object_index out of range. Reads
  no pixels from a TFDS source (about 0.2 ms per record), so it is cheap
  to rebuild and nothing is cached on disk.
  """
  if len(source) == 0:
    raise ValueError('source is empty')
  view = _lazy(source, skip_image=True)
  pairs, texts = [], []
  progress = progress_lib.Progress('sentence index', len(view), unit='records')
  for r in range(len(view)):
    progress.update(r + 1)
    record = view[r]
    sentences, num_objects = record['sentences'], len(record['objects']['mask'])
    for s, (text, obj) in enumerate(zip(sentences['text'], sentences['object_index'])):
      _check_object_index(r, s, int(obj), num_objects)
      pairs.append((r, s))
      texts.append(_str(text))
  if not pairs:
    raise ValueError(f'source has {len(source)} records but no sentence')
  return SentenceIndex(np.asarray(pairs, np.int64), tuple(texts))


def encode(image, text, vocab, *, image_size, max_words, strict=False):
  """One (image, expression) pair as model inputs, and where the image lies in them."""
  tokens, token_mask = vocab.encode(text, max_words, strict=strict)
  resized, info = resize_and_pad(image, image_size)
  return {'image': resized, 'tokens': tokens, 'token_mask': token_mask}, info


class _LoadExample:
  """(record, sentence) -> one example dict; a grain map transform."""

  def __init__(self, source, vocab, *, image_size, max_words, clip_radius,
               with_originals=False, with_baselines=False):
    self._source = _lazy(source, skip_image=False)
    self._vocab = vocab
    self._size = image_size
    self._max_words = max_words
    self._clip_radius = clip_radius
    self._with_originals = with_originals
    self._with_baselines = with_baselines

  def __call__(self, pair):
    r, s = int(pair[0]), int(pair[1])
    record = self._source[r]
    image = np.asarray(record['image'])
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
      raise errors.InputError(f'record {r}: image must be uint8 (H, W, 3), '
                              f'got {image.dtype} {image.shape}')
    masks, sentences = record['objects']['mask'], record['sentences']
    if s >= len(sentences['text']):
      raise errors.InputError(f'record {r} has {len(sentences["text"])} sentences, the index '
                              f'wants sentence {s}: the source changed since its sentence_index '
                              'was built')
    obj = int(sentences['object_index'][s])
    _check_object_index(r, s, obj, len(masks))
    mask = _pixels(masks[obj], 'L', f'record {r}: mask of object {obj}')
    if mask.shape != image.shape[:2]:
      raise errors.InputError(f'record {r}: mask of object {obj} has shape {mask.shape}, '
                              f'image has {image.shape[:2]}')
    text = _str(sentences['text'][s])
    example, info = encode(image, text, self._vocab, image_size=self._size,
                           max_words=self._max_words)
    example['mask'] = _resize_mask(mask, self._size)
    if self._clip_radius is not None:
      frames, example['frame_mask'] = self._clip(record, r, image.shape)
      example['frames'] = np.stack([resize_and_pad(f, self._size)[0] for f in frames])
    if self._with_originals:
      example.update(orig_image=image, orig_mask=mask.astype(bool))
    if self._with_baselines:
      example.update(self._baselines(masks, r))
    if 'family' in sentences:  # Synthetic expressions: scored per family too.
      example['family'] = _str(sentences['family'][s])
    example.update(index=(r, s), text=text, resize_info=info)
    return example

  def _clip(self, record, r, shape):
    """The 2τ+1 decoded frames centred on the annotated one (τ = clip_radius) and
    which of them are real (False: an edge-padding repeat of its neighbour towards
    the centre, at the start or end of a video shorter than the clip)."""
    frames, tau = record['frames'], self._clip_radius
    if len(frames) % 2 != 1 or len(frames) < 2 * tau + 1:
      raise errors.InputError(f'record {r}: clip_radius {tau} needs an odd clip of at least '
                              f'{2 * tau + 1} frames, record has {len(frames)}')
    centre = len(frames) // 2
    ids = np.asarray(record.get('frame_ids', np.arange(len(frames)))).reshape(-1)
    if 'frame_index' in record and (
        len(ids) != len(frames) or ids[centre] != int(record['frame_index'])):
      raise errors.InputError(f'record {r}: the clip is not centred on the annotated frame '
                              f'{int(record["frame_index"])} (frame_ids {ids.tolist()})')
    frame_mask = clips.clip_mask(ids[centre - tau:centre + tau + 1])
    frames = [_pixels(f, 'RGB', f'record {r}: clip frame {i}')
              for i, f in enumerate(frames[centre - tau:centre + tau + 1])]
    for f in frames:
      if f.shape != shape:
        raise errors.InputError(f'record {r}: clip frames of shape {f.shape} differ from the '
                                f'annotated frame {shape}: masks would not align with the frames')
    return frames, frame_mask

  @staticmethod
  def _baselines(masks, r):
    """Scene-level baselines: every object, and the largest object."""
    masks = np.stack([_pixels(m, 'L', f'record {r}: mask of object {i}')
                      for i, m in enumerate(masks)]).astype(bool)
    return {'baseline_all_objects': masks.any(0),
            'baseline_largest_object': masks[masks.sum((1, 2)).argmax()]}


def _check_args(batch_size, image_size, max_words, clip_radius, num_workers):
  for name, value, low in (('batch_size', batch_size, 1), ('image_size', image_size, 1),
                           ('max_words', max_words, 1), ('num_workers', num_workers, 0)):
    if value < low:
      raise ValueError(f'{name} must be >= {low}, got {value}')
  if clip_radius is not None and clip_radius < 0:
    raise ValueError(f'clip_radius must be >= 0 or None, got {clip_radius}')


def _iterate(dataset, *, batch_size, num_workers, batch_fn=None, drop_remainder):
  """Loads in `num_workers` processes (0: threads only), batches in order.

  Batching after the worker round-robin makes batches independent of
  `num_workers`.
  """
  dataset = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=2 * batch_size))
  if num_workers:
    if not flags.FLAGS.is_parsed():
      raise ValueError(f'num_workers={num_workers} needs parsed absl flags (grain reads them): '
                       'run under absl.app.run, or call absl.flags.FLAGS.mark_as_parsed()')
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(dataset.batch(batch_size, drop_remainder=drop_remainder, batch_fn=batch_fn))


def create_train_iterator(source, vocab, *, batch_size, image_size, max_words=20, seed,
                          num_workers=0, shard_index=0, shard_count=1, clip_radius=None,
                          index=None):
  """Infinite iterator of training batches; checkpointable (get_state/set_state).

  Each epoch is a fresh permutation of all expressions, derived from `seed`;
  host `shard_index` of `shard_count` takes every shard_count-th example of
  that stream. Batches: 'image' uint8 (B, S, S, 3), 'mask' float32 (B, S, S)
  in {0, 1}, 'tokens' int32 (B, N), 'token_mask' bool (B, N) and, with
  `clip_radius` τ, 'frames' uint8 (B, 2τ+1, S, S, 3) and 'frame_mask' bool
  (B, 2τ+1), False on frames that repeat a neighbour as edge padding.

  Args:
    index: the source's `sentence_index`, if already computed.
  """
  _check_args(batch_size, image_size, max_words, clip_radius, num_workers)
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}')
  index = sentence_index(source) if index is None else index
  load = _LoadExample(source, vocab, image_size=image_size, max_words=max_words,
                      clip_radius=clip_radius)
  dataset = (grain.MapDataset.source(index.pairs).shuffle(seed=seed).repeat()
             [shard_index::shard_count].map(load).map(_device_fields))
  return _iterate(dataset, batch_size=batch_size, num_workers=num_workers, drop_remainder=True)


def _device_fields(example):
  return {k: example[k] for k in _DEVICE_KEYS if k in example}


def _collate_eval(examples, *, batch_size):
  """Stacks device arrays, padded to `batch_size` by repeating the first example.

  Host-side entries stay per-example lists holding only the valid examples,
  which come first ('valid' (B,) marks them).
  """
  pad = [examples[0]] * (batch_size - len(examples))
  batch = {k: np.stack([e[k] for e in examples + pad]) for k in _DEVICE_KEYS if k in examples[0]}
  batch['valid'] = np.arange(batch_size) < len(examples)
  batch.update({k: [e[k] for e in examples] for k in examples[0] if k not in _DEVICE_KEYS})
  return batch


def create_eval_iterator(source, vocab, *, batch_size, image_size, max_words=20,
                         with_originals=True, with_baselines=False, clip_radius=None,
                         num_workers=0, index=None):
  """One pass over every expression in index order, in fixed-shape batches.

  Batches hold the training keys plus 'valid' bool (B,) (the last batch is
  padded) and host-side lists over the valid examples: 'index' (record,
  sentence), 'text', 'resize_info' and, with `with_originals`, 'orig_image'
  uint8 (h, w, 3) and 'orig_mask' bool (h, w). `with_baselines` (for sources
  whose objects cover the whole scene) adds bool (h, w)
  'baseline_all_objects' (union of the objects) and 'baseline_largest_object'.
  """
  _check_args(batch_size, image_size, max_words, clip_radius, num_workers)
  index = sentence_index(source) if index is None else index
  load = _LoadExample(source, vocab, image_size=image_size, max_words=max_words,
                      clip_radius=clip_radius, with_originals=with_originals,
                      with_baselines=with_baselines)
  dataset = grain.MapDataset.source(index.pairs).map(load)
  return _iterate(dataset, batch_size=batch_size, num_workers=num_workers, drop_remainder=False,
                  batch_fn=functools.partial(_collate_eval, batch_size=batch_size))
