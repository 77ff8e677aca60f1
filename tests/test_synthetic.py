"""Tests of the procedural referring dataset (cmsa_jax.data.synthetic).

Expressions are re-parsed and re-evaluated here from the record alone (object
attributes and mask centroids), independently of the generator's semantics.
"""

import collections
import hashlib

import numpy as np
import pytest

from cmsa_jax.data import synthetic

SIZE_WORDS = {'small', 'large'}
COLOR_WORDS, SHAPE_WORDS = set(synthetic.COLORS), set(synthetic.SHAPES)
SIDES = ('left', 'right', 'top', 'bottom')
CORNERS = tuple(f'{v} {h}' for v in ('top', 'bottom') for h in ('left', 'right'))


@pytest.fixture(scope='module')
def records():
  return [synthetic.generate_example(0, 'train', i) for i in range(300)]


def scene_of(record):
  """Per object: attributes and visible-mask centroid (x, y), from the record."""
  scene = []
  for k, mask in enumerate(record['objects']['mask']):
    ys, xs = np.nonzero(mask[..., 0])
    scene.append({'size': record['objects']['size'][k].decode(),
                  'color': record['objects']['color'][k].decode(),
                  'shape': record['objects']['shape'][k].decode(),
                  'x': xs.mean() + 0.5, 'y': ys.mean() + 0.5})
  return scene


def parse_noun_phrase(words):
  """'[small|large] [colour] shape|object' -> ({attr: value}, rest of words)."""
  constraint = {}
  if words[0] in SIZE_WORDS:
    constraint['size'], words = words[0], words[1:]
  if words[0] in COLOR_WORDS:
    constraint['color'], words = words[0], words[1:]
  if words[0] in SHAPE_WORDS:
    constraint['shape'] = words[0]
  else:
    assert words[0] == 'object', words
  return constraint, words[1:]


def matching(scene, constraint):
  return [i for i, o in enumerate(scene) if all(o[a] == v for a, v in constraint.items())]


def position(obj, word, size):
  """Smaller is further towards `word` (a side or a corner)."""
  distance = {'left': obj['x'], 'right': size - obj['x'],
              'top': obj['y'], 'bottom': size - obj['y']}
  if ' ' in word:
    vertical, horizontal = word.split()
    return np.hypot(distance[vertical], distance[horizontal])
  return distance[word]


def referents(text, scene, size):
  """(family, objects the expression denotes, objects its noun phrase denotes)."""
  words = text.split()
  assert words[0] == 'the'
  words = words[1:]
  extreme = next((w for w in CORNERS if ' '.join(words[:2]) == w), None)
  if extreme is None and words[0] in ('leftmost', 'rightmost', 'topmost', 'bottommost'):
    extreme = words[0][:-len('most')]
  if extreme is not None:  # "the leftmost NP", "the top right NP"
    constraint, rest = parse_noun_phrase(words[len(extreme.split()):])
    assert not rest
    candidates = matching(scene, constraint)
    values = sorted(position(scene[i], extreme, size) for i in candidates)
    best = [i for i in candidates if position(scene[i], extreme, size) == values[0]]
    return 'location', best, candidates
  if words[0] in ('second', 'third'):  # "the second NP from the left"
    constraint, rest = parse_noun_phrase(words[1:])
    assert rest[:2] == ['from', 'the'] and rest[2] in SIDES and len(rest) == 3
    candidates = matching(scene, constraint)
    values = sorted(position(scene[i], rest[2], size) for i in candidates)
    rank = 1 if words[0] == 'second' else 2
    if len(values) <= rank:
      return 'ordinal', [], candidates
    return 'ordinal', [i for i in candidates
                       if position(scene[i], rest[2], size) == values[rank]], candidates
  constraint, rest = parse_noun_phrase(words)
  candidates = matching(scene, constraint)
  if not rest:
    return 'attribute', candidates, candidates
  if rest[:3] == ['that', 'is', 'not']:  # "the NP that is not [a] value"
    value = rest[-1]
    attr = 'shape' if value in SHAPE_WORDS else 'color' if value in COLOR_WORDS else 'size'
    assert rest[3:-1] == (['a'] if attr == 'shape' else [])
    return 'negation', [i for i in candidates if scene[i][attr] != value], candidates
  relation = ' '.join(rest[:2]) if rest[1] == 'of' else rest[0]  # "the NP left of the NP"
  rest = rest[len(relation.split()):]
  assert rest[0] == 'the'
  anchor_constraint, tail = parse_noun_phrase(rest[1:])
  assert not tail
  anchors = matching(scene, anchor_constraint)
  assert len(anchors) == 1, f'ambiguous anchor in {text!r}'
  b = scene[anchors[0]]
  holds = {'left of': lambda a: a['x'] < b['x'], 'right of': lambda a: a['x'] > b['x'],
           'above': lambda a: a['y'] < b['y'], 'below': lambda a: a['y'] > b['y']}[relation]
  candidates = [i for i in candidates if i != anchors[0]]
  return 'relation', [i for i in candidates if holds(scene[i])], candidates


def test_every_expression_denotes_its_target_alone(records):
  families = collections.Counter()
  minimal = collections.Counter()
  for record in records:
    scene = scene_of(record)
    sentences = record['sentences']
    for text, target, family in zip(
        sentences['text'], sentences['object_index'], sentences['family']):
      parsed, denoted, candidates = referents(text.decode(), scene, record['width'])
      assert parsed == family.decode(), text
      assert denoted == [target], (text, scene)
      families[parsed] += 1
      if parsed != 'attribute':  # The words beyond the noun phrase are needed.
        assert len(candidates) >= 2, text
      else:  # Count expressions from which no attribute word can be dropped.
        words = text.decode().split()
        shorter = [' '.join(words[:i] + words[i + 1:]) for i in range(1, len(words) - 1)]
        if words[-1] in SHAPE_WORDS:
          shorter.append(' '.join(words[:-1] + ['object']))
        minimal[all(len(referents(s, scene, record['width'])[1]) > 1 for s in shorter)] += 1
  assert set(families) == set(synthetic.FAMILY_WEIGHTS)
  assert min(families.values()) >= 0.05 * sum(families.values()), families
  assert minimal[True] >= 0.7 * sum(minimal.values()), minimal


def test_expression_forms_all_occur(records):
  texts = [t.decode() for r in records for t in r['sentences']['text']]
  for phrase in ['leftmost', 'rightmost', 'topmost', 'bottommost', *CORNERS,
                 'left of', 'right of', 'above', 'below', 'second', 'third',
                 'that is not a', 'is not small', 'is not large',
                 *(f'is not {c}' for c in synthetic.COLORS), *(f'from the {s}' for s in SIDES)]:
    assert any(phrase in t for t in texts), phrase


def test_record_layout(records):
  for record in records[:50]:
    size = record['height']
    assert record['width'] == size == 64 and record['image'].shape == (size, size, 3)
    assert record['image'].dtype == np.uint8
    objects, sentences = record['objects'], record['sentences']
    assert 2 <= len(objects['mask']) <= 6 and 1 <= len(sentences['text']) <= 4
    assert all(len(v) == len(objects['mask']) for v in objects.values())
    assert all(len(v) == len(sentences['text']) for v in sentences.values())
    assert objects['category'] == objects['shape']
    assert sentences['tokens'] == sentences['text']
    assert all(0 <= i < len(objects['mask']) for i in sentences['object_index'])
    assert len(set(sentences['text'])) == len(sentences['text'])
    for mask in objects['mask']:
      assert mask.dtype == np.uint8 and mask.shape == (size, size, 1)
      assert set(np.unique(mask)) <= {0, 1}


def test_object_counts_cover_range(records):
  counts = collections.Counter(len(r['objects']['mask']) for r in records)
  assert set(counts) == set(range(2, 7)) and min(counts.values()) >= 30, counts


def test_masks_are_the_visible_pixels_of_each_object(records):
  palette = np.asarray(list(synthetic.COLORS.values()), float)
  for record in records[:100]:
    masks = np.stack(record['objects']['mask'])[..., 0].astype(bool)
    assert masks.sum(0).max() <= 1 and masks.sum((1, 2)).min() > 0
    image = record['image'].astype(int)
    chroma = image.max(-1) - image.min(-1)
    covered = masks.any(0)
    # Objects are saturated colours, the background is near grey.
    assert chroma[covered].min() > 60 and chroma[~covered].max() < 60
    for mask, color in zip(masks, record['objects']['color']):
      nearest = np.argmin(((image[mask][:, None] - palette) ** 2).sum(-1), axis=1)
      assert np.all(nearest == list(synthetic.COLORS).index(color.decode()))


def test_same_coloured_objects_do_not_touch(records):
  for record in records[:100]:
    masks = np.stack(record['objects']['mask'])[..., 0].astype(bool)
    colors = record['objects']['color']
    for i in range(len(masks)):
      padded = np.pad(masks[i], 1)
      grown = np.any([padded[dy:dy + 64, dx:dx + 64] for dy in range(3) for dx in range(3)], 0)
      for j in range(i + 1, len(masks)):
        assert colors[i] != colors[j] or not np.any(grown & masks[j])


def test_sizes_are_distinguishable(records):
  areas = collections.defaultdict(list)
  for record in records:
    for mask, size in zip(record['objects']['mask'], record['objects']['size']):
      areas[size].append(mask.sum())
  assert np.median(areas[b'large']) > 1.8 * np.median(areas[b'small'])


def overall_iou(records, predict):
  """Sum of intersections over sum of unions, over every expression."""
  intersection = union = 0
  for record in records:
    masks = np.stack(record['objects']['mask'])[..., 0].astype(bool)
    for target in record['sentences']['object_index']:
      guess = predict(masks, target)
      intersection += np.sum(guess & masks[target])
      union += np.sum(guess | masks[target])
  return intersection / union


def test_trivial_baselines_are_far_from_perfect(records):
  union_iou = overall_iou(records, lambda masks, target: masks.any(0))
  largest_iou = overall_iou(records, lambda masks, target: masks[np.argmax(masks.sum((1, 2)))])
  assert union_iou < 0.6 and largest_iou < 0.6, (union_iou, largest_iou)
  assert overall_iou(records, lambda masks, target: masks[target]) == 1.0


def test_deterministic_and_index_dependent():
  a = synthetic.generate_example(7, 'validation', 11)
  b = synthetic.generate_example(7, 'validation', 11)
  assert a['image'].tobytes() == b['image'].tobytes()
  assert [m.tobytes() for m in a['objects']['mask']] == [m.tobytes() for m in b['objects']['mask']]
  assert a['sentences'] == b['sentences'] and a['image_id'] == b['image_id']
  assert a['image'].tobytes() != synthetic.generate_example(7, 'validation', 12)['image'].tobytes()
  assert a['image'].tobytes() != synthetic.generate_example(8, 'validation', 11)['image'].tobytes()


def test_splits_are_disjoint():
  digests, ids = {}, {}
  for split in synthetic.SPLITS:
    records = [synthetic.generate_example(0, split, i) for i in range(100)]
    digests[split] = {hashlib.sha1(r['image'].tobytes()).digest() for r in records}
    ids[split] = {r['image_id'] for r in records} | {
        int(i) for r in records for i in r['sentences']['id']}
    assert len(digests[split]) == 100
  for a, b in [('train', 'validation'), ('train', 'test'), ('validation', 'test')]:
    assert not digests[a] & digests[b] and not ids[a] & ids[b]


def test_source():
  source = synthetic.SyntheticSource('test', 5, seed=2, image_size=96)
  assert len(source) == 5
  record = source[3]
  assert record['image'].shape == (96, 96, 3) and record['objects']['mask'][0].shape == (96, 96, 1)
  assert record['image_id'] == synthetic.generate_example(2, 'test', 3, image_size=96)['image_id']
  np.testing.assert_array_equal(source[-1]['image'], source[4]['image'])
  assert [r['image_id'] for r in source[1:4]] == [source[i]['image_id'] for i in (1, 2, 3)]
  assert [r['image_id'] for r in source.__getitems__([4, 0])] == [
      source[4]['image_id'], source[0]['image_id']]
  with pytest.raises(IndexError):
    source[5]


@pytest.mark.parametrize('call', [
    lambda: synthetic.generate_example(0, 'val', 0),
    lambda: synthetic.generate_example(0, 'train', -1),
    lambda: synthetic.generate_example(0, 'train', 0, image_size=16),
    lambda: synthetic.SyntheticSource('dev', 10),
    lambda: synthetic.SyntheticSource('train', -1),
])
def test_bad_arguments_raise(call):
  with pytest.raises(ValueError):
    call()
