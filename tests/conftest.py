"""Shared test fixtures."""

import pytest

import helpers


@pytest.fixture
def tiny_config():
  return helpers.make_tiny_config()
