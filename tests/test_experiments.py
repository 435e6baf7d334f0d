"""Every experiment config runs end to end with `:smoke` (tfds datasets on mock data)."""

import contextlib
import json
import os

import pytest

from helpers import experiment_names, load_experiment
from sslx import train

# Covered elsewhere by a fuller run of the same code path (tests/test_train.py).
_COVERED = {"supervised_digits"}


@pytest.mark.parametrize("name", [n for n in experiment_names() if n not in _COVERED])
def test_smoke_run(name, tmp_path):
  config = load_experiment(name, "smoke")
  mock = contextlib.nullcontext()
  if not config.data.name.startswith(("digits", "npz:")):
    import tensorflow_datasets as tfds
    mock = tfds.testing.mock_data(num_examples=64)
  with mock:
    results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps
  with open(tmp_path / "w" / "results.json") as f:
    assert json.load(f)["steps"] == config.num_steps


@pytest.mark.parametrize("name", experiment_names())
def test_full_config_is_valid(name):
  """The paper-scale configs (not run here) pass every check that needs no data or devices,
  and their batch sizes split across 8 devices (one GPU/TPU host)."""
  from sslx.config import config_errors, device_errors
  config = load_experiment(name, "")
  assert config_errors(config) == []
  assert device_errors(config, 8) == []
