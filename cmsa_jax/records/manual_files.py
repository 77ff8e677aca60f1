"""Missing-file errors for builders that read their sources from a manual dir."""

import os
from pathlib import Path


def require_all(paths, where_from):
  """Returns `paths` as Paths; FileNotFoundError naming the first absent one and `where_from`.

  Checking every source file up front fails a build at once rather than midway.
  """
  paths = [Path(os.fspath(p)) for p in paths]
  missing = [p for p in paths if not p.exists()]
  if missing:
    what = (f'{missing[0]} not found' if len(paths) == 1 else
            f'{len(missing)} of {len(paths)} files not found, e.g. {missing[0]}')
    raise FileNotFoundError(f'{what}. It comes from {where_from}; nothing is downloaded.')
  return paths


def require(path, where_from):
  """Returns `path` as a Path; FileNotFoundError naming it and `where_from` if it is absent."""
  return require_all([path], where_from)[0]
