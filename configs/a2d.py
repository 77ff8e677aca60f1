r"""A2D Sentences with the paper's settings: train on train, evaluate on test (Table 7).

  python -m cmsa_jax.tools.build_dataset a2d_sentences/default --manual_dir=M --data_dir=D
  python -m cmsa_jax.tools.import_weights --input=resnet101-63fe2227.pth --output=backbone.npz
  python main.py --config=configs/a2d.py --workdir=runs/a2d \
      --config.data_dir=D --config.backbone_init=backbone.npz

Then JHMDB Sentences with the same checkpoint: configs/jhmdb.py.

Runtime and result: not measured here (without a built dataset it stops at once
with a one-line "not built" error naming the build command).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'a2d_sentences/default'  # Clips of 11 frames around each annotated one.
  config.train_split = 'train'
  config.eval_split = 'test'
  config.clip_radius = 5  # τ: CFSA over 2τ+1 = 11 frames (the builder stores τ = 5).
  config.model_name = 'cmsa_video'
  config.model.cfsa = True
  config.model.cfsa_impl = 'blocked'
  config.model.frame_weight = 'temperature'  # Eq.11, normalised as Eq.4.
  # The paper's CFSA: tokens v alone, linear values. On the synthetic clips tokens that
  # see position read motion better (README "Video"; configs/demo_video.py uses
  # 'relative' tokens): a switch, unmeasured on A2D.
  config.model.cfsa_tokens = 'visual'
  config.model.cfsa_values = 'linear'
  return config
