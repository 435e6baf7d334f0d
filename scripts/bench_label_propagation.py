r"""Label spreading at scale: sslx vs scikit-learn, side by side in one run.

For each data set the fit of scikit-learn's ``LabelSpreading(kernel='knn',
n_neighbors=10)`` and of ``sslx.LabelSpreading`` with the same arguments
(exact neighbours, then approximate ones) runs in its own child process, so
that peak memory (``ru_maxrss``) is per configuration and a configuration
that runs too long can be stopped (reported as DNF). Printed per run: fit wall
time, the child's CPU time, peak RSS (and RSS before the fit: interpreter,
libraries and data), transductive accuracy on the unlabeled points and, for
approximate neighbours, the recall of the exact 9 nearest neighbours on a
sample of 2000 points (and the fit's own sampled estimate, ``knn_recall_``). The
approximate search runs at the estimator's default target recall (0.95) unless
``--num_probes`` fixes the probe count. sslx's first fit in a process includes XLA compilation
("cold"); a second fit on the same data ("warm") shows the steady state.

Data: ``digits`` (1797 x 64, 2 labels per class) and ``make_blobs(N, 64
features, 10 centers, random_state=0)`` with 1% of the points labeled.

With ``--jax_cache=DIR`` every sslx child uses JAX's persistent compilation cache in DIR
(every program cached, however quick to compile): run twice, and the second run's first
fits are a fresh process's first fit with the programs compiled by an earlier process.

The machine may be shared: compare the ratios within one run, not absolute
times across runs.

Usage::

  python scripts/bench_label_propagation.py --sizes=digits,20000,100000
  python scripts/bench_label_propagation.py --sizes=1000000 \
      --methods=approx,sklearn --sklearn_timeout=240 --no-warm
  python scripts/bench_label_propagation.py --sizes=100000 --jax_cache=/tmp/jc  # twice
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _data(name: str, label_fraction: float):
  if name == "digits":
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    labels = np.full(len(y), -1)
    for c in np.unique(y):
      labels[rng.choice(np.flatnonzero(y == c), 2, replace=False)] = c
    return x.astype(np.float32), y, labels
  from sklearn.datasets import make_blobs
  n = int(name)
  x, y = make_blobs(n_samples=n, n_features=64, centers=10, random_state=0)
  rng = np.random.RandomState(0)
  labels = np.where(rng.rand(n) < label_fraction, y, -1)
  return x.astype(np.float32), y, labels


def _child(args) -> dict:
  x, y, labels = _data(args.dataset, args.label_fraction)
  unlabeled = labels == -1
  out = {"dataset": args.dataset, "method": args.method, "n": len(y)}
  if args.method == "sklearn":
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.semi_supervised import LabelSpreading
    warnings.simplefilter("ignore", ConvergenceWarning)
    make = lambda: LabelSpreading(kernel="knn", n_neighbors=args.k)
  else:
    import jax
    if args.jax_cache:
      jax.config.update("jax_compilation_cache_dir", os.path.abspath(args.jax_cache))
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sslx.label_propagation import LabelSpreading
    warnings.simplefilter("ignore", ConvergenceWarning)
    make = lambda: LabelSpreading(
        kernel="knn", n_neighbors=args.k, knn_method=args.method,
        recall=args.recall, num_probes=args.num_probes or None,
        leaf_size=args.leaf_size)
  out["rss_before_mb"] = _current_rss_mb()
  t, c = time.perf_counter(), time.process_time()
  model = make().fit(x, labels)
  out["fit_s"] = time.perf_counter() - t
  out["cpu_s"] = time.process_time() - c
  out["peak_rss_mb"] = _rss_mb()
  out["accuracy"] = float((model.transduction_[unlabeled] == y[unlabeled]).mean())
  if args.method == "approx":
    out["recall_estimate"] = float(model.knn_recall_)
  if args.method != "sklearn" and args.warm:
    t, c = time.perf_counter(), time.process_time()
    model = make().fit(x, labels)
    out["warm_fit_s"] = time.perf_counter() - t
    out["warm_cpu_s"] = time.process_time() - c
  if args.method == "approx":
    from sslx.graph import knn_graph, knn_search
    k = args.k - 1   # scikit-learn's n_neighbors counts the point itself
    idx, _ = knn_graph(x, k=k, metric="euclidean", method="approx",
                       recall=args.recall, num_probes=args.num_probes or None,
                       leaf_size=args.leaf_size)
    sample = np.random.RandomState(1).choice(len(x), min(2000, len(x)),
                                             replace=False)
    exact, _ = knn_search(x[sample], x, k=k + 1, metric="euclidean")
    exact = np.asarray(exact)
    idx = np.asarray(idx)[sample]
    hits = [len(set(e[e != q][:k]) & set(a)) for e, a, q in
            zip(exact, idx, sample)]
    out["recall"] = float(np.sum(hits) / (k * len(sample)))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="digits,20000,100000",
                      help="comma list of 'digits' and blob sizes")
  parser.add_argument("--methods", default="sklearn,exact,approx")
  parser.add_argument("--k", type=int, default=10,
                      help="n_neighbors (scikit-learn's: counts the point)")
  parser.add_argument("--label_fraction", type=float, default=0.01)
  parser.add_argument("--recall", type=float, default=0.95,
                      help="approximate search: target recall (the estimator's default)")
  parser.add_argument("--num_probes", type=int, default=0,
                      help="approximate search: fixed probe count (0: chosen for --recall)")
  parser.add_argument("--leaf_size", type=int, default=256)
  parser.add_argument("--timeout", type=float, default=420,
                      help="seconds allowed per sslx configuration")
  parser.add_argument("--sklearn_timeout", type=float, default=420,
                      help="seconds allowed per scikit-learn fit")
  parser.add_argument("--warm", action=argparse.BooleanOptionalAction,
                      default=True,
                      help="also time a second sslx fit (compiled already)")
  parser.add_argument("--jax_cache", default="",
                      help="JAX persistent compilation cache directory for the sslx fits")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--dataset", help=argparse.SUPPRESS)
  parser.add_argument("--method", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print("RESULT " + json.dumps(_child(args)), flush=True)
    return

  print(f"# cpu cores: {os.cpu_count()}, load average at start: "
        f"{os.getloadavg()[0]:.1f}", flush=True)
  rows = []
  for dataset in args.sizes.split(","):
    for method in args.methods.split(","):
      cmd = [sys.executable, __file__, "--child", f"--dataset={dataset}",
             f"--method={method}", f"--k={args.k}",
             f"--label_fraction={args.label_fraction}",
             f"--recall={args.recall}", f"--num_probes={args.num_probes}",
             f"--leaf_size={args.leaf_size}",
             f"--jax_cache={args.jax_cache}",
             "--warm" if args.warm else "--no-warm"]
      limit = args.sklearn_timeout if method == "sklearn" else args.timeout
      start = time.perf_counter()
      try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=limit)
      except subprocess.TimeoutExpired:
        row = {"dataset": dataset, "method": method,
               "status": f"DNF (stopped after {limit:.0f} s)"}
      else:
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
          row = {"dataset": dataset, "method": method,
                 "status": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}
        else:
          row = json.loads(lines[-1][len("RESULT "):])
          row["status"] = "ok"
      row["child_wall_s"] = time.perf_counter() - start
      rows.append(row)
      _print_row(row, rows)
  print(f"# load average at end: {os.getloadavg()[0]:.1f}")


def _print_row(row, rows):
  if row["status"] != "ok":
    print(f"{row['dataset']:>8} {row['method']:>8}  {row['status']}",
          flush=True)
    return
  ref = next((r for r in rows if r["dataset"] == row["dataset"]
              and r["method"] == "sklearn" and r["status"] == "ok"), None)
  text = (f"{row['dataset']:>8} {row['method']:>8}  fit {row['fit_s']:8.2f} s"
          f"  cpu {row['cpu_s']:8.2f} s  peak RSS {row['peak_rss_mb']:7.0f} MB"
          f" (before fit {row['rss_before_mb']:5.0f})"
          f"  acc {row['accuracy']:.4f}")
  if "warm_fit_s" in row:
    text += f"  warm fit {row['warm_fit_s']:7.2f} s"
  if "recall" in row:
    text += f"  recall@{9} {row['recall']:.4f} (est {row['recall_estimate']:.3f})"
  if ref is not None and row["method"] != "sklearn":
    text += (f"  | vs sklearn: {ref['fit_s'] / row['fit_s']:5.1f}x cold")
    if "warm_fit_s" in row:
      text += f", {ref['fit_s'] / row['warm_fit_s']:5.1f}x warm"
  print(text, flush=True)


if __name__ == "__main__":
  main()
