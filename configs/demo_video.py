"""The embedded video default: synthetic moving-shape clips, a tiny model, CPU minutes.

  python main.py --config=configs/demo_video.py --workdir=runs/demo_video

Runtime: 11 min 1 s on a 2-core CPU (800 steps at ~1.5 steps/s, then 600 held-out
expressions scored with and without DenseCRF; max RSS 1.5 GB), measured with the clips of
synthetic_video 1.0.0; held-out results of the current clips (1.1.0: shapes move 3 or 6
px per frame) are in README.md, "Video". `--config.model.cfsa=False` is the same model
without cross-frame self-attention (the image model on the annotated frame).

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
  # Tokens [v, s_p, δ_t], linear values (README "Video": with the paper's tokens, v
  # alone, CFSA reads a shape's direction of motion at 0.31, with these at 0.86).
  config.model.cfsa_tokens = 'position'
  config.model.cfsa_values = 'linear'
  config.model.cfsa_out_init = 'xavier'  # 'zeros': V̂ = 0 at the start (a video-table row).

  config.num_train_steps = 800
  config.checkpoint_every_steps = 400
  config.eval_batch_size = 50
  return config
