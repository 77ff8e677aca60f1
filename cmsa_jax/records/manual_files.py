"""Missing-file errors for builders that read their sources from a manual dir."""

import os
from pathlib import Path

from absl import logging

from cmsa_jax.records import broken


def _missing(paths):
  paths = [Path(os.fspath(p)) for p in paths]
  return paths, [p for p in paths if not p.exists()]


def _message(paths, missing, where_from):
  what = (f'{missing[0]} not found' if len(paths) == 1 else
          f'{len(missing)} of {len(paths)} files not found, e.g. {missing[0]}')
  return f'{what}. It comes from {where_from}; nothing is downloaded.'


def require_all(paths, where_from):
  """Returns `paths` as Paths; FileNotFoundError naming the first absent one and `where_from`.

  Checking every source file up front fails a build at once rather than midway.
  """
  paths, missing = _missing(paths)
  if missing:
    raise FileNotFoundError(_message(paths, missing, where_from))
  return paths


def require(path, where_from):
  """Returns `path` as a Path; FileNotFoundError naming it and `where_from` if it is absent."""
  return require_all([path], where_from)[0]


def check_examples(paths, where_from):
  """Up-front check of per-example files (images, masks): reports the absent ones at once.

  Their examples are skipped later (see `broken`); in strict mode, or when every
  file is absent (a wrong manual dir), FileNotFoundError instead.
  """
  paths, missing = _missing(paths)
  if missing and (broken.is_strict() or len(missing) == len(paths)):
    raise FileNotFoundError(_message(paths, missing, where_from))
  if missing:
    logging.warning('%s Their examples will be skipped.', _message(paths, missing, where_from))
  return paths
