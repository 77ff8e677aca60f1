"""Steps/s and ETA reports for loops of known length (training, evaluation, indexing)."""

import time

from absl import logging
import numpy as np


class Progress:
  """Periodic report of rate and ETA for a loop of known length."""

  def __init__(self, name, total, *, every_seconds=10.0, unit='steps', first=0):
    self.name, self.total, self.unit = name, total, unit
    self._every = every_seconds
    self._start = self._last = time.monotonic()
    self._first = first
    self.count = first

  def update(self, count=None, force=False):
    """Advances to `count` (or by one); logs a line at most every `every_seconds`."""
    self.count = self.count + 1 if count is None else count
    now = time.monotonic()
    if not force and now - self._last < self._every and self.count < self.total:
      return
    self._last = now
    rate = (self.count - self._first) / max(now - self._start, 1e-9)
    eta = (self.total - self.count) / rate if rate > 0 else float('inf')
    logging.info('%s: %d/%d %s, %.2f %s/s, ETA %s', self.name, self.count, self.total,
                 self.unit, rate, self.unit, _format_seconds(eta))

  @property
  def rate(self):
    return (self.count - self._first) / max(time.monotonic() - self._start, 1e-9)


def _format_seconds(seconds):
  if not np.isfinite(seconds):
    return '?'
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h:d}:{m:02d}:{s:02d}'
