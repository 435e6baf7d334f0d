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
