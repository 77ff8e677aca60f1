"""Procedural referring-video clips: moving shapes (the video demo's dataset).

A clip is T = 2τ+1 frames of 2-4 flat shapes of `synthetic.py` (shape x colour
x size) on a static textured background. Each shape stands still, moves at a
constant slow or fast speed left, right, up or down, or moves and stops at the
annotated (middle) frame c. Often two shapes look the same, so only their
motion tells them apart. Expressions, each resolving to exactly one shape:

  motion      "the circle moving left", "the red square that does not move",
              "the triangle that stops", "the star moving fastest": shapes that
              share the phrase exist and differ in motion, so no single frame
              resolves the expression.
  appearance  "the small green triangle": the fewest attributes that single
              the shape out (as synthetic.py's attribute family).

Every shape keeps at least half its area visible in every frame; shapes of one
colour do not touch in frame c. Masks are the visible pixels in frame c.

Record `index` of `split` is drawn from `np.random.default_rng((seed, split,
index, 1))` (a stream apart from synthetic.py's images), so it is the same on
every call and machine (for one numpy release). `generate_example` returns it in
the decoded form of `tfds.data_source` over `datasets/synthetic_video`, the
layout of the video datasets (cmsa_jax/records/features.py): `image` = frame c,
`frames` = the clip, `frame_ids` 1..T, `frame_index` = τ + 1.
"""

import dataclasses

import numpy as np

from cmsa_jax.data import synthetic

SPLITS = synthetic.SPLITS
FAMILIES = ('motion', 'appearance')
FAMILY_WEIGHTS = {'motion': 0.6, 'appearance': 0.4}
MIN_OBJECTS, MAX_OBJECTS = 2, 4
TWIN_P = 0.6  # Chance the second shape looks like the first.
MAX_EXPRESSIONS = 3
DIRECTIONS = {'left': (-1, 0), 'right': (1, 0), 'up': (0, -1), 'down': (0, 1)}
SPEEDS = {'slow': 3.0, 'fast': 6.0}  # Pixels per frame at 64x64; scales with the size.
MOTIONS = {'still': 0.2, 'stops': 0.15, 'moves': 0.65}


@dataclasses.dataclass(frozen=True)
class _Mover:
  """A shape and its motion; (x, y) is its centre in frame c."""
  shape: str
  color: str
  size: str
  motion: str  # One of MOTIONS.
  direction: str = ''  # For 'moves' and 'stops'.
  speed: float = 0.0  # Pixels per frame while moving.
  x: float = 0.0
  y: float = 0.0

  def centre(self, t, c):
    """(x, y) in frame t."""
    if self.motion == 'still' or (self.motion == 'stops' and t >= c):
      return self.x, self.y
    dx, dy = DIRECTIONS[self.direction]
    return self.x + dx * self.speed * (t - c), self.y + dy * self.speed * (t - c)


def _sample_movers(rng, size):
  num = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
  looks = []
  for k in range(num):
    if k == 1 and rng.random() < TWIN_P:
      looks.append(looks[0])
    else:
      looks.append((synthetic.SHAPES[rng.integers(len(synthetic.SHAPES))],
                    tuple(synthetic.COLORS)[rng.integers(len(synthetic.COLORS))],
                    tuple(synthetic.SIZES)[rng.integers(len(synthetic.SIZES))]))
  movers = []
  for shape, color, size_name in looks:
    motion = tuple(MOTIONS)[rng.choice(len(MOTIONS), p=list(MOTIONS.values()))]
    direction = tuple(DIRECTIONS)[rng.integers(len(DIRECTIONS))] if motion != 'still' else ''
    speed = SPEEDS[tuple(SPEEDS)[rng.integers(len(SPEEDS))]] * size / 64 if direction else 0.0
    movers.append(_Mover(shape, color, size_name, motion, direction, speed))
  return movers


def _render(rng, movers, size, num_frames):
  """(movers with centres, frames float (T, H, W, 3), label maps (T, H, W)) or None."""
  c = num_frames // 2
  radii = [rng.uniform(*synthetic.SIZES[m.size]) * size / 64 for m in movers]
  placed = []
  for m, radius in zip(movers, radii):
    x0, y0, x1, y1 = synthetic.GEOMETRY[m.shape]['bounds'] * radius
    # The whole trajectory in the image: the centre's range shrinks by the travel.
    travel = [m.centre(t, c) for t in (0, num_frames - 1)]
    tx = [p[0] - m.x for p in travel]
    ty = [p[1] - m.y for p in travel]
    low_x, high_x = -x0 - min(tx + [0]), size - x1 - max(tx + [0])
    low_y, high_y = -y0 - min(ty + [0]), size - y1 - max(ty + [0])
    if low_x >= high_x or low_y >= high_y:
      return None
    placed.append(dataclasses.replace(m, x=float(rng.uniform(low_x, high_x)),
                                      y=float(rng.uniform(low_y, high_y))))
  background = synthetic.background(rng, size)
  colors = [np.asarray(synthetic.COLORS[m.color]) + rng.integers(
      -synthetic.COLOR_JITTER, synthetic.COLOR_JITTER + 1, size=3) for m in placed]
  frames, labels = [], []
  for t in range(num_frames):
    image, label = background.copy(), np.full((size, size), -1, np.int8)
    areas = []
    for k, (m, radius) in enumerate(zip(placed, radii)):
      rows, cols, inside = synthetic.rasterize(m.shape, *m.centre(t, c), radius, size)
      label[rows, cols][inside] = k
      image[rows, cols][inside] = colors[k]
      areas.append(inside.sum())
    visible = np.bincount(label.ravel() + 1, minlength=len(placed) + 1)[1:]
    if np.any(visible < synthetic.MIN_VISIBLE * np.asarray(areas)):
      return None
    frames.append(image)
    labels.append(label)
  if _same_colour_touching(placed, labels[c]):
    return None
  return placed, np.stack(frames), np.stack(labels)


def _same_colour_touching(movers, label):
  for k, m in enumerate(movers):
    near = synthetic.spread((label == k).astype(np.uint8)).astype(bool)
    if any(o.color == m.color and np.any(near & (label == j))
           for j, o in enumerate(movers) if j != k):
      return True
  return False


# ----------------------------------------------------------------------------
# Expressions.

def _motion_claims(mover, members):
  """Motion phrases true of `mover` and of no other of `members`."""
  others = [o for o in members if o is not mover]
  claims = []
  if mover.direction and all(o.direction != mover.direction for o in others):
    claims.append(f'moving {mover.direction}')
  if mover.motion == 'still' and all(o.motion != 'still' for o in others):
    claims.append('that does not move')
  if mover.motion == 'stops' and all(o.motion != 'stops' for o in others):
    claims.append('that stops')
  if (mover.motion == 'moves' and any(o.motion != 'still' for o in others)
      and all(o.motion == 'still' or o.speed < mover.speed for o in others)):
    claims.append('moving fastest')
  return claims


def _motion_texts(scene, movers, target):
  texts = []
  for attrs in synthetic.ATTRIBUTE_SUBSETS:
    members = [movers[i] for i in scene.members(target, attrs)]
    if len(members) >= 2:  # The phrase alone is not enough: motion is needed.
      phrase = synthetic.phrase(movers[target], attrs)
      texts += [f'the {phrase} {claim}' for claim in _motion_claims(movers[target], members)]
  return texts


def _sample_expressions(rng, movers, size):
  scene = synthetic.Scene(
      [synthetic.SceneObject(m.shape, m.color, m.size, m.x, m.y) for m in movers], size)
  families = {
      'motion': lambda t: _motion_texts(scene, movers, t),
      'appearance': lambda t: synthetic.attribute_texts(scene, t, rng),
  }
  p = np.asarray([FAMILY_WEIGHTS[f] for f in FAMILIES])
  expressions, used = [], set()
  for _ in range(rng.integers(1, MAX_EXPRESSIONS + 1)):
    targets = sorted(rng.permutation(len(movers)).tolist(),
                     key=lambda t: t in {e[1] for e in expressions})
    found = None
    for f in rng.choice(len(FAMILIES), size=len(FAMILIES), replace=False, p=p):
      for target in targets:
        texts = [x for x in families[FAMILIES[f]](target) if x not in used]
        if texts:
          found = (texts[rng.integers(len(texts))], target, FAMILIES[f])
          break
      if found:
        break
    if found:
      expressions.append(found)
      used.add(found[0])
  return expressions


# ----------------------------------------------------------------------------
# Records.

def sample_clip(seed: int, split: str, index: int, *, image_size: int = 64,
                clip_radius: int = 2):
  """(movers with their motion and centre in frame c, frames uint8 (T, H, W, 3),
  label maps (T, H, W) of the mover drawn at each pixel or -1, expressions
  [(text, mover index, family)]) of record `index` of `split`."""
  if not 0 <= index < 10**9:
    raise ValueError(f'index must be in [0, 1e9), got {index}.')
  if image_size < 32:
    raise ValueError(f'image_size must be >= 32, got {image_size}.')
  if clip_radius < 0:
    raise ValueError(f'clip_radius must be >= 0, got {clip_radius}.')
  code = synthetic.split_code(split)
  rng = np.random.default_rng((seed, code, index, 1))
  num_frames, c = 2 * clip_radius + 1, clip_radius
  while True:
    rendered = _render(rng, _sample_movers(rng, image_size), image_size, num_frames)
    if rendered is None:
      continue
    movers, frames, labels = rendered
    expressions = _sample_expressions(rng, movers, image_size)
    if expressions:
      break
  noise = np.frombuffer(rng.bytes(frames.size), np.uint8).reshape(frames.shape) >> 4
  frames = np.clip(np.rint(frames + noise - 8.0), 0, 255).astype(np.uint8)
  return movers, frames, labels, expressions


def generate_example(seed: int, split: str, index: int, *, image_size: int = 64,
                     clip_radius: int = 2) -> dict:
  """Record `index` of `split` with a clip of 2 * clip_radius + 1 frames."""
  movers, frames, labels, expressions = sample_clip(seed, split, index, image_size=image_size,
                                                    clip_radius=clip_radius)
  c = clip_radius
  num_frames = 2 * c + 1
  uid = synthetic.image_id(split, index)
  return {
      'image': frames[c],
      'height': image_size,
      'width': image_size,
      'objects': {
          'mask': [(labels[c] == k).astype(np.uint8)[..., None] for k in range(len(movers))],
          'id': [np.int64(uid * 10 + k) for k in range(len(movers))],
          'category': [m.shape.encode() for m in movers],
      },
      'sentences': {
          'text': [text.encode() for text, _, _ in expressions],
          'tokens': [b''] * len(expressions),
          'object_index': [np.int32(target) for _, target, _ in expressions],
          'id': [np.int64(uid * 10 + j) for j in range(len(expressions))],
          'family': [family.encode() for _, _, family in expressions],
      },
      'frames': list(frames),
      'frame_ids': [np.int32(i) for i in range(1, num_frames + 1)],
      'video_id': f'{split}_{index:07d}'.encode(),
      'frame_index': np.int32(c + 1),
  }


class SyntheticVideoSource(synthetic.SyntheticSource):
  """Random-access source of `generate_example` clip records (grain's protocol)."""

  generate = staticmethod(generate_example)

  def __init__(self, split: str, num_examples: int, *, seed: int = 0, image_size: int = 64,
               clip_radius: int = 2):
    super().__init__(split, num_examples, seed=seed, image_size=image_size,
                     clip_radius=clip_radius)
