"""The paper's settings (Ye et al., TPAMI), shared by the dataset configs.

Not run by itself: configs/unc.py, unc_plus.py, gref.py and referit.py start
from it and set the dataset; configs/demo.py shrinks it to CPU minutes. Each
config file defines one `get_config()`.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()

  # Data: a TFDS dataset built with `python -m cmsa_jax.tools.build_dataset`.
  config.dataset = 'ref_coco_seg/refcoco_unc'
  config.data_dir = None  # TFDS data_dir; None means TFDS's default (~/tensorflow_datasets).
  config.train_split = 'train'
  config.eval_split = 'val'
  config.image_size = 320
  config.max_words = 20
  config.num_workers = 2  # grain worker processes per host.
  # Synthetic data only (used when config.dataset == 'synthetic_ref'): sizes of
  # the on-the-fly splits when the TFDS dataset is not built.
  config.synthetic = ml_collections.ConfigDict(
      {'seed': 0, 'num_train': 0, 'num_eval': 0, 'image_size': 64})

  # Model (Sec. 3; Eq.1-8): `Model` of cmsa_jax/models/<model_name>.py, built
  # with the fields of config.model as keyword arguments.
  config.model_name = 'cmsa_image'
  config.model = ml_collections.ConfigDict()
  # The parts, by name (cmsa_jax/models/backbones/, cmsa_jax/models/text/), each built
  # with its *_args: DeepLab ResNet-101 (output stride 8, frozen: the official code
  # trains only the layers after its DeepLab-initialised backbone) and the paper's
  # word embedding (C_l = 1000).
  config.model.backbone = 'resnet'
  config.model.backbone_args = ml_collections.ConfigDict(dict(
      blocks=(3, 4, 23, 3), width=64, frozen=True, remat='none'))
  config.model.text_encoder = 'embed'
  config.model.text_args = ml_collections.ConfigDict(dict(dim=1000))  # C_l.
  config.model.attn_dim = 512
  config.model.fusion_dim = 500
  config.model.cmsa_impl = 'factorized'  # or 'dense' (reference; (N·HW)^2 memory).
  config.model.pooling = 'attention'  # Table 1: 'attention' | 'max' | 'avg'.
  # Eq.4/11: 'temperature' (learnable sharpness) | 'mean' | 'sum' (literal); see README.
  config.model.word_weight = 'temperature'
  config.model.attention = 'full'  # Table 2: 'none' | 'word' | 'pixel' | 'word_pixel' | 'full'.
  # Xavier init of the q/k maps times this (the paper does not say; 1 = Xavier).
  config.model.qk_init_scale = 1.0
  config.model.fusion = 'gated'  # Table 2: 'res5' | 'sum' | 'self_gated' | 'gated'.
  config.model.fusion_relu = False  # ReLU on X^i (the official code has it).
  # Hand-written backward passes (cmsa_jax/models/kernels.py, for XLA:CPU speed);
  # False: plain autodiff of the same forward.
  config.model.custom_gradients = True
  # Rematerialization (jax.checkpoint, cmsa_jax/models/remat.py) of each level's CMSA
  # (each backbone stage: backbone_args.remat): 'none' | 'full' (save nothing) | 'dots' |
  # 'dots_no_batch' (save matmul outputs). Less memory, more compute; nothing to save where no
  # gradient flows (the frozen backbone).
  config.model.remat_cmsa = 'none'
  # Pretrained weights of the parts ('' = none), read by each part's load(path): for
  # 'resnet' the .npz of `python -m cmsa_jax.tools.import_weights` or a torchvision file.
  config.backbone_init = ''
  config.text_encoder_init = ''
  # Compute dtype, 'float32' or 'bfloat16' (mixed precision: parameters, optimizer
  # state, softmax statistics, logits and loss stay float32).
  config.dtype = 'float32'

  # Optimization (Sec. 4.2): Adam, weight decay 5e-4, poly decay power 0.9;
  # batch size, step count and final learning rate as in the official code.
  config.batch_size = 1  # Global, split over all devices.
  config.learning_rate = 2.5e-4
  config.end_learning_rate = 1e-5
  config.weight_decay = 5e-4
  # 'decoupled' (AdamW) or 'coupled' (L2 in the loss, as the official code); see README.
  config.weight_decay_form = 'decoupled'
  config.lr_power = 0.9
  config.num_train_steps = 800_000
  config.seed = 0

  # Loops.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 5000
  # Also evaluate (metrics and pictures to TensorBoard) every this many steps; 0: at the end only.
  config.eval_every_steps = 0
  config.keep_checkpoints = 3
  # A step with a non-finite loss or gradient: False stops training naming it and the last
  # good checkpoint; True skips it (no parameter or optimizer-state change) and counts it.
  config.skip_nonfinite_steps = False
  config.eval_batch_size = 8  # Global, like batch_size.
  config.num_eval_examples = -1  # -1: the whole split.
  config.crf = True  # Also score with DenseCRF post-processing.
  # Evaluators by name (cmsa_jax/run/evaluators/): the paper's metrics, the same after
  # DenseCRF (skipped when crf is False), trivial baselines (synthetic sets), per family or
  # expression category, pictures of a few held-out predictions in TensorBoard.
  config.evals = ('paper', 'crf', 'baselines', 'groups', 'pictures')

  # Multi-host: call jax.distributed.initialize() (arguments from the environment).
  config.distributed = False
  return config
