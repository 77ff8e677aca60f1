"""Procedural referring-segmentation scenes: the embedded default dataset.

A scene is 2-6 flat shapes (shape x colour x size) on a textured background,
drawn in order so later shapes occlude earlier ones (each keeps at least half
of its area; same-coloured shapes never touch); each object's mask is its
visible pixels. Every expression is checked to resolve to exactly one object
under the semantics below, so its words are needed to find the target:

  attribute  "the small green triangle"        fewest attributes that single it out
  location   "the leftmost circle", "the top right object"
  relation   "the circle left of the red square"
  ordinal    "the second square from the left"
  negation   "the square that is not blue"

Positions are centroids of visible masks; a spatial claim holds only with a
margin of `MARGIN * image_size` pixels, and rivals must clearly fail it.

Record `index` of `split` is drawn from `np.random.default_rng((seed, split,
index))` with correctly rounded arithmetic only (no libm calls), so it is the
same on every call and machine (for one numpy release); splits are disjoint
streams. `generate_example` returns the record in
the decoded form of `tfds.data_source` over `datasets/synthetic_ref`.
"""

import dataclasses
import functools
import itertools
import math
import operator

import numpy as np

SPLITS = ('train', 'validation', 'test')
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'star')
COLORS = {
    'red': (215, 45, 45),
    'green': (45, 165, 65),
    'blue': (50, 90, 225),
    'yellow': (230, 205, 50),
    'purple': (150, 70, 200),
}
# Equal-area radius ranges (a circle of that radius has the shape's area), in
# pixels at 64x64; they scale with the image size.
SIZES = {'small': (7.0, 9.0), 'large': (12.0, 14.5)}
ATTRIBUTES = ('size', 'color', 'shape')  # Also the word order of a phrase.
FAMILY_WEIGHTS = {'attribute': 0.45, 'location': 0.2, 'negation': 0.15,
                  'relation': 0.1, 'ordinal': 0.1}
MIN_OBJECTS, MAX_OBJECTS = 2, 6
MAX_EXPRESSIONS = 4
MIN_VISIBLE = 0.5  # Of an object's own area, after occlusion.
MARGIN = 4 / 64  # Of the image size: spatial gap a claim must clear.
REDUNDANT_P = 0.2  # Chance an attribute expression names one extra attribute.
COLOR_JITTER = 12

ATTRIBUTE_SUBSETS = tuple(c for k in range(len(ATTRIBUTES) + 1)  # Fewest attributes first.
                          for c in itertools.combinations(ATTRIBUTES, k))
_SUBSETS = ATTRIBUTE_SUBSETS[1:]  # Non-empty, fewest attributes first.
_ORDINALS = ('second', 'third')


def _regular(n, radius, phase):
  """Vertices of a regular n-gon, rounded so every libm gives the same ones."""
  return np.round([(radius * math.cos(phase + 2 * math.pi * k / n),
                    radius * math.sin(phase + 2 * math.pi * k / n))
                   for k in range(n)], 9)


def _star_kites(outer, ratio=0.5):
  """A five-pointed star as the union of five convex kites around its centre."""
  tips = _regular(5, outer, -math.pi / 2)
  inner = _regular(5, outer * ratio, -math.pi / 2 + math.pi / 5)
  return tuple(np.stack([(0, 0), inner[k - 1], tips[k], inner[k]]) for k in range(5))


def _edges(polygons):
  """Edge origins and directions (E, 1, 1) of convex polygons, inside on the left."""
  origins, directions = [], []
  for polygon in polygons:
    d = np.roll(polygon, -1, axis=0) - polygon
    centre = polygon.mean(0)
    if d[0, 0] * (centre[1] - polygon[0, 1]) - d[0, 1] * (centre[0] - polygon[0, 0]) < 0:
      polygon = polygon[::-1]
      d = np.roll(polygon, -1, axis=0) - polygon
    origins.append(polygon)
    directions.append(d)
  origins, directions = np.concatenate(origins), np.concatenate(directions)
  points = np.concatenate(polygons)
  return {'ax': origins[:, :1, None], 'ay': origins[:, 1:, None],
          'dx': directions[:, :1, None], 'dy': directions[:, 1:, None],
          'num': len(polygons), 'bounds': np.concatenate([points.min(0), points.max(0)])}


# Unit shapes of area pi as unions of convex polygons (the circle is exact).
# Image coordinates (y down): the triangle and the star point up.
GEOMETRY = {
    'circle': {'bounds': np.array([-1.0, -1.0, 1.0, 1.0])},
    'square': _edges([_regular(4, math.sqrt(math.pi / 2), math.pi / 4)]),
    'triangle': _edges([_regular(3, math.sqrt(4 * math.pi / (3 * math.sqrt(3))), -math.pi / 2)]),
    'diamond': _edges([_regular(4, math.sqrt(math.pi / 2), 0.0)]),
    'star': _edges(_star_kites(math.sqrt(math.pi / (5 * 0.5 * math.sin(math.pi / 5))))),
}


@functools.lru_cache(maxsize=8)
def _grid(size):
  """Pixel-centre coordinates, x (1, size) and y (size, 1)."""
  centres = np.arange(size, dtype=np.float64) + 0.5
  return centres[None, :], centres[:, None]


def rasterize(shape, cx, cy, radius, size):
  """(rows, cols, inside): a window and which of its pixel centres the shape covers."""
  g = GEOMETRY[shape]
  x0, y0, x1, y1 = g['bounds'] * radius + (cx, cy, cx, cy)
  rows = slice(max(int(y0) - 1, 0), min(int(y1) + 2, size))  # One pixel to spare.
  cols = slice(max(int(x0) - 1, 0), min(int(x1) + 2, size))
  xs, ys = _grid(size)
  dx, dy = xs[:, cols] - cx, ys[rows] - cy
  if shape == 'circle':
    return rows, cols, dx * dx + dy * dy <= radius * radius
  cross = g['dx'] * (dy - g['ay'] * radius) - g['dy'] * (dx - g['ax'] * radius)
  inside = (cross >= 0).reshape(g['num'], -1, *cross.shape[1:])
  return rows, cols, inside.all(1).any(0)


def background(rng, size):
  """Low-saturation grey with a gradient and triangle-wave stripes, (H, W, 3)."""
  xs, ys = _grid(size)
  xs, ys = xs / size - 0.5, ys / size - 0.5
  base = rng.integers(70, 171) + rng.integers(-12, 13, size=3)
  gx, gy = rng.uniform(-1, 1, size=2)
  gradient = (gx * xs + gy * ys) * rng.uniform(20, 60)
  wx, wy = rng.uniform(-1, 1, size=2)
  period = rng.uniform(5, 14) * (math.sqrt(wx * wx + wy * wy) + 1e-6)
  phase = (wx * xs + wy * ys) * size / period
  stripes = (np.abs(phase - np.floor(phase) - 0.5) - 0.25) * rng.uniform(0, 60)
  shading = gradient + stripes
  return np.stack([shading + b for b in base.tolist()], axis=-1)  # Faster than broadcasting.


@dataclasses.dataclass(frozen=True)
class SceneObject:
  """One shape of a scene: its attributes and the centroid of its visible mask."""
  shape: str
  color: str
  size: str
  x: float = 0.0  # Centroid of the visible mask, pixels.
  y: float = 0.0


def _sample_scene(rng, size):
  """(objects, label map, float image (H, W, 3)); label -1 is background."""
  num = rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1)
  while True:  # A scene too crowded to place every object is drawn again.
    scene = _try_scene(rng, size, num)
    if scene is not None:
      return scene


def _try_scene(rng, size, num):
  labels = np.full((size, size), -1, np.int8)  # Visible object per pixel.
  hues = np.zeros((size, size), np.uint8)  # Bit c set: colour c is visible there.
  near = np.zeros_like(hues)  # Bit c set: colour c is visible in the 3x3 around.
  image = background(rng, size)
  objects, keep = [], np.zeros(0)
  for k in range(num):
    visible = np.bincount(labels.ravel() + 1, minlength=k + 1)[1:]
    for attempt in range(40):
      if attempt % 10 == 0:  # Redraw the object now and then: a smaller one may fit.
        hue = rng.integers(len(COLORS))
        obj = SceneObject(SHAPES[rng.integers(len(SHAPES))], tuple(COLORS)[hue],
                      tuple(SIZES)[rng.integers(len(SIZES))])
        radius = rng.uniform(*SIZES[obj.size]) * size / 64
        x0, y0, x1, y1 = GEOMETRY[obj.shape]['bounds'] * radius
      cx = -x0 + (size - x1 + x0) * rng.random()  # The whole shape in the image.
      cy = -y0 + (size - y1 + y0) * rng.random()
      rows, cols, inside = rasterize(obj.shape, cx, cy, radius, size)
      lost = np.bincount(labels[rows, cols][inside] + 1, minlength=k + 1)[1:]
      # Occlude no object beyond MIN_VISIBLE; touch none of the same colour.
      if np.all(visible - lost >= keep) and not np.any(near[rows, cols][inside] & (1 << hue)):
        break
    else:
      return None
    labels[rows, cols][inside] = k
    hues[rows, cols][inside] = 1 << hue
    near = spread(hues)
    color = np.asarray(COLORS[obj.color]) + rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    image[rows, cols][inside] = color
    objects.append(obj)
    keep = np.append(keep, MIN_VISIBLE * inside.sum())
  return _with_centroids(objects, labels), labels, image


def spread(bits):
  """OR of `bits` over each pixel's 3x3 neighbourhood."""
  out = bits.copy()
  out[1:] |= bits[:-1]
  out[:-1] |= bits[1:]
  rows = out.copy()
  out[:, 1:] |= rows[:, :-1]
  out[:, :-1] |= rows[:, 1:]
  return out


def _with_centroids(objects, labels):
  ys, xs = np.nonzero(labels >= 0)
  ids = labels[ys, xs]
  counts = np.bincount(ids, minlength=len(objects))
  cx = np.bincount(ids, xs + 0.5, len(objects)) / counts
  cy = np.bincount(ids, ys + 0.5, len(objects)) / counts
  return [dataclasses.replace(o, x=float(x), y=float(y)) for o, x, y in zip(objects, cx, cy)]


# ----------------------------------------------------------------------------
# Expressions: per family, every text that singles out a target.


def _norm(x, y):
  return math.sqrt(x * x + y * y)  # Correctly rounded everywhere, unlike hypot.


_EXTREMES = {  # word: key whose smallest value wins.
    'leftmost': lambda o, size: o.x,
    'rightmost': lambda o, size: -o.x,
    'topmost': lambda o, size: o.y,
    'bottommost': lambda o, size: -o.y,
    'top left': lambda o, size: _norm(o.x, o.y),
    'top right': lambda o, size: _norm(size - o.x, o.y),
    'bottom left': lambda o, size: _norm(o.x, size - o.y),
    'bottom right': lambda o, size: _norm(size - o.x, size - o.y),
}
_SIDES = {'left': 'leftmost', 'right': 'rightmost', 'top': 'topmost', 'bottom': 'bottommost'}
_RELATIONS = {  # words: how far `a` lies on that side of `b`.
    'left of': lambda a, b: b.x - a.x,
    'right of': lambda a, b: a.x - b.x,
    'above': lambda a, b: b.y - a.y,
    'below': lambda a, b: a.y - b.y,
}


class Scene:
  """Objects plus the queries expressions are built from."""

  def __init__(self, objects, size):
    self.objects, self.margin = objects, MARGIN * size
    self.keys = {word: [key(o, size) for o in objects] for word, key in _EXTREMES.items()}
    self.order = {word: sorted(range(len(objects)), key=values.__getitem__)
                  for word, values in self.keys.items()}
    self._members = {}
    for attrs in ATTRIBUTE_SUBSETS:
      groups = {}
      for i, o in enumerate(objects):
        groups.setdefault(tuple(getattr(o, a) for a in attrs), []).append(i)
      for i, o in enumerate(objects):
        self._members[i, attrs] = groups[tuple(getattr(o, a) for a in attrs)]
    self.unique_attrs = [self._unique_attrs(i) for i in range(len(objects))]

  def members(self, target, attrs):
    """Objects that share `target`'s values of `attrs`, `target` included."""
    return self._members[target, attrs]

  def _unique_attrs(self, target):
    """The smallest attribute sets that match `target` alone."""
    unique = [a for a in _SUBSETS if len(self.members(target, a)) == 1]
    return [a for a in unique if len(a) == len(unique[0])]

  def rank(self, members, target, word):
    """Rank of `target` among `members` by `_EXTREMES[word]`; None unless its
    neighbours in that order are at least the margin away."""
    values = self.keys[word]
    ordered = [i for i in self.order[word] if i in members]
    rank = ordered.index(target)
    neighbours = [values[i] for i in ordered[max(rank - 1, 0):rank + 2]]
    gaps = [b - a for a, b in zip(neighbours, neighbours[1:])]
    return rank if all(g >= self.margin for g in gaps) else None


def phrase(obj, attrs):
  """'small red circle' for `attrs` ('size', 'color', 'shape'); 'object' if no shape."""
  words = [getattr(obj, a) for a in ATTRIBUTES if a in attrs and a != 'shape']
  return ' '.join(words + [obj.shape if 'shape' in attrs else 'object'])


def attribute_texts(scene, target, rng):
  """The attribute family: the fewest attributes that single `target` out (one more, at times)."""
  minimal = scene.unique_attrs[target]
  if not minimal:
    return []
  attrs = minimal[rng.integers(len(minimal))]
  extra = [a for a in ATTRIBUTES if a not in attrs]
  if extra and rng.random() < REDUNDANT_P:
    attrs += (extra[rng.integers(len(extra))],)
  return [f'the {phrase(scene.objects[target], attrs)}']


def _location_texts(scene, target, rng):
  del rng
  texts = []
  for attrs in ATTRIBUTE_SUBSETS:
    members = scene.members(target, attrs)
    if len(members) >= 2:
      texts += [f'the {word} {phrase(scene.objects[target], attrs)}'
                for word in _EXTREMES if scene.rank(members, target, word) == 0]
  return texts


def _ordinal_texts(scene, target, rng):
  del rng
  texts = []
  for attrs in ATTRIBUTE_SUBSETS:
    members = scene.members(target, attrs)
    for side, word in _SIDES.items():
      rank = scene.rank(members, target, word) if len(members) >= 2 else None
      if rank in (1, 2):
        texts.append(f'the {_ORDINALS[rank - 1]} {phrase(scene.objects[target], attrs)} '
                     f'from the {side}')
  return texts


def _relation_texts(scene, target, rng):
  objects, texts = scene.objects, []
  for anchor, anchor_attrs in enumerate(scene.unique_attrs):
    if anchor == target or not anchor_attrs:
      continue
    anchor_phrase = phrase(objects[anchor], anchor_attrs[rng.integers(len(anchor_attrs))])
    for attrs in ATTRIBUTE_SUBSETS:
      rivals = [i for i in scene.members(target, attrs) if i not in (target, anchor)]
      if not rivals:  # The relation must be needed.
        continue
      for words, offset in _RELATIONS.items():
        if (offset(objects[target], objects[anchor]) >= scene.margin and
            all(offset(objects[i], objects[anchor]) <= 0 for i in rivals)):
          texts.append(f'the {phrase(objects[target], attrs)} {words} the {anchor_phrase}')
  return texts


def _negation_texts(scene, target, rng):
  del rng
  objects, texts = scene.objects, []
  for negated in ATTRIBUTES:
    for attrs in ATTRIBUTE_SUBSETS:
      if negated in attrs:
        continue
      values = {getattr(objects[i], negated) for i in scene.members(target, attrs) if i != target}
      if len(values) == 1 and getattr(objects[target], negated) not in values:
        article = 'a ' if negated == 'shape' else ''
        texts.append(f'the {phrase(objects[target], attrs)} that is not {article}{values.pop()}')
  return texts


_FAMILIES = {
    'attribute': attribute_texts,
    'location': _location_texts,
    'relation': _relation_texts,
    'ordinal': _ordinal_texts,
    'negation': _negation_texts,
}
_FAMILY_P = np.asarray([FAMILY_WEIGHTS[f] for f in _FAMILIES]) / sum(FAMILY_WEIGHTS.values())


def _sample_expressions(rng, scene):
  """1 to MAX_EXPRESSIONS distinct (text, target, family); [] if none exists."""
  expressions = []
  for _ in range(rng.integers(1, MAX_EXPRESSIONS + 1)):
    expression = _sample_expression(rng, scene, expressions)
    if expression is not None:
      expressions.append(expression)
  return expressions


def _sample_expression(rng, scene, taken):
  """A new expression: families in weighted random order, fresh targets first."""
  used_targets = {t for _, t, _ in taken}
  used_texts = {e for e, _, _ in taken}
  targets = sorted(rng.permutation(len(scene.objects)).tolist(), key=lambda t: t in used_targets)
  for f in rng.choice(len(_FAMILIES), size=len(_FAMILIES), replace=False, p=_FAMILY_P):
    family = tuple(_FAMILIES)[f]
    for target in targets:
      texts = [t for t in _FAMILIES[family](scene, target, rng) if t not in used_texts]
      if texts:
        return texts[rng.integers(len(texts))], target, family
  return None


# ----------------------------------------------------------------------------
# Records.


def split_code(split):
  """The index of `split` in SPLITS, which seeds and ids derive from."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  return SPLITS.index(split)


def image_id(split, index):
  """The int64 id of record `index` of `split`, unique across splits."""
  return split_code(split) * 10**9 + index


def generate_example(seed: int, split: str, index: int, *, image_size: int = 64) -> dict:
  """Record `index` of `split`, as `tfds.data_source` decodes it."""
  if not 0 <= index < 10**9:
    raise ValueError(f'index must be in [0, 1e9), got {index}.')
  if image_size < 32:
    raise ValueError(f'image_size must be >= 32, got {image_size}.')
  rng = np.random.default_rng((seed, split_code(split), index))
  while True:
    objects, labels, image = _sample_scene(rng, image_size)
    expressions = _sample_expressions(rng, Scene(objects, image_size))
    if expressions:
      break
  noise = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape) >> 4
  image += noise - 8.0  # Uniform in [-8, 7], cheaper than rng.integers.
  image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
  uid = image_id(split, index)
  return {
      'image': image,
      'height': image_size,
      'width': image_size,
      'image_id': uid,
      'objects': {
          'mask': [(labels == k).astype(np.uint8)[..., None] for k in range(len(objects))],
          'id': [np.int64(uid * 10 + k) for k in range(len(objects))],
          'category': [o.shape.encode() for o in objects],
          'shape': [o.shape.encode() for o in objects],
          'color': [o.color.encode() for o in objects],
          'size': [o.size.encode() for o in objects],
      },
      'sentences': {
          'text': [text.encode() for text, _, _ in expressions],
          'tokens': [text.encode() for text, _, _ in expressions],
          'object_index': [np.int32(target) for _, target, _ in expressions],
          'id': [np.int64(uid * 10 + j) for j in range(len(expressions))],
          'family': [family.encode() for _, _, family in expressions],
      },
  }


class SyntheticSource:
  """Random-access source of `generate_example` records (grain's protocol).

  Subclasses set `generate` to another generator of the same signature; keyword
  `options` (e.g. a video's clip_radius) are passed on to it.
  """

  generate = staticmethod(generate_example)

  def __init__(self, split: str, num_examples: int, *, seed: int = 0, image_size: int = 64,
               **options):
    split_code(split)
    if num_examples < 0 or num_examples > 10**9:
      raise ValueError(f'num_examples must be in [0, 1e9], got {num_examples}.')
    self.split, self.num_examples, self.seed = split, num_examples, seed
    self.options = dict(image_size=image_size, **options)

  def __len__(self):
    return self.num_examples

  def __getitem__(self, key):
    if isinstance(key, slice):
      return [self[i] for i in range(*key.indices(len(self)))]
    index = operator.index(key)
    if not -len(self) <= index < len(self):
      raise IndexError(f'index {index} out of range for {len(self)} records.')
    return self.generate(self.seed, self.split, index % len(self), **self.options)

  def __getitems__(self, keys):
    return [self[k] for k in keys]

  def __repr__(self):
    options = ''.join(f', {k}={v!r}' for k, v in self.options.items())
    return (f'{type(self).__name__}(split={self.split!r}, num_examples={self.num_examples}, '
            f'seed={self.seed}{options})')
