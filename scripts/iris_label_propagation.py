"""Seed example: label propagation on iris with 90% of the labels hidden.

scikit-learn's classic example with only the import changed, next to
scikit-learn itself on the same mask:

  python scripts/iris_label_propagation.py            # seed 42
  python scripts/iris_label_propagation.py --seeds=10 # mean over seeds 0..9
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.semi_supervised import LabelPropagation as SkLabelPropagation

import sslx


def transductive_accuracies(seed: int):
  """(sslx, scikit-learn) accuracy on the unlabeled iris points for `seed`."""
  iris = datasets.load_iris()
  rng = np.random.RandomState(seed)
  labels = np.copy(iris.target)
  labels[rng.rand(len(iris.target)) < 0.9] = -1
  unlabeled = labels == -1
  result = []
  for cls in (sslx.LabelPropagation, SkLabelPropagation):
    model = cls(kernel="knn", n_neighbors=10).fit(iris.data, labels)
    result.append(float(
        (model.transduction_[unlabeled] == iris.target[unlabeled]).mean()))
  return tuple(result), int(unlabeled.sum())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, default=0,
                      help="0: seed 42 only; n: seeds 0..n-1")
  args = parser.parse_args()
  warnings.simplefilter("ignore", ConvergenceWarning)
  seeds = [42] if args.seeds == 0 else list(range(args.seeds))
  accs = []
  for seed in seeds:
    (ours, theirs), n_unlabeled = transductive_accuracies(seed)
    accs.append((ours, theirs))
    print(f"seed {seed:3d}: {n_unlabeled} unlabeled of 150   "
          f"sslx.LabelPropagation {ours:.4f}   "
          f"sklearn LabelPropagation {theirs:.4f}")
  if len(seeds) > 1:
    mean = np.mean(accs, axis=0)
    print(f"mean over {len(seeds)} seeds: sslx {mean[0]:.4f}   "
          f"sklearn {mean[1]:.4f}")


if __name__ == "__main__":
  main()
