r"""G-Ref (RefCOCOg, Google split, as in the paper) with the paper's settings.

  python -m cmsa_jax.tools.build_dataset ref_coco_seg/refcocog_google --manual_dir=M --data_dir=D
  python -m cmsa_jax.tools.import_weights --input=resnet101-63fe2227.pth --output=backbone.npz
  python main.py --config=configs/gref.py --workdir=runs/gref \
      --config.data_dir=D --config.backbone_init=backbone.npz

Runtime and result: not measured here (800k steps at batch 1, as the official
code; without a built dataset it stops at once with a one-line "not built"
error naming the build command).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ref_coco_seg/refcocog_google'
  config.train_split = 'train'
  config.eval_split = 'val'
  return config
