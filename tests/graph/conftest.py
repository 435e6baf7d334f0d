"""Shared data for the sslx.graph tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def points():
  return np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def blobs():
  """600 points in 6 tight clusters of 16-d, with labels."""
  rng = np.random.default_rng(1)
  centers = rng.normal(size=(6, 16)) * 6
  y = np.repeat(np.arange(6), 100)
  x = centers[y] + rng.normal(size=(600, 16))
  return x.astype(np.float32), y
