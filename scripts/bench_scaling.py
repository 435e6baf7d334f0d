"""How the cost grows: FixMatch step vs batch size and width, label propagation vs N.

  python scripts/bench_scaling.py                           # all three parts, ~8 min on 2 cores
  python scripts/bench_scaling.py --part=batch --batches=8,16,32,64 --memory_batches=256,1024
  python scripts/bench_scaling.py --part=width --width_batch=8
  python scripts/bench_scaling.py --part=lp --lp_sizes=1000,4000,16000,64000

(batch) The FixMatch step of ``scripts/bench_step.py`` (the trainer's jitted step:
    sampling, weak + strong augmentation, forward, backward, SGD, EMA) for labeled
    batches B in --batches (unlabeled 7B, so 15B images through WRN-28-2 per step),
    against the PyTorch reference at the same B (``scripts/torch_reference.py``),
    interleaved round by round exactly as bench_step.py does. Larger batches, up to the
    paper-scale 1024 labeled (15,360 images per step), are compiled but not run on a
    2-core CPU: for them the table gives XLA's memory for the step (argument + temp
    bytes from ``compiled.memory_analysis()``, compiled without CPU batch chunking),
    which is what decides whether they fit on an accelerator.
(width) The same step for WRN-28-2 and WRN-28-8 at labeled batch --width_batch.
(lp) Label propagation over N points (d = 128 features, 10 classes, 10% labeled):
    ``sslx.graph.knn_graph`` (exact, k = 10) then ``propagate``
    (label spreading, alpha = 0.99, 30 iterations), jitted, against scikit-learn's
    ``LabelSpreading(kernel='knn', n_neighbors=10, alpha=0.99, max_iter=30, tol=0)``
    on the same features (graph + iterations, the same algorithm), repeated
    --lp_repeats times, median. sslx's compile time is reported apart.

All timings are medians over rounds, on whatever machine runs the script; this one
is shared with other jobs, see BENCHMARKS.md for how to read its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_step  # noqa: E402  (the step builders and the interleaving protocol)


def _step_args(args, batch: int, width: int):
  return argparse.Namespace(batch=batch, width=width, threads=args.threads,
                            torch_workers=args.torch_workers, compute_dtype="float32",
                            rounds=args.rounds, steps=args.steps, warmup=args.warmup,
                            xla_flags=args.xla_flags, conv_chunk=args.conv_chunk,
                            cpu_devices=args.cpu_devices, unchunked_too=False,
                            one_device_too=False)


def step_point(args, batch: int, width: int) -> dict:
  out = bench_step.run_workload("fixmatch", _step_args(args, batch, width))
  out["width"] = width
  return out


def memory_point(batch: int, width: int = 2) -> dict:
  """Compiles (never runs) the FixMatch step at a batch too big to run here; in a child."""
  # Unchunked convolutions: the same buffers (5.42 vs 5.42 GiB at B=64) and a program
  # that compiles in seconds instead of one with 15B/64 convolutions per layer.
  code = ("import json, sys; sys.path.insert(0, %r); import bench_step; "
          "from sslx.models import conv; conv.CPU_BATCH_CHUNK = 0; "
          "_, info = bench_step.build_sslx_step('fixmatch', %d, %d); "
          "print(json.dumps(info))") % (HERE, batch, width)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=bench_step.ROOT)
  if out.returncode:
    return dict(batch=batch, width=width, error=out.stderr.strip().splitlines()[-1])
  info = json.loads(out.stdout.strip().splitlines()[-1])
  return dict(batch=batch, width=width, **info)


# ---------------------------------------------------------------------------
# Label propagation
# ---------------------------------------------------------------------------


def _lp_data(n: int, d: int = 128, num_classes: int = 10, seed: int = 0):
  import numpy as np
  rng = np.random.default_rng(seed)
  centers = rng.standard_normal((num_classes, d)).astype(np.float32)
  y = rng.integers(0, num_classes, n)
  x = centers[y] + 1.5 * rng.standard_normal((n, d)).astype(np.float32)
  labels = np.where(rng.random(n) < 0.1, y, -1).astype(np.int32)
  labels[:num_classes] = np.arange(num_classes)  # every class has a label
  y[:num_classes] = np.arange(num_classes)
  return x, labels, y


def lp_point(n: int, repeats: int, k: int = 10, iters: int = 30) -> dict:
  import warnings
  import jax
  import numpy as np
  from sklearn.semi_supervised import LabelSpreading
  from sslx import graph

  x, labels, truth = _lp_data(n)

  @jax.jit
  def sslx_lp(x, labels):
    indices, _ = graph.knn_graph(x, k=k, metric="euclidean")
    weights = jax.numpy.ones(indices.shape, jax.numpy.float32)  # sklearn's knn kernel: 0/1
    return graph.propagate(indices, weights, labels, num_classes=10, alpha=0.99,
                           num_iters=iters, method="spreading")

  t0 = time.perf_counter()
  compiled = sslx_lp.lower(x, labels).compile()
  compile_s = time.perf_counter() - t0
  times = {"sslx": [], "sklearn": []}
  acc = {}
  for _ in range(repeats):
    t0 = time.perf_counter()
    scores = np.asarray(jax.block_until_ready(compiled(x, labels)))
    times["sslx"].append(time.perf_counter() - t0)
    acc["sslx"] = float(np.mean(scores.argmax(1)[labels < 0] == truth[labels < 0]))
    model = LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.99, max_iter=iters, tol=0.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 runs every iteration
      model.fit(x, labels)
    times["sklearn"].append(time.perf_counter() - t0)
    acc["sklearn"] = float(np.mean(model.transduction_[labels < 0] == truth[labels < 0]))
  med = {side: statistics.median(t) for side, t in times.items()}
  return dict(n=n, k=k, iters=iters, sslx_s=med["sslx"], sklearn_s=med["sklearn"],
              speedup=med["sklearn"] / med["sslx"], sslx_compile_s=compile_s,
              accuracy_unlabeled=acc)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--part", default="batch,width,lp")
  parser.add_argument("--batches", default="16,32,64", help="labeled batches run (both sides)")
  parser.add_argument("--memory_batches", default="256,1024",
                      help="labeled batches only compiled (sslx memory), 0 entries skip")
  parser.add_argument("--width_batch", type=int, default=16)
  parser.add_argument("--widths", default="2,8")
  parser.add_argument("--lp_sizes", default="1000,4000,16000")
  parser.add_argument("--lp_repeats", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=1)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--torch_workers", type=int, default=0)
  parser.add_argument("--xla_flags", default="")
  parser.add_argument("--cpu_devices", type=int, default=0,
                      help="XLA:CPU devices for the sslx side (0: one per core, as sslx.main)")
  parser.add_argument("--conv_chunk", type=int, default=-1,
                      help="sslx.models.conv.CPU_BATCH_CHUNK (0: off, -1: library default)")
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  parts = args.part.split(",")
  ints = lambda s: [int(v) for v in s.split(",") if v and int(v) > 0]
  results: dict[str, list] = {}
  if "batch" in parts:
    results["batch"] = [step_point(args, b, 2) for b in ints(args.batches)]
    results["batch_memory"] = [memory_point(b) for b in ints(args.memory_batches)]
  if "width" in parts:
    results["width"] = [step_point(args, args.width_batch, w) for w in ints(args.widths)]
  if "lp" in parts:
    results["lp"] = [lp_point(n, args.lp_repeats) for n in ints(args.lp_sizes)]
  print(json.dumps(results, indent=1))

  for part in ("batch", "width"):
    if part not in results:
      continue
    print(f"\n| FixMatch, {part} | images/step | sslx s/step | torch s/step | sslx / torch "
          "(steps/s) | sslx CPU-s | torch CPU-s | sslx compile s | XLA temp MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results[part]:
      s, t = r["sslx"], r["torch"]
      print(f"| WRN-28-{r['width']}, B={r['batch']} | {s['images_per_step']} | "
            f"{s['wall_s_per_step']:.2f} | {t['wall_s_per_step']:.2f} | "
            f"{s['ratio_steps_per_s']:.2f}x | {s['cpu_s_per_step']:.2f} | "
            f"{t['cpu_s_per_step']:.2f} | {s['compile_or_first_step_s']:.0f} | "
            f"{s.get('xla_temp_mib', 0):.0f} |")
  for r in results.get("batch_memory", []):
    if "error" in r:
      print(f"| WRN-28-2, B={r['batch']} (compile only) | {15 * r['batch']} | {r['error']} |")
    else:
      print(f"| WRN-28-2, B={r['batch']} (compile only) | {r['images_per_step']} | - | - | - | "
            f"- | - | {r['compile_s']:.0f} | {r['xla_temp_mib']:.0f} |")
  if "lp" in results:
    print("\n| LP, N | sslx s | sklearn s | speedup | sslx compile s | accuracy sslx / sklearn |")
    print("|---|---|---|---|---|---|")
    for r in results["lp"]:
      a = r["accuracy_unlabeled"]
      print(f"| {r['n']} | {r['sslx_s']:.3f} | {r['sklearn_s']:.3f} | {r['speedup']:.1f}x | "
            f"{r['sslx_compile_s']:.1f} | {a['sslx']:.3f} / {a['sklearn']:.3f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
