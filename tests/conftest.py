"""Shared test fixtures."""

import pytest

from configs import demo


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
