"""Expression categories on a table of expressions labelled by hand (RefCOCO-, ReferIt-
and A2D-style), before the rules were run on them, from the definitions in the
module docstring: spatial words, ordinals, a preposition between two noun phrases,
colour or size words, and the length in tokens."""

import pytest

from cmsa_jax.data import categories

# expression, categories, length bucket (tokens counted by hand, punctuation included).
HAND_LABELLED = [
    ('left', 'spatial', '1-3'),
    ('man on the left', 'spatial', '4-6'),
    ('second from left', 'spatial ordinal', '1-3'),
    ('third guy from the right', 'spatial ordinal', '4-6'),
    ('cup on the table', 'relational', '4-6'),
    ('the dog next to the red car', 'relational attribute', '7-10'),
    ('guy in red', 'attribute', '1-3'),
    ('man in red shirt', 'relational attribute', '4-6'),
    ('big white truck', 'attribute', '1-3'),
    ('smallest elephant', 'attribute', '1-3'),
    ('person', '', '1-3'),
    ('woman holding an umbrella', 'relational', '4-6'),
    ('the car in front of the bus', 'relational spatial', '7-10'),
    ('guy in front', 'spatial', '1-3'),
    ('left side of the picture', 'spatial', '4-6'),
    ('player to the right of the guy in blue', 'spatial relational attribute', '7-10'),
    ('bottom left corner', 'spatial', '1-3'),
    ('1st cow', 'ordinal', '1-3'),
    ('the last zebra', 'ordinal', '1-3'),
    ('a man riding a horse near a fence', 'relational', '7-10'),
    ('a small brown dog is running on the grass next to a white cat .', 'relational attribute',
     '11+'),
    ('the tallest person standing in the back of the room wearing a hat',
     'attribute spatial relational', '11+'),
    ('sky', '', '1-3'),
    ('woman , far right', 'spatial', '4-6'),
]


@pytest.mark.parametrize('expression,labels,bucket', HAND_LABELLED)
def test_categories_match_the_hand_labels(expression, labels, bucket):
  want = [c for c in categories.CATEGORIES if c in labels.split()]
  assert categories.categories(expression) == want
  assert categories.groups(expression) == want + [f'length_{bucket}']


def test_length_buckets_have_the_documented_edges():
  assert [categories.length_bucket(n) for n in (1, 3, 4, 6, 7, 10, 11, 40)] == [
      '1-3', '1-3', '4-6', '4-6', '7-10', '7-10', '11+', '11+']


def test_bytes_and_case_are_read_as_the_model_reads_them():
  assert categories.categories(b'Man On The LEFT') == ['spatial']
