"""Writes dummy_data/: a tiny manual dir in the refer toolkit's exact formats.

  python datasets/ref_coco_seg/make_dummy_data.py

refs(*).p are protocol-2 pickles as Python 2 wrote them (keys and most values
Python 2 `str`, some sentences `unicode`); instances.json holds polygon,
compressed-RLE and iscrowd uncompressed-RLE segmentations, a degenerate
4-number polygon, and an annotation and image no ref uses; one image is a
grayscale JPEG.
"""

import json
import pathlib
import pickle
import struct

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

OUT = pathlib.Path(__file__).parent / 'dummy_data'

# id: (height, width, PIL mode).
IMAGES = {9: (24, 32, 'RGB'), 25: (30, 20, 'RGB'), 30: (16, 18, 'L'), 42: (20, 28, 'RGB'),
          77: (10, 10, 'RGB')}
CATEGORIES = {1: 'person', 3: 'car', 18: 'dog'}


def box_mask(height, width, boxes):
  """The true mask: 1 on the pixels [x0, x1) x [y0, y1) of each box."""
  mask = np.zeros((height, width), np.uint8)
  for x0, y0, x1, y1 in boxes:
    mask[y0:y1, x0:x1] = 1
  return mask


def _uncompressed_rle(mask):
  """COCO iscrowd RLE: run lengths of 0s, 1s, ... over the column-major mask."""
  flat = mask.flatten(order='F')
  edges = np.flatnonzero(np.diff(flat)) + 1
  runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
  counts = ([0] if flat[0] else []) + runs.tolist()
  return {'counts': counts, 'size': list(mask.shape)}


def _segmentation(kind, height, width, boxes):
  """The boxes' union written as COCO `kind` segmentation."""
  if kind == 'polygons':  # COCO writes float coordinates.
    return [[float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)] for x0, y0, x1, y1 in boxes]
  if kind == 'degenerate+polygons':  # COCO has a few polygons of < 3 points.
    return [[1.0, 1.0, 3.0, 3.0]] + _segmentation('polygons', height, width, boxes)
  mask = box_mask(height, width, boxes)
  if kind == 'crowd_rle':
    return _uncompressed_rle(mask)
  counts = mask_utils.encode(np.asfortranarray(mask))['counts'].decode('ascii')
  return {'counts': counts, 'size': [height, width]}  # kind == 'rle'.


# id: (image_id, category_id, segmentation kind, true mask as boxes (x0, y0, x1, y1)).
ANNOTATIONS = {
    101: (9, 1, 'polygons', [(2, 3, 10, 12), (14, 5, 20, 9)]),
    102: (9, 18, 'rle', [(22, 15, 30, 21)]),
    103: (9, 3, 'polygons', [(0, 0, 4, 4)]),  # Referred by no ref.
    201: (25, 1, 'crowd_rle', [(0, 0, 5, 30), (5, 20, 12, 26)]),
    202: (25, 3, 'degenerate+polygons', [(12, 2, 19, 10)]),
    301: (30, 18, 'polygons', [(4, 4, 14, 12)]),
    401: (42, 1, 'polygons', [(1, 1, 9, 19)]),
    402: (42, 1, 'crowd_rle', [(15, 4, 27, 8)]),
}



def _sent(raw, as_unicode=False):
  """(raw, tokens, as_unicode); as_unicode ones are pickled as Python 2 `unicode`."""
  return raw, raw.lower().split(), as_unicode


def sentence_id(ref_id, index):
  return 100 * ref_id + index


# dataset -> split_by -> [(ref_id, ann_id, split, sentences)].
REFS = {
    'refcoco': {'unc': [
        (0, 101, 'train', [_sent('Man on the LEFT'), _sent('the café guy')]),
        (1, 102, 'train', [_sent('dog right', as_unicode=True)]),
        (2, 201, 'val', [_sent('left person'), _sent('tall one'),
                         _sent('naïve guy', as_unicode=True)]),
        (3, 202, 'val', [_sent('red car')]),
        (4, 301, 'testA', [_sent('small dog'), _sent('dog')]),
        (5, 401, 'testB', [_sent('standing person')]),
        (6, 402, 'testB', [_sent('crowd top right'), _sent('the group')]),
    ]},
    'refcoco+': {'unc': [
        (10, 101, 'train', [_sent('man in blue')]),
        (11, 201, 'val', [_sent('person in white'), _sent('white shirt')]),
        (12, 301, 'testA', [_sent('brown dog')]),
        (13, 401, 'testB', [_sent('dark coat')]),
    ]},
    'refcocog': {
        'google': [
            (20, 101, 'train', [_sent('A man wearing a blue shirt.')]),
            (21, 102, 'val', [_sent('A dog lying on the right side.'), _sent('The brown dog.')]),
            (22, 202, 'train', [_sent('A red car parked near the trees.')]),
        ],
        'umd': [
            (30, 101, 'train', [_sent('A man wearing a blue shirt.')]),
            (31, 201, 'val', [_sent('A person standing on the left.')]),
            (32, 401, 'test', [_sent('A person in a dark coat.'), _sent('The standing person.')]),
        ],
    },
}


class _Python2Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Writes bytes as Python 2 `str` (SHORT_BINSTRING/BINSTRING), as cPickle did."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def save_py2_str(self, obj):
    if len(obj) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
    self.memoize(obj)

  dispatch[bytes] = save_py2_str


def _py2_ref(ref_id, ann_id, split, sentences):
  """A ref dict as the refer toolkit's Python 2 pickle holds it (bytes = Python 2 str)."""
  image_id, category_id = ANNOTATIONS[ann_id][:2]
  sents = [{b'tokens': [t.encode() for t in tokens], b'raw': raw if as_unicode else raw.encode(),
            b'sent_id': sentence_id(ref_id, i), b'sent': ' '.join(tokens).encode()}
           for i, (raw, tokens, as_unicode) in enumerate(sentences)]
  return {b'ref_id': ref_id, b'ann_id': ann_id, b'image_id': image_id, b'split': split.encode(),
          b'sentences': sents, b'category_id': category_id,
          b'file_name': f'COCO_train2014_{image_id:012d}_{ann_id}.jpg'.encode(),
          b'sent_ids': [s[b'sent_id'] for s in sents]}


def _instances():
  images = [{'id': i, 'height': h, 'width': w, 'file_name': f'COCO_train2014_{i:012d}.jpg'}
            for i, (h, w, _) in IMAGES.items()]
  annotations = []
  for ann_id, (image_id, category_id, kind, boxes) in ANNOTATIONS.items():
    h, w, _ = IMAGES[image_id]
    rle = mask_utils.encode(np.asfortranarray(box_mask(h, w, boxes)))
    annotations.append({'id': ann_id, 'image_id': image_id, 'category_id': category_id,
                        'segmentation': _segmentation(kind, h, w, boxes),
                        'iscrowd': int(kind == 'crowd_rle'), 'area': float(mask_utils.area(rle)),
                        'bbox': mask_utils.toBbox(rle).tolist()})
  categories = [{'id': i, 'name': n, 'supercategory': n} for i, n in CATEGORIES.items()]
  return {'info': {'description': 'dummy'}, 'licenses': [], 'images': images,
          'annotations': annotations, 'categories': categories}


def main():
  image_dir = OUT / 'images' / 'mscoco' / 'images' / 'train2014'
  image_dir.mkdir(parents=True, exist_ok=True)
  for image_id, (h, w, mode) in IMAGES.items():
    yy, xx = np.mgrid[:h, :w]
    pixels = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(
        image_dir / f'COCO_train2014_{image_id:012d}.jpg', quality=90)
  instances = json.dumps(_instances())
  for dataset, by_split in REFS.items():
    (OUT / dataset).mkdir(exist_ok=True)
    (OUT / dataset / 'instances.json').write_text(instances)
    for split_by, refs in by_split.items():
      refs = [_py2_ref(*ref) for ref in refs]
      with open(OUT / dataset / f'refs({split_by}).p', 'wb') as f:
        _Python2Pickler(f, protocol=2).dump(refs)


if __name__ == '__main__':
  main()
