"""ReferIt with the paper's settings."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'referit_seg'
  config.train_split = 'trainval'
  config.eval_split = 'test'
  return config
