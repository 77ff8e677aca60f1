"""Broken source examples in a long build: skipped and counted, or fatal in strict mode.

A multi-hour build should not die at its end on one unreadable image, bad
polygon or missing mask file. Builders produce their records through
`examples`: an example whose files fail to read is logged, skipped and counted
(the count is logged when the split is done and `report()` lists every split);
under `strict_mode()` (`build_dataset --strict`) the first one raises, naming it.
A split where every example is broken always raises: that is a wrong manual dir,
not a bad record.
"""

import contextlib
import zlib

from absl import logging
import av
from scipy.io import matlab

from cmsa_jax import errors

# What reading a damaged or missing source file raises; anything else is a bug and propagates.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, IndexError, zlib.error,
               matlab.MatReadError, av.FFmpegError)

_strict = False
_reports = []


@contextlib.contextmanager
def strict_mode(strict=True):
  """Within it, the first broken example stops the build."""
  global _strict
  previous, _strict = _strict, strict
  try:
    yield
  finally:
    _strict = previous


def is_strict():
  return _strict


def report():
  """One line per split that skipped examples since the process started."""
  return list(_reports)


def examples(items, make, what):
  """Yields the records `make(item)` returns for each (name, item) of `items`.

  `make(item)` returns a list of (key, record); an item whose `make` raises one
  of READ_ERRORS is skipped (or, in strict mode, stops the build) with a
  message naming `what` and `name`.
  """
  skipped, total = [], 0
  for name, item in items:
    total += 1
    try:
      records = make(item)
    except READ_ERRORS as e:
      message = f'broken {what} {name}: {type(e).__name__}: {e}'
      if _strict:
        raise errors.InputError(f'{message} (--strict stops at the first broken example)') from e
      logging.warning('Skipped %s.', message)
      skipped.append(name)
      continue
    yield from records
  if skipped and len(skipped) == total:
    raise errors.InputError(f'all {total} {what}s are broken, e.g. {skipped[0]}; see the '
                            'warnings above (is the manual dir right?)')
  if skipped:
    _reports.append(f'skipped {len(skipped)} of {total} {what}s (broken source files): '
                    f'{", ".join(map(str, skipped[:10]))}{", ..." if len(skipped) > 10 else ""}')
    logging.warning('%s', _reports[-1])
