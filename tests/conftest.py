"""Shared test fixtures, and the Hypothesis profiles of the fuzz tests (tests/fuzzing.py)."""

from hypothesis import HealthCheck
from hypothesis import settings
import pytest

import fuzzing
import helpers

_COMMON = dict(deadline=None,  # fuzzing.check bounds each example's time itself.
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture],
               print_blob=True)
# CI: the same examples on every run (derandomized), small budgets set per test.
settings.register_profile('ci', derandomize=True, database=None, **_COMMON)
# `pytest -m fuzz`: random examples, fuzzing.LONG_FACTOR times the budget, failures saved.
settings.register_profile('long', **_COMMON)


def pytest_configure(config):
  if config.getoption('hypothesis_profile', None):
    fuzzing.PROFILE = config.getoption('hypothesis_profile')
    return
  markexpr = config.option.markexpr or ''
  fuzzing.PROFILE = 'long' if 'fuzz' in markexpr and 'not fuzz' not in markexpr else 'ci'
  settings.load_profile(fuzzing.PROFILE)


@pytest.fixture
def tiny_config():
  return helpers.make_tiny_config()


# The --mode=serve tests (tests/test_serve*.py, one xdist group) share one server per kind.

def _serving(tmp_path_factory, config, name):
  """Yields (workdir, url, segmenter) of a server of an untrained checkpoint of `config`."""
  import serve_helpers  # pylint: disable=g-import-not-at-top
  workdir = serve_helpers.write_checkpoint(config, str(tmp_path_factory.mktemp(name)))
  with serve_helpers.running(workdir) as (url, segmenter):
    yield workdir, url, segmenter


@pytest.fixture(scope='session')
def serve_image_app(tmp_path_factory):
  """(workdir, url, segmenter) of a server of an untrained tiny image checkpoint."""
  yield from _serving(tmp_path_factory, helpers.make_tiny_config(), 'serve_image')


@pytest.fixture(scope='session')
def serve_video_app(tmp_path_factory):
  """(workdir, url, segmenter) of a server of an untrained tiny video (CFSA) checkpoint."""
  import serve_helpers  # pylint: disable=g-import-not-at-top
  yield from _serving(tmp_path_factory, serve_helpers.tiny_video_config(), 'serve_video')
