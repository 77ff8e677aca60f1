"""The embedded video default: synthetic moving-shape clips, a tiny model, CPU minutes.

  python main.py --config=configs/demo_video.py --workdir=runs/demo_video

Runtime: 12 min 44 s on an idle 2-core CPU (3000 steps at 4.1 steps/s, then 609 held-out
expressions scored with and without DenseCRF; max RSS 1.7 GB). Result (seed 0): held-out
overall IoU 71.2 (DenseCRF 88.8), motion expressions 69.0 (all-objects baseline 41.9),
appearance 75.1; seeds 1 and 2: overall 70.9 and 68.6, motion 69.8 and 64.9 (README,
"Video demo"). `--config.model.cfsa=False` is the same model without cross-frame
self-attention (the image model on the annotated frame: motion 24.8-28.1 over 3 seeds).

No download and no set-up step: the clips are generated on the fly
(deterministically from config.synthetic.seed, cmsa_jax/data/synthetic_video.py)
unless built with `python -m cmsa_jax.tools.build_dataset synthetic_video/64px
--data_dir=D`; the frozen backbone is the image demo's pretrained one.
"""

from configs import demo


def get_config():
  config = demo.get_config()  # The image demo's tiny model and pretrained frozen backbone.
  config.dataset = 'synthetic_video/64px'
  config.train_split = 'train'
  config.eval_split = 'test'
  config.synthetic.num_train = 4_000  # Clips; 1-3 expressions each.
  config.synthetic.num_eval = 300
  config.synthetic.image_size = 64
  config.image_size = 64
  config.clip_radius = 2  # Clips of 2τ+1 = 5 frames.

  config.model_name = 'cmsa_video'
  config.model.cfsa = True
  # 5 x 8 x 8 = 320 tokens: the clip matrix is 0.4 MB, and dense is 1.6x faster on
  # CPU than blocked at this size ('blocked' is for paper scale: configs/a2d.py).
  config.model.cfsa_impl = 'dense'
  config.model.frame_weight = 'temperature'  # Eq.11, normalised as Eq.4.
  # Past the paper (README "Video", with the measurements): tokens [v, δ_t] with a
  # learnable locality term in Eq.9 and values that see where a match is relative to
  # its query ('relative'; the paper's is 'visual'), and V̂ = 0 at the start (W_o = 0:
  # the model starts as the image model on the annotated frame).
  config.model.cfsa_tokens = 'relative'
  config.model.cfsa_values = 'linear'
  config.model.cfsa_out_init = 'zeros'

  config.num_train_steps = 3000
  config.checkpoint_every_steps = 1000
  config.eval_batch_size = 50
  return config
