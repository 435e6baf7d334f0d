"""GridSearchCV over sslx.LabelSpreading vs scikit-learn's, on iris.

A grid search refits on every fold and every parameter set: sslx pads to size buckets
and keeps n_neighbors, alpha and gamma out of the compiled shapes, so only the first
fits of each size bucket compile. Each library is timed twice in the same process
(the second run shows the compiled cost):

  python scripts/bench_grid_search.py
"""

from __future__ import annotations

import time
import warnings

import sklearn.semi_supervised as sk
from sklearn import datasets
from sklearn.model_selection import GridSearchCV

import sslx

GRID = {"n_neighbors": [3, 5, 7, 10], "alpha": [0.1, 0.2, 0.5]}


def main():
  warnings.simplefilter("ignore")
  x, y = datasets.load_iris(return_X_y=True)
  print(f"GridSearchCV(LabelSpreading(kernel='knn'), {GRID}, cv=5) on iris "
        f"({len(GRID['n_neighbors']) * len(GRID['alpha']) * 5 + 1} fits)")
  for name, cls in (("scikit-learn", sk.LabelSpreading), ("sslx", sslx.LabelSpreading)):
    for run in (1, 2):
      start = time.perf_counter()
      search = GridSearchCV(cls(kernel="knn"), GRID, cv=5).fit(x, y)
      print(f"{name:12s} run {run}: {time.perf_counter() - start:6.2f} s  "
            f"best {search.best_params_} score {search.best_score_:.3f}")


if __name__ == "__main__":
  main()
