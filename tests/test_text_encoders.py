"""The text encoders: shapes, padding invariance, contextual (bilstm, transformer) vs
context-free (embed) word features, and the LSTM / transformer layers against NumPy
references written from their published equations (tests/references.py)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import helpers
import references
from cmsa_jax import errors
from cmsa_jax.models import text
from cmsa_jax.models.text import bilstm
from cmsa_jax.models.text import embed

VOCAB, DIM, N = 13, 8, 6
ARGS = {'embed': {}, 'bilstm': dict(layers=2), 'transformer': dict(layers=2, heads=2)}
MASK = np.arange(N)[None] < np.array([[4], [N]])  # Expression 0 has 4 words, then padding.


@functools.cache
def _encoder(name):
  return text.REGISTRY.build(name, ARGS[name], vocab_size=VOCAB, dim=DIM, rngs=nnx.Rngs(0))


def _tokens(seed=0):
  tokens = np.random.default_rng(seed).integers(2, VOCAB, (2, N)).astype(np.int32)
  return np.where(MASK, tokens, 0)


def _run(name, tokens, mask=MASK):
  return np.asarray(nnx.jit(lambda m, t, k: m(t, k))(_encoder(name), jnp.asarray(tokens),
                                                       jnp.asarray(mask)))


def test_every_registered_word_table_encoder_is_tested():
  # Encoders over the dataset's vocabulary (a pretrained one with its own tokenizer,
  # e.g. 'bert', has its own tests).
  assert set(ARGS) == {name for name, cls in text.REGISTRY.parts.items()
                       if issubclass(cls, embed.Encoder)}


@pytest.mark.parametrize('name', sorted(ARGS))
def test_shapes_and_width(name):
  out = _run(name, _tokens())
  assert out.shape == (2, N, DIM) and _encoder(name).width == DIM
  assert np.all(np.isfinite(out))


@pytest.mark.parametrize('name', sorted(ARGS))
def test_padding_changes_nothing(name):
  tokens = _tokens()
  out = _run(name, tokens)
  other = np.where(MASK, tokens, 7)  # Other ids at the padded positions ...
  longer = np.concatenate([other, np.full((2, 3), 5, np.int32)], 1)  # ... and more padding.
  longer_mask = np.concatenate([MASK, np.zeros((2, 3), bool)], 1)
  out_long = _run(name, longer, longer_mask)
  np.testing.assert_allclose(out_long[:, :N][MASK], out[MASK], atol=1e-6)


@pytest.mark.parametrize('name, contextual', [('embed', False), ('bilstm', True),
                                              ('transformer', True)])
def test_a_word_depends_on_the_other_words_only_if_contextual(name, contextual):
  tokens = _tokens()
  changed = tokens.copy()
  changed[:, 2] = np.where(tokens[:, 2] == 3, 4, 3)  # Word 2 of each expression.
  a, b = _run(name, tokens), _run(name, changed)
  others = MASK.copy()
  others[:, 2] = False
  difference = np.abs(a - b)[others].max(-1)  # Per other valid word.
  if contextual:
    assert difference.min() > 1e-4  # Every other word's feature changed.
  else:
    assert difference.max() == 0
  assert np.abs(a - b)[:, 2].max() > 1e-4


def _gates(lstm):
  """{gate: (W, U, b)} of a bilstm.LSTM, split by the documented order (i, f, g, o)."""
  w, b = np.asarray(lstm.input.kernel[...], np.float64), np.asarray(lstm.input.bias[...])
  u = np.asarray(lstm.hidden.kernel[...], np.float64)
  h = lstm.hidden_dim
  return {g: (w[:, k * h:(k + 1) * h], u[:, k * h:(k + 1) * h], b[k * h:(k + 1) * h])
          for k, g in enumerate(bilstm.GATES)}


def test_bilstm_matches_the_lstm_equations():
  encoder, tokens = _encoder('bilstm'), _tokens(1)
  out = _run('bilstm', tokens)
  layers = [(_gates(f), _gates(b)) for f, b in zip(encoder.forward, encoder.backward)]
  table = np.asarray(encoder.embedding[...], np.float64)
  for row in range(2):
    n = MASK[row].sum()
    want = references.bilstm(table[tokens[row, :n]], layers)
    np.testing.assert_allclose(out[row, :n], want, atol=1e-5)
    assert np.all(out[row, n:] == 0)
  # The forget-gate bias starts at 1, the others at 0.
  np.testing.assert_array_equal(_gates(encoder.forward[0])['f'][2], 1)
  np.testing.assert_array_equal(_gates(encoder.forward[0])['i'][2], 0)


def _linear(layer):
  return np.asarray(layer.kernel[...], np.float64), np.asarray(layer.bias[...], np.float64)


def _norm(layer):
  return np.asarray(layer.scale[...], np.float64), np.asarray(layer.bias[...], np.float64)


def test_transformer_matches_the_attention_equations():
  encoder, tokens = _encoder('transformer'), _tokens(2)
  # Random layer-norm parameters, so the reference checks where scale and bias go.
  rng = np.random.default_rng(3)
  for norm in [encoder.norm] + [n for l in encoder.layers for n in (l.attention_norm, l.mlp_norm)]:
    norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, DIM), jnp.float32)
    norm.bias[...] = jnp.asarray(rng.normal(0, 0.1, DIM), jnp.float32)
  out = np.asarray(encoder(jnp.asarray(tokens), jnp.asarray(MASK)))
  layers = [{'attention_norm': _norm(l.attention_norm), 'mlp_norm': _norm(l.mlp_norm),
             **{k: _linear(getattr(l, k)) for k in ('query', 'key', 'value', 'out', 'mlp_in',
                                                    'mlp_out')}}
            for l in encoder.layers]
  table = np.asarray(encoder.embedding[...], np.float64)
  position = np.asarray(encoder.position[...], np.float64)
  for row in range(2):
    n = MASK[row].sum()
    x = table[tokens[row, :n]] + position[:n]
    want = references.transformer_encoder(x, layers, _norm(encoder.norm), heads=2)
    np.testing.assert_allclose(out[row, :n], want, atol=1e-5)
    assert np.all(out[row, n:] == 0)


@pytest.mark.parametrize('name, args, match', [
    ('bilstm', dict(dim=7), 'even dim'),
    ('transformer', dict(dim=8, heads=3), 'divisible by heads'),
])
def test_bad_arguments_are_config_errors(name, args, match):
  with pytest.raises(errors.ConfigError, match=match):
    text.REGISTRY.build(name, args, vocab_size=VOCAB, rngs=nnx.Rngs(0))


def test_too_many_words_for_the_positions_is_an_error():
  encoder = text.REGISTRY.build('transformer', dict(dim=8, heads=2, max_len=4),
                                vocab_size=VOCAB, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='max_len=4'):
    encoder(jnp.zeros((1, 5), jnp.int32), jnp.ones((1, 5), bool))


@pytest.fixture(scope='module')
def trained_contextual(tmp_path_factory):
  """A tiny model per contextual encoder trained 2 steps: {name: (workdir, metrics)}."""
  from cmsa_jax.run import train  # pylint: disable=g-import-not-at-top
  out = {}
  for name in ('bilstm', 'transformer'):
    config = helpers.make_tiny_config()
    config.model.text_encoder = name
    config.num_train_steps = 2
    workdir = str(tmp_path_factory.mktemp(name) / 'run')
    out[name] = workdir, train.train_and_evaluate(config, workdir)
  return out


@pytest.mark.slow  # Trains two tiny models.
def test_contextual_checkpoints_restore_for_eval_and_predict(trained_contextual, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from cmsa_jax.run import checkpoints, evaluate, predict  # pylint: disable=g-import-not-at-top
  image = tmp_path / 'scene.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)).save(image)
  for name, (workdir, metrics) in trained_contextual.items():
    model, config, _, _ = checkpoints.restore_model(workdir)
    assert isinstance(model.embed, text.REGISTRY.get(name)) and config.model.text_encoder == name
    again = evaluate.evaluate(None, workdir)
    assert again['overall_iou'] == metrics['overall_iou']
    out = predict.predict(None, workdir, str(image), 'the circle left of the red square',
                          str(tmp_path / name))
    assert sorted(out) == ['heatmap', 'mask', 'overlay', 'word_attention']


@pytest.mark.slow  # Trains two tiny models (shared with the test above).
def test_word_attention_benchmark_draws_two_models(trained_contextual, tmp_path):
  workdirs = ','.join(w for w, _ in trained_contextual.values())
  output = tmp_path / 'attribute.png'
  run = helpers.run_python(helpers.REPO, 'benchmarks/word_attention.py', f'--workdirs={workdirs}',
                           '--labels=bilstm,transformer', '--family=attribute',
                           f'--output={output}')
  assert run.returncode == 0, run.stderr[-3000:]
  assert output.stat().st_size > 1000
  lines = run.stdout.splitlines()
  assert 'attribute: "the ' in lines[0] and run.stdout.count('IoU') == 2
