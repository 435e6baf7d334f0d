r"""kNN graphs: sslx (exact, approximate at a target recall) vs faiss-cpu and pynndescent.

Every (data, engine) pair runs in its own child process, so each sslx row is a *cold* fit
(XLA compilation included) followed by a *warm* one (compiled already), and thread pools
do not leak between engines. All engines get the same threads (``--threads``, default
all cores): XLA's CPU pool, faiss's OpenMP (``omp_set_num_threads``, with
``OMP_WAIT_POLICY=passive`` so idle threads do not spin against the others) and numba's
(``NUMBA_NUM_THREADS``, pynndescent).

The task: the k nearest other points of every point (``--k``, default 10), Euclidean.
Recall is of the exact k neighbours over ``--recall_sample`` points (exact neighbours from
a float64 brute-force search of those points, in the parent), so every engine is scored
on the same points; a returned point at the k-th true distance counts as found (pixel
data has many ties and duplicates, on which even an exact float32 search "misses").

Engines:
  sslx_exact   ``sslx.graph.knn_graph(method='exact')``
  sslx_approx  ``knn_graph(method='approx')`` at its default target recall 0.95 (the probe
               count is chosen on a sample; the estimate is printed as ``est``)
  faiss_flat   ``IndexFlatL2``: exact, brute force (BLAS)
  faiss_hnsw   ``IndexHNSWFlat(d, 32)``, efConstruction 40 (faiss's default); efSearch is
               the smallest of 16, 32, ..., 1024 whose recall on the sample reaches 0.95
               (that sweep is not timed; the time is the build + one search at that value)
  pynndescent  ``NNDescent(n_neighbors=30)`` (its default), neighbour graph read off the
               index (``neighbor_graph``), no query phase

Data (``--data``, comma-separated):
  blobs100k    ``make_blobs(100_000, 64 features, 10 centers, random_state=0)``
  blobs1m      the same with 1,000,000 points
  digits       scikit-learn's digits, 1,797 x 64 pixels
  notmnist     the vendored notMNIST file (``data/notmnist10k.npz``), 10,000 x 784 pixels
  emb:WORKDIR  learned embeddings: the features of a finished sslx run's model (its
               EMA parameters when it kept them) for every train and test image of its
               dataset, each once

  pip install -r requirements-bench.txt
  python scripts/bench_knn.py --data=digits,notmnist,blobs100k
  python scripts/bench_knn.py --data=emb:runs/notmnist_supervised
  python scripts/bench_knn.py --data=blobs1m --engines=sslx_approx,faiss_hnsw --timeout=1500

The machine may be shared: the load average is printed at the start and end of each row;
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run from a checkout
ENGINES = ("sslx_exact", "sslx_approx", "faiss_flat", "faiss_hnsw", "pynndescent")
_HNSW_EF = (16, 32, 64, 128, 256, 512, 1024)


def load_data(name: str) -> np.ndarray:
  """``[N, d]`` float32 points of a ``--data`` entry."""
  if name in ("blobs100k", "blobs1m"):
    from sklearn.datasets import make_blobs
    n = 100_000 if name == "blobs100k" else 1_000_000
    return make_blobs(n_samples=n, n_features=64, centers=10, random_state=0)[0].astype(
        np.float32)
  if name == "digits":
    from sklearn.datasets import load_digits
    return load_digits().data.astype(np.float32)
  if name == "notmnist":
    with np.load(os.path.join(REPO, "data", "notmnist10k.npz")) as f:
      x = np.concatenate([f["x_train"], f["x_test"]])
    return x.reshape(len(x), -1).astype(np.float32) / 255.0
  if name.startswith("emb:"):
    return _embeddings(name[len("emb:"):])
  raise ValueError(f"--data: unknown entry {name!r} (blobs100k, blobs1m, digits, notmnist, "
                   "emb:WORKDIR)")


def _embeddings(workdir: str) -> np.ndarray:
  import jax
  from sslx import evaluation, plot, train
  config = plot.load_config(workdir)
  state, model, normalize, dataset = plot.restore_latest(workdir, config)
  weights = state.ema_params if config.ema_decay > 0 else state.params["model"]
  # Every train image once: the default unlabeled pool ('all') already holds the
  # labeled ones (stacking both put duplicates at distance 0 in the data).
  parts = ([dataset.unlabeled_images] if dataset.unlabeled_pool == "all"
           else [dataset.labeled_images, dataset.unlabeled_images])
  images = np.concatenate(parts + [dataset.test_images])
  del jax
  return np.asarray(evaluation.extract_features(
      model, train.to_host(weights), train.to_host(state.model_state), normalize, images,
      batch_size=512), np.float32)


def exact_neighbours(x: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
  """``[len(rows), k]``: the k nearest other points of ``x[rows]`` (float64 brute force)."""
  out = []
  norms = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))
  for start in range(0, len(rows), 256):
    r = rows[start:start + 256]
    d2 = norms[r][:, None] - 2.0 * (x[r].astype(np.float64) @ x.T.astype(np.float64)) + norms
    d2[np.arange(len(r)), r] = np.inf
    part = np.argpartition(d2, k, axis=1)[:, :k]
    out.append(part)
  return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray, x: np.ndarray, sample: np.ndarray) -> float:
  """Share of the found neighbours that are among the true k nearest, ties counted as
  found: a returned point at the k-th true distance (pixel data has many equal
  distances, duplicates included) is as good as the one the brute force listed."""
  k = truth.shape[1]
  q = x[sample].astype(np.float64)

  def dist2(idx):
    return np.sum((x[idx].astype(np.float64) - q[:, None, :]) ** 2, axis=-1)
  kth = dist2(truth).max(axis=1, keepdims=True)
  found = found[:, :k]
  ok = (dist2(found) <= kth * (1 + 1e-6) + 1e-9) & (found != sample[:, None])
  # each returned point counts once
  first = np.ones_like(ok)
  for j in range(1, k):
    first[:, j] = ~(found[:, :j] == found[:, j:j + 1]).any(axis=1)
  return float(np.mean(ok & first))


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
  """Rows of k + 1 neighbours that may include the point itself -> k others."""
  return _drop_self_rows(idx, np.arange(len(idx)), k)


def _drop_self_rows(idx: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
  """Row i lists k + 1 neighbours of point ``rows[i]``, maybe itself -> k others."""
  is_self = idx == rows[:, None]
  is_self[~is_self.any(axis=1), -1] = True
  return idx[~is_self].reshape(len(idx), idx.shape[1] - 1)[:, :k]


def _child(args) -> dict:
  x = np.load(args.points)
  sample = np.load(args.sample)
  truth = np.load(args.truth)
  k, engine = args.k, args.engine
  out = {"engine": engine}

  def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - t, time.process_time() - c

  if engine.startswith("sslx"):
    import jax
    from sslx.graph import knn_graph
    method = engine.split("_")[1]

    def fit():
      result = knn_graph(x, k=k, metric="euclidean", method=method, return_recall=True)
      jax.block_until_ready(result[0])
      return result
    (idx, _, est), out["cold_s"], out["cold_cpu_s"] = timed(fit)
    (idx, _, est), out["warm_s"], out["warm_cpu_s"] = timed(fit)
    out["estimated_recall"] = est
    found = np.asarray(idx)[sample]
  elif engine.startswith("faiss"):
    import faiss
    faiss.omp_set_num_threads(args.threads)
    if engine == "faiss_flat":
      def fit():
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
        return index.search(x, k + 1)[1]
      idx, out["cold_s"], out["cold_cpu_s"] = timed(fit)
      found = _drop_self(idx, k)[sample]
    else:
      def build():
        index = faiss.IndexHNSWFlat(x.shape[1], 32)
        index.add(x)
        return index
      index, build_s, build_cpu = timed(build)
      ef = None
      for ef in _HNSW_EF:  # the smallest efSearch reaching 0.95 on the sample (untimed)
        index.hnsw.efSearch = ef
        if recall(_drop_self_rows(index.search(x[sample], k + 1)[1], sample, k), truth, x,
                  sample) >= 0.95:
          break
      index.hnsw.efSearch = ef
      idx, search_s, search_cpu = timed(lambda: index.search(x, k + 1)[1])
      out.update(cold_s=build_s + search_s, cold_cpu_s=build_cpu + search_cpu,
                 ef_search=ef, build_s=build_s)
      found = _drop_self(idx, k)[sample]
  elif engine == "pynndescent":
    from pynndescent import NNDescent
    def fit():
      return NNDescent(x, n_neighbors=30, random_state=0, n_jobs=args.threads).neighbor_graph[0]
    # numba compiles on the first call: time a first (cold) and a second (warm) fit.
    idx, out["cold_s"], out["cold_cpu_s"] = timed(fit)
    idx, out["warm_s"], out["warm_cpu_s"] = timed(fit)
    found = _drop_self(np.asarray(idx[:, :k + 1]), k)[sample]
  else:
    raise ValueError(f"--engines: unknown engine {engine!r}; known: {ENGINES}")
  out["recall"] = recall(found, truth, x, sample)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", default="digits,notmnist,blobs100k")
  parser.add_argument("--engines", default=",".join(ENGINES))
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--recall_sample", type=int, default=2000)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--timeout", type=float, default=900, help="seconds per child")
  parser.add_argument("--out", default="", help="also write every row to this JSON file")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--engine", help=argparse.SUPPRESS)
  for name in ("points", "sample", "truth"):
    parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print("RESULT " + json.dumps(_child(args)), flush=True)
    return None
  engines = [e for e in args.engines.split(",") if e]
  unknown = [e for e in engines if e not in ENGINES]
  if unknown:
    parser.error(f"--engines: unknown {unknown}; known: {list(ENGINES)}")

  env = dict(os.environ, OMP_WAIT_POLICY="passive", OMP_NUM_THREADS=str(args.threads),
             NUMBA_NUM_THREADS=str(args.threads),
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                        f" --xla_cpu_multi_thread_eigen=true"
                        f" intra_op_parallelism_threads={args.threads}").strip(),
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  print(f"# cores {os.cpu_count()}, threads per engine {args.threads}, OMP_WAIT_POLICY=passive,"
        f" k={args.k}, recall over {args.recall_sample} sampled points", flush=True)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for data in args.data.split(","):
      x = load_data(data)
      rng = np.random.RandomState(1)
      sample = np.sort(rng.choice(len(x), min(args.recall_sample, len(x)), replace=False))
      truth = exact_neighbours(x, sample, args.k)
      paths = {n: os.path.join(tmp, f"{n}.npy") for n in ("points", "sample", "truth")}
      np.save(paths["points"], x)
      np.save(paths["sample"], sample)
      np.save(paths["truth"], truth)
      for engine in engines:
        load_before = os.getloadavg()[0]
        cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--engine={engine}",
               f"--k={args.k}", f"--threads={args.threads}",
               *(f"--{n}={p}" for n, p in paths.items())]
        try:
          proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                env=env)
          lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
          if proc.returncode or not lines:
            row = {"engine": engine, "status": "failed: " + (
                proc.stderr.strip().splitlines() or ["?"])[-1]}
          else:
            row = dict(json.loads(lines[-1][len("RESULT "):]), status="ok")
        except subprocess.TimeoutExpired:
          row = {"engine": engine, "status": f"DNF (stopped after {args.timeout:.0f} s)"}
        row.update(data=data, n=len(x), d=x.shape[1],
                   load=f"{load_before:.1f}-{os.getloadavg()[0]:.1f}")
        rows.append(row)
        _print(row)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=1)
  return rows


def _print(row):
  head = f"{row['data']:>10} {row['n']:>8}x{row['d']:<4} {row['engine']:>12}"
  if row["status"] != "ok":
    print(f"{head}  {row['status']}  load {row['load']}", flush=True)
    return
  text = f"{head}  cold {row['cold_s']:8.2f} s"
  text += f"  warm {row['warm_s']:8.2f} s" if "warm_s" in row else " " * 17
  text += f"  recall {row['recall']:.3f}"
  if "estimated_recall" in row:
    text += f" (est {row['estimated_recall']:.3f})"
  if "ef_search" in row:
    text += f"  efSearch {row['ef_search']} (build {row['build_s']:.2f} s)"
  print(f"{text}  load {row['load']}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
