r"""JHMDB Sentences: evaluate an A2D Sentences checkpoint, no training (Table 8).

  python -m cmsa_jax.tools.build_dataset jhmdb_sentences/default --manual_dir=M --data_dir=D
  python main.py --config=configs/jhmdb.py --workdir=runs/a2d --mode=eval --config.data_dir=D

The model, its input size and vocabulary come from the A2D checkpoint in the
workdir; the scores go to WORKDIR/eval_jhmdb/metrics.{json,md} (A2D's stay in
WORKDIR/eval/). `--mode=train` stops with a one-line error.

Runtime and result: not measured here.
"""

from configs import a2d


def get_config():
  config = a2d.get_config()
  config.dataset = 'jhmdb_sentences/default'  # 3 frames per video, clips of 11 frames.
  config.train_split = ''  # Evaluation only.
  config.eval_split = 'test'
  config.eval_dir = 'eval_jhmdb'
  return config
