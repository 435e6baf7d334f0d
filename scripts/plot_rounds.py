"""Self-training round by round, over seeds: is the student learning, or confirming its teacher?

  python scripts/plot_rounds.py runs/self_training/seed0 runs/self_training/seed1 ... \
      --out=docs/figures/self_training_rounds.png

Reads each workdir's ``metrics.jsonl`` (a ``self_training`` run whose ``eval_every`` is the
round length, as ``experiments/self_training_digits.py`` sets it): at the end of round r,
the accuracy of the pool's pseudo-labels made in round r >= 1 (by the teacher of round r,
the student of round r - 1), the student's test accuracy (raw and EMA parameters), and the
confirmation bias: of the pool examples the previous round's teacher labelled wrongly, the
share that this round's teacher gives the same wrong class (rounds >= 2). Prints the table
(mean +- std over the runs) and draws one panel per quantity, one line per run.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sslx.plot import read_metrics  # noqa: E402

QUANTITIES = (
    ("self_training/pool_pseudo_label_accuracy", "pseudo-label accuracy (pool, this round)"),
    ("test/accuracy", "student test accuracy (raw params)"),
    ("test/accuracy_ema", "student test accuracy (EMA params)"),
    ("self_training/pool_repeated_error_rate",
     "previous teacher's errors repeated (same wrong class)"),
)


def per_round(workdir: str) -> dict[str, dict[int, float]]:
  """``{key: {round: value}}`` read at each round's evaluation row."""
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  ends = [r for r in rows if "test/accuracy" in r and "self_training/round" in r]
  if not ends:
    raise ValueError(f"{workdir}: no evaluation rows with 'self_training/round' (is it a "
                     "self_training run with eval_every set to the round length?)")
  out: dict[str, dict[int, float]] = {key: {} for key, _ in QUANTITIES}
  for row in ends:
    r = int(row["self_training/round"])
    for key, _ in QUANTITIES:
      # Round 0's labels come from the untrained initial model and are not used; the
      # repeated errors need a trained previous teacher (round >= 1).
      first = {"self_training/pool_pseudo_label_accuracy": 1,
               "self_training/pool_repeated_error_rate": 2}.get(key, 0)
      if key in row and r >= first:
        out[key][r] = float(row[key])
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default="self_training_rounds.png")
  args = parser.parse_args(argv)
  runs = [per_round(w) for w in args.workdirs]

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(4.2 * len(QUANTITIES), 3.4))
  for ax, (key, title) in zip(axes, QUANTITIES):
    rounds = sorted({r for run in runs for r in run[key]})
    for i, run in enumerate(runs):
      xs = [r for r in rounds if r in run[key]]
      ax.plot(xs, [100 * run[key][r] for r in xs], marker="o", label=f"run {i}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("round")
    ax.set_ylabel("%")
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    print(f"{key}:")
    for r in rounds:
      vals = [100 * run[key][r] for run in runs if r in run[key]]
      print(f"  round {r}: {np.mean(vals):.1f} +- {np.std(vals):.1f} "
            f"({', '.join(f'{v:.1f}' for v in vals)})")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main(sys.argv[1:])
