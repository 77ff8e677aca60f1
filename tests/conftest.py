"""Shared test fixtures."""

import pytest

import helpers


@pytest.fixture
def tiny_config():
  return helpers.make_tiny_config()


# The --mode=serve tests (tests/test_serve*.py, one xdist group) share one server per kind.

@pytest.fixture(scope='session')
def serve_image_app(tmp_path_factory):
  """(workdir, url, segmenter) of a server of an untrained tiny image checkpoint."""
  import serve_helpers  # pylint: disable=g-import-not-at-top
  workdir = serve_helpers.write_checkpoint(helpers.make_tiny_config(),
                                           str(tmp_path_factory.mktemp('serve_image')))
  with serve_helpers.running(workdir) as (url, segmenter):
    yield workdir, url, segmenter


@pytest.fixture(scope='session')
def serve_video_app(tmp_path_factory):
  """(workdir, url, segmenter) of a server of an untrained tiny video (CFSA) checkpoint."""
  import serve_helpers  # pylint: disable=g-import-not-at-top
  workdir = serve_helpers.write_checkpoint(serve_helpers.tiny_video_config(),
                                           str(tmp_path_factory.mktemp('serve_video')))
  with serve_helpers.running(workdir) as (url, segmenter):
    yield workdir, url, segmenter
