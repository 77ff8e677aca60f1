"""UNC (RefCOCO) with the paper's settings."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ref_coco_seg/refcoco_unc'
  config.train_split = 'train'
  config.eval_split = 'val'
  return config
