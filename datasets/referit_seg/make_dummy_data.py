"""Writes dummy_data/: a tiny manual dir in text_objseg's exact ReferIt formats.

  python datasets/referit_seg/make_dummy_data.py

Masks are MATLAB v5 .mat files whose `segimg_t` is 0 on the object and, as
dtype and background vary, 1, -1 or other region labels elsewhere. The test
query file uses the older '<image>_<object>.png' keys; one image is a grayscale
JPEG; one image's only object has no expression.
"""

import json
import pathlib

import numpy as np
from PIL import Image
import scipy.io

OUT = pathlib.Path(__file__).parent / 'dummy_data'

# image: (height, width, PIL mode).
IMAGES = {'101': (20, 30, 'RGB'), '2045': (24, 16, 'L'), '37': (18, 22, 'RGB'),
          '8': (12, 12, 'RGB')}

# (image, object): (segimg_t dtype, background value, object box (x0, y0, x1, y1)).
OBJECTS = {
    ('101', 1): (np.uint8, 1, (2, 3, 12, 15)),
    ('101', 3): (np.int16, -1, (15, 0, 30, 6)),
    ('101', 12): (np.float64, 2, (0, 10, 8, 20)),
    ('2045', 2): (np.int32, 5, (4, 4, 12, 20)),
    ('37', 1): (np.uint8, 1, (0, 0, 22, 9)),
    ('8', 1): (np.uint8, 1, (1, 1, 5, 5)),
}

# split: [(image, object, expressions)], in file order.
QUERIES = {
    'trainval': [('101', 3, ['sky top right', 'the blue sky']),
                 ('101', 1, ['café sign on the left']),
                 ('2045', 2, ['person in the middle']),
                 ('101', 12, ['bottom left grass', 'grass', 'grass '])],
    'test': [('37', 1, ['top half']), ('8', 1, [])],
}


def box_mask(height, width, box):
  """The true mask: 1 on the pixels [x0, x1) x [y0, y1)."""
  x0, y0, x1, y1 = box
  mask = np.zeros((height, width), np.uint8)
  mask[y0:y1, x0:x1] = 1
  return mask


def main():
  (OUT / 'images').mkdir(parents=True, exist_ok=True)
  (OUT / 'mask').mkdir(exist_ok=True)
  for name, (h, w, mode) in IMAGES.items():
    yy, xx = np.mgrid[:h, :w]
    pixels = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], -1).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(OUT / 'images' / f'{name}.jpg', quality=90)
  for (image, obj), (dtype, background, box) in OBJECTS.items():
    h, w, _ = IMAGES[image]
    segimg = np.where(box_mask(h, w, box) == 1, 0, background).astype(dtype)
    scipy.io.savemat(OUT / 'mask' / f'{image}_{obj}.mat', {'segimg_t': segimg})
  suffix = {'trainval': '', 'test': '.png'}
  for split, queries in QUERIES.items():
    query = {f'{image}_{obj}{suffix[split]}': texts for image, obj, texts in queries}
    # text_objseg's separators.
    (OUT / f'referit_query_{split}.json').write_text(
        json.dumps(query, separators=(',\n', ':\n')))


if __name__ == '__main__':
  main()
