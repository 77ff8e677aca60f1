"""RefCOCO, RefCOCO+ and RefCOCOg with instance masks, from the refer toolkit's files."""

import collections
import dataclasses
import json

from absl import logging
import numpy as np
from pycocotools import mask as mask_utils
import tensorflow_datasets as tfds

from cmsa_jax import errors
from cmsa_jax.media import image_io
from cmsa_jax.records import broken
from cmsa_jax.records import features
from cmsa_jax.records import manual_files
from cmsa_jax.records import safe_pickle

_SOURCE = ("the refer toolkit's data directory (https://github.com/lichengunc/refer, "
           '"Download": refcoco.zip, refcoco+.zip, refcocog.zip) and the COCO train2014 '
           'images (https://cocodataset.org/#download)')
_INSTRUCTIONS = f"""\
Lay out {_SOURCE} as

  <manual_dir>/refcoco/refs(unc).p        <manual_dir>/refcoco/instances.json
  <manual_dir>/refcoco+/refs(unc).p       <manual_dir>/refcoco+/instances.json
  <manual_dir>/refcocog/refs(google).p    <manual_dir>/refcocog/refs(umd).p
  <manual_dir>/refcocog/instances.json
  <manual_dir>/images/mscoco/images/train2014/COCO_train2014_*.jpg

Only the files of the config being built are needed. Nothing is downloaded.
"""

# The fields the builder reads, and their types.
_REF_KEYS = {'ref_id': int, 'ann_id': int, 'image_id': int, 'split': str, 'category_id': int,
             'sentences': list}
_SENTENCE_KEYS = {'raw': str, 'tokens': list, 'sent_id': int}
# Splits the refs files use, in this order; any others follow alphabetically.
_SPLIT_ORDER = ('train', 'val', 'test', 'testA', 'testB')


@dataclasses.dataclass(eq=False)
class RefCocoSegConfig(tfds.core.BuilderConfig):
  """`dataset`: the refer toolkit's folder; `split_by`: the refs(<split_by>).p."""
  dataset: str = 'refcoco'
  split_by: str = 'unc'


def _load_refs(path):
  """The refs as dicts of str/int (Python 2 byte strings decoded), checked."""
  refs = safe_pickle.to_text(safe_pickle.load(manual_files.require(path, _SOURCE)))
  name = errors.one_line(path)
  if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
    raise errors.InputError(f'{name}: expected a pickled list of dicts, got {type(refs).__name__}')
  for i, ref in enumerate(refs):
    problem = _mistyped(ref, _REF_KEYS) or next(
        (f'sentence {j}: {p}' for j, s in enumerate(ref['sentences'])
         if (p := _mistyped(s, _SENTENCE_KEYS))), None)
    if problem:
      raise errors.InputError(f'{name}: ref {i} (ref_id {str(ref.get("ref_id"))[:20]}): '
                              f'{errors.one_line(problem)}')
  return refs


def _mistyped(record, types):
  """What is wrong with `record`'s fields `types` (missing or of another type), or None."""
  if not isinstance(record, dict):
    return f'is a {type(record).__name__}, not a dict'
  if missing := sorted(types.keys() - record.keys()):
    return f'lacks {missing}'
  wrong = [f'{k} is {type(record[k]).__name__}' for k, t in types.items()
           if not isinstance(record[k], t) or isinstance(record[k], bool) and t is int]
  return ', '.join(wrong) or None


def _load_instances(path, refs):
  """Reads instances.json once; returns the images, annotations (by id) and
  category names (by id) that `refs` use."""
  with manual_files.require(path, _SOURCE).open('rb') as f:
    coco = json.load(f)
  image_ids = {r['image_id'] for r in refs}
  ann_ids = {r['ann_id'] for r in refs}
  images = {im['id']: im for im in coco['images'] if im['id'] in image_ids}
  anns = {a['id']: a for a in coco['annotations'] if a['id'] in ann_ids}
  categories = {c['id']: c['name'] for c in coco['categories']}
  for name, wanted, found in (('image', image_ids, images), ('annotation', ann_ids, anns)):
    if missing := sorted(wanted - found.keys()):
      raise ValueError(f'{path} lacks {len(missing)} {name} ids the refs use, e.g. {missing[:5]}')
  return images, anns, categories


def _ordered_splits(names):
  return [s for s in _SPLIT_ORDER if s in names] + sorted(set(names) - set(_SPLIT_ORDER))


def _decode_mask(ann, height, width):
  """(H, W) uint8 mask of a COCO annotation: polygons or RLE (counts list or string)."""
  segmentation = ann['segmentation']
  if isinstance(segmentation, dict):
    if list(segmentation['size']) != [height, width]:
      raise ValueError(f'annotation {ann["id"]}: RLE size {segmentation["size"]} != image '
                       f'size {[height, width]}')
    counts = segmentation['counts']
    if isinstance(counts, list):  # Uncompressed, as iscrowd annotations store it.
      rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
      rle = {'size': [height, width],
             'counts': counts.encode() if isinstance(counts, str) else counts}
    return mask_utils.decode(rle)
  if not isinstance(segmentation, list) or not all(
      isinstance(p, list) and all(isinstance(v, (int, float)) and np.isfinite(v) for v in p)
      for p in segmentation):
    raise ValueError(f'annotation {ann["id"]}: malformed polygon {str(segmentation)[:80]}')
  # COCO has a few degenerate polygons of < 3 points; pycocotools would read a
  # 4-number one as a box.
  polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
  if not polygons:
    return np.zeros((height, width), np.uint8)
  return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))


def _example(image, refs, anns, categories, image_dir):
  """One record: the image, its referred objects (one per ref) and their sentences."""
  path = image_dir / image['file_name']
  data, height, width = image_io.read_jpeg(path)
  if (height, width) != (image['height'], image['width']):
    raise ValueError(f'{path} is {width}x{height}, instances.json says '
                     f'{image["width"]}x{image["height"]}')
  objects, sentences = [], []
  for ref in refs:
    ann = anns[ref['ann_id']]
    if ref['category_id'] not in categories:
      raise ValueError(f'ref {ref["ref_id"]}: unknown category_id {ref["category_id"]}')
    mask = _decode_mask(ann, height, width)
    if not mask.any():
      logging.warning('ref %d: annotation %d has an empty mask.', ref['ref_id'], ann['id'])
    sentences += [{'text': s['raw'], 'tokens': ' '.join(s['tokens']),
                   'object_index': len(objects), 'id': s['sent_id']}
                  for s in ref['sentences']]
    objects.append({'mask': image_io.encode_png(mask), 'id': ann['id'],
                    'category': categories[ref['category_id']], 'ref_id': ref['ref_id'],
                    'category_id': ref['category_id'], 'bbox': np.asarray(ann['bbox'], np.float32)})
  return {'image': data, 'height': height, 'width': width, 'image_id': image['id'],
          'objects': objects, 'sentences': sentences}


class Builder(tfds.core.GeneratorBasedBuilder):
  """Referring expressions of COCO objects with their segmentation masks."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
      RefCocoSegConfig(name='refcoco_unc', dataset='refcoco', split_by='unc',
                       description='RefCOCO, UNC splits (train/val/testA/testB).'),
      RefCocoSegConfig(name='refcocoplus_unc', dataset='refcoco+', split_by='unc',
                       description='RefCOCO+, UNC splits (train/val/testA/testB).'),
      RefCocoSegConfig(name='refcocog_google', dataset='refcocog', split_by='google',
                       description='RefCOCOg (G-Ref), Google splits (train/val).'),
      RefCocoSegConfig(name='refcocog_umd', dataset='refcocog', split_by='umd',
                       description='RefCOCOg, UMD splits (train/val/test).'),
  ]

  def _info(self):
    return self.dataset_info_from_configs(
        features=features.referring_features(
            object_extra={'ref_id': np.int64, 'category_id': np.int64,
                          # COCO box [x, y, width, height] in pixels.
                          'bbox': tfds.features.Tensor(shape=(4,), dtype=np.float32)},
            image_id=np.int64),
        homepage='https://github.com/lichengunc/refer',
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    config = self.builder_config
    refs = _load_refs(root / config.dataset / f'refs({config.split_by}).p')
    images, anns, categories = _load_instances(root / config.dataset / 'instances.json', refs)
    image_dir = root / 'images' / 'mscoco' / 'images' / 'train2014'
    manual_files.check_examples([image_dir / im['file_name'] for im in images.values()],
                                _SOURCE)
    by_split = collections.defaultdict(lambda: collections.defaultdict(list))
    for ref in sorted(refs, key=lambda r: r['ref_id']):
      by_split[ref['split']][ref['image_id']].append(ref)
    return {split: self._generate_examples(by_split[split], images, anns, categories, image_dir)
            for split in _ordered_splits(by_split)}

  def _generate_examples(self, refs_by_image, images, anns, categories, image_dir):
    """One record per image; an image whose files are broken is skipped and counted."""
    yield from broken.examples(
        ((image_id, (image_id, refs)) for image_id, refs in sorted(refs_by_image.items())),
        lambda item: [(item[0], _example(images[item[0]], item[1], anns, categories, image_dir))],
        'image')
