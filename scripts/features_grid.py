"""Compares runs' learned features in one picture: t-SNE (or PCA) of the test set, one panel per run.

  python scripts/features_grid.py --out docs/figures/features_digits.png \
      SimCLR=runs/simclr_digits BYOL=runs/byol_digits ...

Each ``NAME=WORKDIR`` is a sslx workdir with a checkpoint; its panel's title gives the
linear-probe / kNN / test accuracy from its ``results.json``. The first panel is the raw
pixels of the same test images. Per-run pictures with PCA and curves:
``scripts/plot_run.py WORKDIR --features --tsne``.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sslx.plot import plot_feature_grid  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", metavar="NAME=WORKDIR")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--method", choices=("tsne", "pca"), default="tsne")
  parser.add_argument("--max_points", type=int, default=1000)
  parser.add_argument("--columns", type=int, default=4)
  parser.add_argument("--params", choices=("auto", "ema", "raw"), default="auto")
  args = parser.parse_args(argv)
  runs = []
  for item in args.runs:
    name, sep, workdir = item.partition("=")
    if not sep or not name or not workdir:
      parser.error(f"{item!r} is not NAME=WORKDIR")
    if not os.path.isdir(workdir):
      parser.error(f"{name}: workdir {workdir!r} does not exist")
    runs.append((name, workdir))
  print(plot_feature_grid(runs, args.out, method=args.method, max_points=args.max_points,
                          params=args.params, columns=args.columns))


if __name__ == "__main__":
  main(sys.argv[1:])
