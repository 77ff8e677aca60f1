"""Helpers shared by the tests (fixtures stay in conftest.py)."""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np

from cmsa_jax.data import input_pipeline
from cmsa_jax.run import dataset
from configs import demo

REPO = Path(__file__).resolve().parent.parent


def run_python(cwd, *args):
  """Runs Python as a user would, from `cwd`, with the repository importable."""
  paths = [str(REPO)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def make_tiny_config():
  """The demo config shrunk to seconds: tiny model, few steps, small eval."""
  config = demo.get_config()
  config.synthetic.num_train = 64
  config.synthetic.num_eval = 6
  config.model.backbone_args.width = 4
  config.backbone_init = ''  # The demo's pretrained file is for its own width.
  config.model.text_args.dim = 16
  config.model.attn_dim = 16
  config.model.fusion_dim = 16
  config.batch_size = 4
  config.eval_batch_size = 4
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.crf = False
  return config


def vocabulary(config, workdir):
  """WORKDIR/vocab.json of config's training split, built as training builds it."""
  index = input_pipeline.sentence_index(dataset.load_source(config, config.train_split))
  return dataset.vocabulary(config, workdir, index)


def torchvision_state_dict(blocks, width, seed=0):
  """Random torchvision-keyed ResNet state dict (with fc and BN counters)."""
  rng = np.random.default_rng(seed)
  sd = {}

  def conv_bn(conv, bn, cout, cin, k):
    sd[conv] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))
    sd[f'{bn}.weight'] = rng.uniform(0.5, 1.5, cout)
    sd[f'{bn}.bias'] = rng.normal(0, 0.2, cout)
    sd[f'{bn}.running_mean'] = rng.normal(0, 0.2, cout)
    sd[f'{bn}.running_var'] = rng.uniform(0.5, 2.0, cout)
    sd[f'{bn}.num_batches_tracked'] = np.array(7, np.int64)

  conv_bn('conv1.weight', 'bn1', width, 3, 7)
  cin = width
  for i, n in enumerate(blocks):
    planes = width * 2**i
    for j in range(n):
      key = f'layer{i + 1}.{j}'
      conv_bn(f'{key}.conv1.weight', f'{key}.bn1', planes, cin, 1)
      conv_bn(f'{key}.conv2.weight', f'{key}.bn2', planes, planes, 3)
      conv_bn(f'{key}.conv3.weight', f'{key}.bn3', 4 * planes, planes, 1)
      if j == 0:
        conv_bn(f'{key}.downsample.0.weight', f'{key}.downsample.1',
                4 * planes, cin, 1)
      cin = 4 * planes
  sd['fc.weight'] = rng.normal(size=(10, cin))
  sd['fc.bias'] = rng.normal(size=(10,))
  return {k: v.astype(np.float32) if v.dtype == np.float64 else v
          for k, v in sd.items()}


# A tiny uncased WordPiece vocabulary (BERT's layout: [PAD] 0, [UNK], [CLS], [SEP]).
TINY_PIECES = ('[PAD]', '[unused0]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'a', 'man',
               'left', 'right', 'of', 'red', 'blue', 'green', 'square', 'circle', 'triangle',
               'small', 'big', 'not', 'that', 'is', 'un', 'want', '##want', '##ed', 'runn',
               '##ing', '##s', ',', '.', "'", 'second', 'from', 'leftmost', '##most')


def write_vocab_txt(path, pieces=TINY_PIECES):
  """Writes a vocab.txt: one piece per line, id = line number."""
  path.write_text('\n'.join(pieces) + '\n', encoding='utf-8')
  return path


def bert_state_dict(vocab_size, *, layers=2, hidden=32, intermediate=64, max_positions=64,
                    seed=0, prefix='bert.', legacy_norm=False, heads=True):
  """Random BERT weights in HuggingFace/PyTorch key names and layouts (float32).

  Weights are drawn large enough (std 0.3) that every layer changes its input.
  `legacy_norm`: LayerNorm keys gamma/beta (as bert-base-uncased's file);
  `heads`: also the pooler and pre-training heads a BertForPreTraining file holds.
  """
  rng = np.random.default_rng(seed)
  sd = {}

  def linear(key, out, inp):
    sd[f'{key}.weight'] = rng.normal(0, 0.3, (out, inp))
    sd[f'{key}.bias'] = rng.normal(0, 0.3, (out,))

  def norm(key):
    names = ('gamma', 'beta') if legacy_norm else ('weight', 'bias')
    sd[f'{key}.{names[0]}'] = rng.uniform(0.5, 1.5, hidden)
    sd[f'{key}.{names[1]}'] = rng.normal(0, 0.2, hidden)

  for name, rows in (('word', vocab_size), ('position', max_positions), ('token_type', 2)):
    sd[f'embeddings.{name}_embeddings.weight'] = rng.normal(0, 1, (rows, hidden))
  norm('embeddings.LayerNorm')
  for i in range(layers):
    p = f'encoder.layer.{i}'
    for name in ('query', 'key', 'value'):
      linear(f'{p}.attention.self.{name}', hidden, hidden)
    linear(f'{p}.attention.output.dense', hidden, hidden)
    norm(f'{p}.attention.output.LayerNorm')
    linear(f'{p}.intermediate.dense', intermediate, hidden)
    linear(f'{p}.output.dense', hidden, intermediate)
    norm(f'{p}.output.LayerNorm')
  sd = {prefix + k: v.astype(np.float32) for k, v in sd.items()}
  if heads:
    sd[prefix + 'pooler.dense.weight'] = rng.normal(size=(hidden, hidden)).astype(np.float32)
    sd[prefix + 'pooler.dense.bias'] = np.zeros(hidden, np.float32)
    sd[prefix + 'embeddings.position_ids'] = np.arange(max_positions, dtype=np.int64)[None]
    sd['cls.predictions.bias'] = np.zeros(vocab_size, np.float32)
  return sd
