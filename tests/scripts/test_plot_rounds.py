"""scripts/plot_rounds.py reads each round's end of self-training runs."""

import json
import os

import pytest

from helpers import load_script



def _write_run(path, rounds):
  os.makedirs(path)
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    for r, (pool_acc, test_acc, repeated) in enumerate(rounds):
      # A training log row inside the round (no evaluation): not a round's end.
      f.write(json.dumps({"step": 10 * r + 5, "self_training/round": r,
                          "self_training/pool_pseudo_label_accuracy": 0.0}) + "\n")
      f.write(json.dumps({"step": 10 * r + 10, "self_training/round": r,
                          "self_training/pool_pseudo_label_accuracy": pool_acc,
                          "self_training/pool_repeated_error_rate": repeated,
                          "test/accuracy": test_acc, "test/accuracy_ema": test_acc - 0.1})
              + "\n")


def test_round_ends_over_runs(tmp_path, capsys):
  script = load_script("plot_rounds")
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  _write_run(a, [(0.1, 0.5, 0.0), (0.8, 0.7, 0.0), (0.85, 0.8, 0.6)])
  _write_run(b, [(0.1, 0.6, 0.0), (0.9, 0.8, 0.0), (0.95, 0.9, 0.4)])
  got = script.per_round(a)
  # Round 0's pseudo-labels are the untrained model's (unused): not reported.
  assert got["self_training/pool_pseudo_label_accuracy"] == {1: 0.8, 2: 0.85}
  assert got["test/accuracy_ema"][2] == pytest.approx(0.7)
  # Repeated errors need a trained previous teacher: rounds >= 2 only.
  assert got["self_training/pool_repeated_error_rate"] == {2: 0.6}
  out = str(tmp_path / "fig" / "rounds.png")
  script.main([a, b, f"--out={out}"])
  assert os.path.getsize(out) > 0
  printed = capsys.readouterr().out
  assert "round 2: 50.0 +- 10.0 (60.0, 40.0)" in printed
  with pytest.raises(ValueError, match="no evaluation rows"):
    os.makedirs(tmp_path / "c")
    (tmp_path / "c" / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    script.per_round(str(tmp_path / "c"))
