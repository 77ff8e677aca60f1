"""Shared test fixtures."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

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
  config.model.backbone_width = 4
  config.model.embed_dim = 16
  config.model.attn_dim = 16
  config.model.fusion_dim = 16
  config.batch_size = 4
  config.eval_batch_size = 4
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.crf = False
  return config


@pytest.fixture
def tiny_config():
  return make_tiny_config()
