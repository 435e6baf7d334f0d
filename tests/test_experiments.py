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


def test_all_three_families_in_one_step(tmp_path):
  """FixMatch + graph pseudo-labels + NT-Xent (+ supervised) compose by a config arg, and
  each term is logged separately."""
  from helpers import read_jsonl
  config = load_experiment("fixmatch_graph_digits", "smoke,nt_xent=0.1")
  assert dict(config.loss.terms) == {"supervised": 1.0, "fixmatch": 1.0, "graph": 1.0,
                                     "nt_xent": 0.1}
  results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps
  row = read_jsonl(str(tmp_path / "w" / "metrics.jsonl"))[-1]
  for term in ("supervised", "fixmatch", "graph", "nt_xent"):
    assert f"loss/{term}" in row, sorted(row)
  assert "nt_xent/contrastive_accuracy" in row, sorted(row)


@pytest.mark.parametrize("name, arg, message", [
    ("fixmatch_cifar100", "labels=0", "fixmatch_cifar100.py: labels must be a positive int"),
    ("fixmatch_svhn", "lables=40", "fixmatch_svhn.py: unknown arg(s) ['lables']"),
    ("fixmatch_stl10", "labels=1.5", "fixmatch_stl10.py: labels must be a positive int"),
    ("simclr_cifar10", "images=100", "simclr_cifar10.py: images must be a positive multiple of 64"),
    ("simclr_imagenet", "epochs=-1", "simclr_imagenet.py: epochs must be a positive int"),
])
def test_bad_config_args_name_the_file_and_arg(name, arg, message):
  with pytest.raises(ValueError) as info:
    load_experiment(name, arg)
  assert message in str(info.value)
