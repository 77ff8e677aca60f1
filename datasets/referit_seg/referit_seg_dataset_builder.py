"""ReferIt (ImageCLEF IAPR TC-12) referring expressions with masks, in text_objseg's layout."""

import collections
import json

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from cmsa_jax.media import image_io
from cmsa_jax.records import broken
from cmsa_jax.records import features
from cmsa_jax.records import manual_files

_SOURCE = ('the ReferIt data as text_objseg (https://github.com/ronghanghu/text_objseg) '
           'prepares it: the images and masks of its referitdata.tar.gz and the query '
           'files of its exp-referit/data/')
_INSTRUCTIONS = f"""\
Lay out {_SOURCE}, as

  <manual_dir>/images/<image>.jpg
  <manual_dir>/mask/<image>_<object>.mat      (segimg_t == 0 on the object)
  <manual_dir>/referit_query_trainval.json    {{"<image>_<object>": [expressions]}}
  <manual_dir>/referit_query_test.json

Nothing is downloaded.
"""

_SPLITS = ('trainval', 'test')


def _parse_key(key, path):
  """'<image>_<object>' (older files append '.png') -> (image, object id)."""
  image, _, obj = key.split('.', 1)[0].partition('_')
  if not image or not obj.isdigit():
    raise ValueError(f'{path}: key {key!r} is not "<image>_<object number>"')
  return image, int(obj)


def _load_queries(path):
  """{image: [(object id, [(sentence, sentence id)])]}, sentence ids in file order."""
  with manual_files.require(path, _SOURCE).open('rb') as f:
    queries = json.load(f)
  by_image = collections.defaultdict(list)
  sent_id = 0
  for key, texts in queries.items():
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
      raise ValueError(f'{path}: {key!r} should map to a list of strings, got {texts!r}')
    image, obj = _parse_key(key, path)
    by_image[image].append((obj, list(zip(texts, range(sent_id, sent_id + len(texts))))))
    sent_id += len(texts)
  return {image: sorted(objects) for image, objects in by_image.items()}


def _load_mask(path, height, width):
  """(H, W) uint8 mask: 1 where the .mat's `segimg_t` is 0, as text_objseg reads it."""
  with path.open('rb') as f:
    mat = scipy.io.loadmat(f, variable_names=['segimg_t'])
  if 'segimg_t' not in mat:
    raise ValueError(f'{path} has no variable segimg_t')
  segimg = mat['segimg_t']
  if segimg.shape != (height, width):
    raise ValueError(f'{path}: segimg_t is {segimg.shape}, the image is {(height, width)}')
  return (segimg == 0).astype(np.uint8)


def _example(image_name, objects, root):
  """One record: the image, one object per query key, their sentences."""
  image, height, width = image_io.read_jpeg(root / 'images' / f'{image_name}.jpg')
  masks = [_load_mask(root / 'mask' / f'{image_name}_{obj}.mat', height, width)
           for obj, _ in objects]
  return {
      'image': image, 'height': height, 'width': width, 'image_id': image_name,
      'objects': [{'mask': image_io.encode_png(mask), 'id': obj, 'category': ''}
                  for mask, (obj, _) in zip(masks, objects)],
      'sentences': [{'text': text, 'tokens': '', 'object_index': i, 'id': sent_id}
                    for i, (_, sentences) in enumerate(objects) for text, sent_id in sentences],
  }


class Builder(tfds.core.GeneratorBasedBuilder):
  """ReferIt expressions of image regions with their segmentation masks."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self):
    return self.dataset_info_from_configs(
        features=features.referring_features(image_id=tfds.features.Text()),
        homepage='https://github.com/ronghanghu/text_objseg',
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    splits = {split: _load_queries(root / f'referit_query_{split}.json') for split in _SPLITS}
    manual_files.check_examples(
        [root / 'images' / f'{image}.jpg' for q in splits.values() for image in q] +
        [root / 'mask' / f'{image}_{obj}.mat'
         for q in splits.values() for image, objects in q.items() for obj, _ in objects], _SOURCE)
    return {split: self._generate_examples(queries, root) for split, queries in splits.items()}

  def _generate_examples(self, queries, root):
    """One record per image; an image whose files are broken is skipped and counted."""
    items = [(name, (name, objects)) for name, objects in sorted(queries.items())
             if any(sentences for _, sentences in objects)]  # Records hold >= 1 sentence.
    yield from broken.examples(items, lambda item: [(item[0], _example(*item, root))], 'image')
