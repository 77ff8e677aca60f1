"""Trains, evaluates or runs a CMSA referring-segmentation model.

  python main.py --config=configs/demo.py --workdir=runs/demo
  python main.py --config=configs/demo.py --workdir=runs/demo --mode=eval
  python main.py --workdir=runs/demo --mode=predict --image=photo.jpg \
      --expression="the small green triangle" --output=runs/demo/predict
  python main.py --workdir=runs/demo_video --mode=predict --video=clip.mp4 \
      --expression="the circle moving left" --output=runs/demo_video/predict
  python main.py --workdir=runs/demo --mode=serve    # A web app at http://127.0.0.1:8000/
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cmsa_jax import errors
from cmsa_jax.run import launch

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, logs and results.', required=True)
flags.DEFINE_enum('mode', 'train', launch.MODES,
                  'train (then eval), eval, predict, or serve (a local web app).')
flags.DEFINE_integer('step', None, 'Checkpoint step for eval/predict (default: latest).')
flags.DEFINE_string('image', None, 'predict: an image file in any format Pillow reads.')
flags.DEFINE_string('video', None, 'predict: a video file (any format PyAV opens) or a '
                    'folder of numbered frames 1..n, for a video model.')
flags.DEFINE_integer('frame', None, 'predict --video: frame (1-indexed) whose frame attention '
                     'to draw (default: the middle one).')
flags.DEFINE_string('expression', None, 'predict: the referring expression.')
flags.DEFINE_string('output', None, 'predict: directory for the pictures.')
flags.DEFINE_string('host', '127.0.0.1', 'serve: address to listen on. The default is this '
                    'machine only; another (e.g. 0.0.0.0) lets anyone who reaches it use the '
                    'model and upload files (no login, no TLS).')
flags.DEFINE_integer('port', 8000, 'serve: port (0: any free port, named in the log).')
flags.DEFINE_float('max_upload_mb', 20, 'serve: largest upload accepted (MB).')
flags.DEFINE_integer('max_pixels', 16_000_000, 'serve: most pixels of an image or video frame.')
flags.DEFINE_integer('max_frames', 300, 'serve: most frames of a video.')
flags.DEFINE_integer('max_queue', 8, 'serve: most requests waiting or running; more are '
                     'refused (HTTP 503) until one ends.')


def _user_error(e):
  logging.debug('Traceback:', exc_info=True)
  sys.exit(f'Error: {e}\n(--verbosity=1 shows the traceback.)')


def parse_flags(argv):
  """absl's parsing, with config-file and --config.<key> mistakes as one-line errors."""
  try:
    argv = FLAGS(argv)
    if FLAGS.config is not None:
      FLAGS.config.keys()  # A config file that failed to load raises here, not mid-run.
    return argv
  except (KeyError, AttributeError) as e:
    _user_error(f'unknown config field {e}: --config.<field> must name a field of the config file')
  except (flags.Error, OSError, ValueError) as e:
    _user_error(e)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    launch.launch(FLAGS.mode, FLAGS.config, FLAGS.workdir, step=FLAGS.step,
                  image=FLAGS.image, video=FLAGS.video, frame=FLAGS.frame,
                  expression=FLAGS.expression, output=FLAGS.output,
                  serve_options=dict(host=FLAGS.host, port=FLAGS.port,
                                     max_upload_mb=FLAGS.max_upload_mb,
                                     max_pixels=FLAGS.max_pixels, max_frames=FLAGS.max_frames,
                                     max_queue=FLAGS.max_queue))
  except errors.UserError as e:  # Anything else is a bug: it shows a traceback.
    _user_error(e)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
