"""Fuzzed expressions: any unicode (control characters, RTL marks, combining sequences,
emoji, lone surrogates as argv's surrogateescape makes them), empty, 10,000 characters.

`Vocabulary.encode(strict=True)` (what predict and the web server run) gives at most
`max_words` ids with at least one known word, or an `errors.InputError`; predict
end to end writes its four pictures and nothing outside its output folder.
"""

from flax import nnx
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
import jax
import numpy as np
import pytest

import fuzzing
from cmsa_jax import errors
from cmsa_jax.data import text
from cmsa_jax.run import checkpoints
from cmsa_jax.run import predict

pytestmark = pytest.mark.fuzz

VOCAB = text.Vocabulary.build(['the red circle left of the blue square', 'the small green star'])
SPECIAL = ['', ' \t\n', '\u200f\u202e the red circle \u202c', 'e\u0301' * 30, 'the \U0001F9D1\u200d'
           '\U0001F4BB circle', 'red ' * 2500, 'a' * 10000, '\x00\x1b[31mred\x07', '$\\x$ red',
           'ＲＥＤ circle', 'red\ud800circle', '\u0130 red']
expressions = st.one_of(st.text(max_size=60), st.text(st.characters(codec=None), max_size=30),
                        st.sampled_from(SPECIAL),
                        st.lists(st.sampled_from(VOCAB.words[2:] + ('$', '\\', '\u0301', '.')),
                                 max_size=30).map(' '.join))


@fuzzing.budget(300)
@given(expression=expressions, max_len=st.integers(1, 25))
def test_encode(expression, max_len):
  try:
    ids, mask = VOCAB.encode(expression, max_len, strict=True)
  except errors.InputError as e:
    assert '\n' not in str(e) and repr(expression)[:20] in str(e)
    return
  assert ids.shape == mask.shape == (max_len,) and ids.dtype == np.int32
  assert 1 <= mask.sum() <= max_len and (ids[mask] != text.PAD).all()
  assert (ids[mask] != text.UNK).any() and (ids[~mask] == text.PAD).all()
  assert text.tokenize(expression)[:max_len] == [VOCAB.words[i] if i != text.UNK else
                                                  text.tokenize(expression)[k]
                                                  for k, i in enumerate(ids[mask])]


class _Network(nnx.Module):
  """Stands in for the image model (its outputs' shapes, random values): predict's own
  code (jitted) runs on the expression; a real tiny model would cost minutes of compilation."""
  input_keys = ('image', 'tokens', 'token_mask')
  levels = ('res3', 'res4', 'res5')

  def __call__(self, images, tokens, token_mask):
    (b, h, w), n = images.shape[:3], tokens.shape[1]
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    weights = token_mask[:, None, :] * jax.random.uniform(k1, (b, len(self.levels), n))
    return {'logits': jax.random.normal(k2, (b, h, w)),
            'heatmap': jax.random.uniform(k3, (b, h // 8, w // 8)),
            'word_attention': weights / weights.sum(-1, keepdims=True)}


@fuzzing.budget(10)
@given(expression=expressions)
@example(expression='the $\\x$ circle')  # matplotlib's math mode: ParseFatalException.
@example(expression='the red circle ' * 700)  # 10,500 characters.
@example(expression='the red \ud800 circle')  # Not UTF-8 (argv): TypeError in matplotlib.
def test_predict(tiny_config, tmp_path_factory, monkeypatch, expression):
  saved = (_Network(), tiny_config, VOCAB, 1)
  monkeypatch.setattr(checkpoints, 'restore_model', lambda *_: saved)
  sandbox = tmp_path_factory.mktemp('predict')
  image = sandbox / 'photo.png'
  image.write_bytes(fuzzing.png_bytes(np.full((30, 40, 3), 200, np.uint8)))
  out = sandbox / 'out'
  paths = fuzzing.check(lambda: predict.predict(tiny_config, 'unused', str(image), expression,
                                                str(out)),
                        name=repr(expression)[:20], sandbox=sandbox, given=image, output=out)
  if paths is not None:
    assert all(path.startswith(str(out)) and (sandbox / path).stat().st_size
               for path in paths.values())
