"""text_encoder='bert' end to end: a tiny BERT (random weights written to a
safetensors file here) trains, evaluates and predicts; its checkpoint restores
for eval and predict without the BERT files."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

import helpers
from cmsa_jax import errors
from cmsa_jax.run import checkpoints
from cmsa_jax.run import evaluate
from cmsa_jax.run import predict
from cmsa_jax.run import state as state_lib
from cmsa_jax.run import train

pytestmark = pytest.mark.slow  # Training runs and a subprocess.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The synthetic scenes' words beyond the tiny vocabulary, so most words are not [UNK].
SYNTHETIC_PIECES = ('yellow', 'purple', 'orange', 'diamond', 'star', 'cross', 'top', 'bottom',
                    'above', 'below', 'third', 'first', 'largest', 'smallest', 'upper', 'lower',
                    'one', 'to', 'in', 'on', '##er', '##est', 'gray', 'large', 'medium')


def bert_config(tmp_path, frozen=True):
  """The tiny config with a 2-layer BERT (hidden 32) read from files written to tmp_path."""
  pieces = helpers.TINY_PIECES + SYNTHETIC_PIECES
  tokenizer = helpers.write_vocab_txt(tmp_path / 'vocab.txt', pieces)
  checkpoint = tmp_path / 'model.safetensors'
  save_file(helpers.bert_state_dict(len(pieces), seed=1), str(checkpoint))
  config = helpers.make_tiny_config()
  config.model.text_encoder = 'bert'
  config.model.text_args = dict(tokenizer=str(tokenizer), cls_id=3, sep_id=4, layers=2,
                                hidden=32, heads=4, intermediate=64, max_positions=64,
                                max_pieces=2, max_sequence=16, frozen=frozen)
  config.text_encoder_init = str(checkpoint)
  config.num_train_steps = 2
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('bert')
  config = bert_config(tmp)
  workdir = str(tmp / 'run')
  metrics = train.train_and_evaluate(config, workdir)
  return config, workdir, metrics, tmp


def test_trains_evaluates_and_restores_without_the_bert_files(trained, tmp_path):
  config, workdir, metrics, tmp = trained
  assert 0 <= metrics['overall_iou'] <= 1 and metrics['num_examples'] > 0
  os.remove(tmp / 'vocab.txt')
  os.remove(tmp / 'model.safetensors')  # The checkpoint holds weights and vocabulary.
  model, saved, vocab, step = checkpoints.restore_model(workdir)
  assert step == 2 and saved.model.text_encoder == 'bert' and vocab.cls_id == 3
  # Frozen: the encoder still holds the file's weights after training.
  want = helpers.bert_state_dict(len(vocab), seed=1)
  np.testing.assert_array_equal(np.asarray(model.embed.layers[1].query.kernel[...]),
                                want['bert.encoder.layer.1.attention.self.query.weight'].T)
  again = evaluate.evaluate(None, workdir)
  for k in ('overall_iou', 'mean_iou', 'prec@0.5', 'num_examples'):
    assert again[k] == metrics[k]
  image = tmp_path / 'photo.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)).save(image)
  out = predict.predict(None, workdir, str(image), 'The leftmost RED square.', str(tmp_path / 'p'))
  with Image.open(out['mask']) as mask:
    assert mask.size == (50, 40)


def test_frozen_switch(tmp_path):
  for frozen in (True, False):
    config = bert_config(tmp_path, frozen=frozen)
    _, state, _ = state_lib.create_train_state(config, len(state_lib.text_tokenizer(config)))
    trained_parts = {path[0] for path, _ in state.params.flat_state()}
    frozen_parts = {path[0] for path, _ in state.frozen.flat_state()}
    assert ('embed' in frozen_parts) == frozen and ('embed' in trained_parts) == (not frozen)


def test_tokenizer_of_another_size_than_the_checkpoint(tmp_path):
  config = bert_config(tmp_path)
  helpers.write_vocab_txt(tmp_path / 'vocab.txt', helpers.TINY_PIECES)
  with pytest.raises(errors.ConfigError, match=f'has {len(helpers.TINY_PIECES)} pieces'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_demo_bert_without_the_files_is_a_one_line_error(tmp_path):
  out = subprocess.run([sys.executable, 'main.py', '--config=configs/demo_bert.py',
                        f'--workdir={tmp_path}'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode != 0 and 'Traceback' not in out.stderr
  error = [line for line in out.stderr.splitlines() if line.startswith('Error: ')]
  assert len(error) == 1 and 'bert-base-uncased' in error[0] and 'tokenizer' in error[0]
