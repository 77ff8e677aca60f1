"""The one function main.py calls: set up JAX, then train, evaluate, predict or serve."""

import logging as std_logging

from absl import logging
import jax

from cmsa_jax import errors

MODES = ('train', 'eval', 'predict', 'serve')


def _quiet_orbax(record):
  """Keeps orbax's per-file INFO lines out of the console; warnings still show."""
  return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def launch(mode, config, workdir, *, step=None, image=None, video=None, frame=None,
           expression=None, output=None, serve_options=None):
  """Runs `mode` (see MODES). User mistakes raise `errors.UserError`.

  `serve_options`: host, port and the fields of serve.Limits, for mode 'serve'.
  """
  logging.get_absl_handler().addFilter(_quiet_orbax)
  if mode not in MODES:
    raise errors.ConfigError(f'--mode={mode!r}; expected one of {MODES}')
  if config is None and mode == 'train':
    raise errors.ConfigError('--config is required to train, e.g. --config=configs/demo.py')
  if mode == 'train' and not config.get('train_split', 'train'):
    raise errors.ConfigError(f'config.dataset={config.dataset!r} has no training split here '
                             '(evaluation only): run --mode=eval on a trained workdir')
  if config is not None and config.distributed:
    jax.distributed.initialize()
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(),
               jax.devices())
  if mode == 'train':
    from cmsa_jax.run import train  # pylint: disable=g-import-not-at-top
    return train.train_and_evaluate(config, workdir)
  if mode == 'eval':
    from cmsa_jax.run import evaluate  # pylint: disable=g-import-not-at-top
    return evaluate.evaluate(config, workdir, step=step)
  if mode == 'serve':
    from cmsa_jax.run import serve  # pylint: disable=g-import-not-at-top
    options = dict(serve_options or {})
    host, port = options.pop('host', '127.0.0.1'), options.pop('port', 8000)
    return serve.serve(config, workdir, step=step, host=host, port=port,
                       limits=serve.Limits(**options))
  if video and expression is not None and output:
    from cmsa_jax.run import predict_video  # pylint: disable=g-import-not-at-top
    return predict_video.predict_video(config, workdir, video, expression, output,
                                       frame=frame, step=step)
  if not (image and expression is not None and output):
    raise errors.ConfigError('--mode=predict needs --image=PATH (or --video=PATH) '
                             '--expression="..." --output=DIR')
  from cmsa_jax.run import predict  # pylint: disable=g-import-not-at-top
  return predict.predict(config, workdir, image, expression, output, step=step)
