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
