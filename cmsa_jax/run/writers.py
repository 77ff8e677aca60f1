"""Metric writers: console + TensorBoard.

clu 0.0.12's `metric_writers` and `periodic_actions` import TensorFlow when the
package is imported, and TensorFlow is not a dependency here. These classes
keep clu's MetricWriter method names (write_scalars, write_images,
write_hparams, flush, close) so swapping in clu's writers is a one-line change
where TensorFlow is installed; TensorBoard files are written by tensorboardX.
"""

import re

from absl import logging
import numpy as np

_ILLEGAL = re.compile(r'[^A-Za-z0-9_./-]')  # TensorBoard's tag characters.


def legal_name(name):
  """A TensorBoard tag for a metric name: 'prec@0.5' -> 'prec_at_0.5', other
  characters outside [A-Za-z0-9_./-] -> '_'."""
  return _ILLEGAL.sub('_', name.replace('@', '_at_'))


def eval_scalars(metrics, folder='eval'):
  """The numeric metrics of an evaluation as scalars 'folder/<name>' (step left out)."""
  return {f'{folder}/{k}': v for k, v in metrics.items()
          if k != 'step' and isinstance(v, (int, float))}


class LoggingWriter:
  """Writes scalars to the absl log (the console)."""

  def __init__(self, prefix=''):
    self._prefix = prefix

  def write_scalars(self, step, scalars):
    text = ', '.join(f'{k}={float(v):.6g}' for k, v in sorted(scalars.items()))
    logging.info('%s[%d] %s', self._prefix, step, text)

  def write_images(self, step, images):
    logging.info('%s[%d] images: %s', self._prefix, step, ', '.join(sorted(images)))

  def write_hparams(self, hparams):
    logging.info('%shparams: %s', self._prefix, hparams)

  def flush(self):
    pass

  def close(self):
    pass


class TensorBoardWriter:
  """Writes TensorBoard event files with tensorboardX."""

  def __init__(self, logdir):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(logdir)

  def write_scalars(self, step, scalars):
    for k, v in scalars.items():
      self._writer.add_scalar(legal_name(k), float(v), step)

  def write_images(self, step, images):
    for k, v in images.items():
      self._writer.add_image(legal_name(k), np.asarray(v), step, dataformats='HWC')

  def write_hparams(self, hparams):
    self._writer.add_text('hparams', '\n'.join(f'{k}: {v}' for k, v in sorted(hparams.items())))

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


class MultiWriter:
  """Forwards every call to several writers."""

  def __init__(self, writers):
    self._writers = list(writers)

  def __getattr__(self, name):
    def call(*args, **kwargs):
      for w in self._writers:
        getattr(w, name)(*args, **kwargs)
    return call


def create_default_writer(logdir, *, just_logging=False):
  """Console writer, plus TensorBoard in `logdir` unless `just_logging` (non-lead hosts)."""
  if just_logging:
    return LoggingWriter()
  return MultiWriter([LoggingWriter(), TensorBoardWriter(logdir)])
