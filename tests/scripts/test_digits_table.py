"""scripts/digits_table.py builds its table from real (smoke-size) runs."""

import json
import os

from helpers import load_script



def test_table_from_smoke_runs(tmp_path):
  table = load_script("digits_table")
  out = str(tmp_path / "t")
  results = table.main(["--smoke", "--rows=supervised_labeled,sklearn_label_spreading",
                        "--seeds=0,1", "--labels_per_class=2",
                        f"--workroot={tmp_path / 'runs'}", f"--out={out}"])
  assert set(results) == {"supervised_labeled/2/0", "supervised_labeled/2/1",
                          "sklearn_label_spreading/2/0", "sklearn_label_spreading/2/1"}
  assert all(0.0 <= v <= 1.0 for v in results.values())
  # LabelSpreading on 20 labeled digits is far above chance (10%).
  assert results["sklearn_label_spreading/2/0"] > 0.6
  with open(out + ".json") as f:
    assert json.load(f) == results
  md = open(out + ".md").read()
  assert "scikit-learn LabelSpreading" in md and " ± " in md
  # Each seed is a different labeled subset.
  splits = [json.load(open(tmp_path / "runs" / "supervised_labeled" / "lpc2" / f"seed{s}" /
                           "labeled_indices.json"))["labeled_indices"] for s in (0, 1)]
  assert splits[0] != splits[1]


def test_notmnist_rows_run_the_28x28_recipe(tmp_path):
  """``--dataset=notmnist``: a method row is ``notmnist.py:method=NAME`` (10 labels per class
  by default, the vendored 28x28 file), and unknown rows are refused."""
  import pytest
  table = load_script("digits_table")
  out = str(tmp_path / "n")
  results = table.main(["--dataset=notmnist", "--smoke", "--rows=flexmatch", "--seeds=0",
                        f"--workroot={tmp_path / 'runs'}", f"--out={out}"])
  assert set(results) == {"flexmatch/10/0"}
  assert 0.0 <= results["flexmatch/10/0"] <= 1.0
  config = json.load(open(tmp_path / "runs" / "flexmatch" / "lpc10" / "seed0" / "config.json"))
  assert config["method"] == "flexmatch"
  assert config["data"]["name"].endswith("notmnist10k.npz")
  assert config["data"]["num_labels"] == 100 and config["model"]["name"] == "convnet"
  line = next(l for l in open(out + ".md").read().splitlines() if "FlexMatch" in l)
  # One seed has no spread: its cell is the value and n, not "± 0.0".
  assert line.endswith(f"| {100 * results['flexmatch/10/0']:.1f} (n=1) |"), line
  with pytest.raises(SystemExit):
    table.main(["--dataset=notmnist", "--rows=fixmatch_graph", "--report_only", f"--out={out}"])
  # Every digits row has its notMNIST form, under the same name.
  notmnist_rows = table._notmnist_rows()
  assert list(notmnist_rows) and set(notmnist_rows) == set(table.ROWS)


def test_notmnist_label_spreading_row_reads_the_28x28_pixels(tmp_path):
  """The label-spreading rows' notMNIST form spreads the same labeled subset as the trainer
  rows over the file's 784-pixel images."""
  from sslx import data
  table = load_script("digits_table")
  row = table._notmnist_rows()["sslx_label_spreading"]
  assert row[0] == table.ROWS["sslx_label_spreading"][0]
  name = "npz:" + table._experiment_module("notmnist").DATA_PATH
  x, y, x_test, _ = table._pixels(0, 1, name)
  assert x.shape == (8000, 784) and x_test.shape == (2000, 784)
  assert 0.0 <= x.min() and x.max() <= 1.0
  cfg = data.default_data_config()
  cfg.name, cfg.num_labels, cfg.split_seed = name, 10, 0
  ds = data.load_dataset(cfg)
  assert (y >= 0).sum() == 10
  assert (y[:10] == ds.labeled_labels).all()
  # One label a class spread over the kNN graph of 8,000 letters: 35% on seed 0, over 3x
  # chance (73% at 10 a class); what no label reaches is predicted class 0.
  assert row[1](0, 1, str(tmp_path), False) > 0.3
