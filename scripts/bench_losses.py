"""Benchmark sslx.losses.nt_xent: forward+backward time and peak memory, d = 128.

  python scripts/bench_losses.py                 # (a) and (b), ~5-10 min on 2 CPU cores
  python scripts/bench_losses.py --part=b --sizes=8192,16384 --repeats=5

Two comparisons, each a ratio measured in the same run on the same machine:

(a) against ``optax.losses.ntxent(concat([z1, z2]), labels=concat([arange(N),
    arange(N)]))`` on the same inputs, at the largest 2N (of --optax_sizes) whose
    compiled optax program fits in --memory_budget_gb. optax builds a
    [2N, 2N, d] product, so sizes above that are reported from XLA's buffer
    assignment (compiled, never run).
(b) at 2N = 8192 and 16384 against the machine's own matmul speed: the time of
    the three [2N, d] x [d, 2N]-sized matmuls the loss needs forward and
    backward (S = A B^T; dA = dS B; dB = dS^T A), jitted as one program. Peak
    memory is given as a multiple of one [2N, 2N] float32 matrix.

Every configuration (implementation, 2N) runs in its own child process, so its
memory is measured alone. Time: median of --repeats runs of the jitted
``value_and_grad`` (both embeddings) after one warm-up run. Memory, two ways:
  * xla: argument + output + temp bytes of the compiled executable
    (``compiled.memory_analysis()``, XLA's buffer assignment; exact and
    deterministic, independent of machine load);
  * rss: the child's peak resident-set growth while executing (VmHWM after the
    runs minus VmRSS before them, with the high-water mark reset after compiling
    via /proc/self/clear_refs); includes allocator slack.
Rounds (--rounds) interleave the children of one size, so slow drift in the
load of a shared machine affects both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

D = 128
TEMPERATURE = 0.1
MATRIX = "[2N,2N] f32"


# ---------------------------------------------------------------------------
# Child: one implementation at one size.
# ---------------------------------------------------------------------------


def _proc_status_kb(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"{field} not in /proc/self/status")


def _build(impl: str, n2: int):
  """Returns (jitted fn, args) for one configuration."""
  import jax
  import jax.numpy as jnp
  import optax

  from sslx.losses.contrastive import nt_xent

  n = n2 // 2
  k1, k2 = jax.random.split(jax.random.key(0))
  z1 = jax.random.normal(k1, (n, D), jnp.float32)
  z2 = z1 + 0.5 * jax.random.normal(k2, (n, D), jnp.float32)
  if impl == "sslx":
    fn = jax.value_and_grad(
        lambda a, b: nt_xent(a, b, temperature=TEMPERATURE), argnums=(0, 1))
    return jax.jit(fn), (z1, z2)
  if impl == "optax":
    labels = jnp.concatenate([jnp.arange(n), jnp.arange(n)])

    def loss(a, b):
      return optax.losses.ntxent(jnp.concatenate([a, b]), labels, TEMPERATURE)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (z1, z2)
  if impl == "matmul":
    # The loss's three matmuls: S = A B^T, dA = dS B, dB = dS^T A, with
    # A = B = [z1; z2] and dS = S standing in for the softmax gradient.
    def matmuls(a, b):
      s = a @ b.T
      return s @ b, s.T @ a

    z = jnp.concatenate([z1, z2])
    return jax.jit(matmuls), (z, z)
  raise ValueError(f"unknown impl {impl!r}")


def child(impl: str, n2: int, repeats: int, compile_only: bool) -> dict:
  import jax

  fn, args = _build(impl, n2)
  jax.block_until_ready(args)
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  stats = compiled.memory_analysis()
  xla_bytes = (stats.argument_size_in_bytes + stats.output_size_in_bytes +
               stats.temp_size_in_bytes - stats.alias_size_in_bytes)
  out = dict(impl=impl, n2=n2, compile_s=compile_s, xla_bytes=xla_bytes,
             xla_temp_bytes=stats.temp_size_in_bytes)
  if compile_only:
    return out
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
  rss_before_kb = _proc_status_kb("VmRSS")
  jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  out.update(times=times,
             rss_peak_bytes=(_proc_status_kb("VmHWM") - rss_before_kb) * 1024)
  return out


# ---------------------------------------------------------------------------
# Parent.
# ---------------------------------------------------------------------------


def run_child(impl, n2, repeats, compile_only=False, timeout=900):
  cmd = [sys.executable, os.path.abspath(__file__), "--child",
         json.dumps(dict(impl=impl, n2=n2, repeats=repeats,
                         compile_only=compile_only))]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        timeout=timeout)
  if proc.returncode != 0:
    raise RuntimeError(f"child {impl} 2N={n2} failed:\n{proc.stderr[-3000:]}")
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])


def gib(b):
  return b / 2**30


def interleaved(impls, n2, repeats, rounds):
  """Runs each impl `rounds` times, alternating; merges the timings."""
  merged = {}
  for _ in range(rounds):
    for impl in impls:
      r = run_child(impl, n2, repeats)
      m = merged.setdefault(impl, dict(r, times=[]))
      m["times"] += r["times"]
      m["rss_peak_bytes"] = max(m["rss_peak_bytes"], r["rss_peak_bytes"])
  for m in merged.values():
    m["median_s"] = statistics.median(m["times"])
  return merged


def part_a(args):
  budget = args.memory_budget_gb * 2**30
  print(f"\n(a) sslx nt_xent vs optax.losses.ntxent, d={D}, fwd+bwd, "
        f"optax fits if XLA's buffers <= {args.memory_budget_gb} GiB")
  fits = []
  for n2 in args.optax_sizes:
    r = run_child("optax", n2, 0, compile_only=True)
    ok = r["xla_bytes"] <= budget
    print(f"  optax 2N={n2:6d}: XLA buffers {gib(r['xla_bytes']):7.2f} GiB "
          f"-> {'fits' if ok else 'does not fit'}")
    if ok:
      fits.append(n2)
  if not fits:
    print("  optax fits at none of the sizes; nothing to time.")
    return {}
  n2 = max(fits)
  res = interleaved(["optax", "sslx"], n2, args.optax_repeats, args.rounds_a)
  o, s = res["optax"], res["sslx"]
  print(f"  2N={n2}: optax {o['median_s']:.3f} s, sslx {s['median_s']:.4f} s "
        f"-> sslx is {o['median_s'] / s['median_s']:.0f}x faster")
  print(f"  peak memory (xla): optax {gib(o['xla_bytes']):.2f} GiB, "
        f"sslx {gib(s['xla_bytes']):.3f} GiB "
        f"({o['xla_bytes'] / s['xla_bytes']:.0f}x less)")
  print(f"  peak memory (rss growth): optax {gib(o['rss_peak_bytes']):.2f} GiB, "
        f"sslx {gib(s['rss_peak_bytes']):.3f} GiB")
  return {"optax_largest_fit": n2, **res}


def part_b(args):
  print(f"\n(b) sslx nt_xent fwd+bwd vs its 3 matmuls, d={D}")
  out = {}
  for n2 in args.sizes:
    res = interleaved(["matmul", "sslx"], n2, args.repeats, args.rounds)
    m, s = res["matmul"], res["sslx"]
    matrix = 4 * n2 * n2
    flops = 3 * 2 * n2 * n2 * D
    print(f"  2N={n2:6d}: sslx {s['median_s']:.3f} s, matmuls "
          f"{m['median_s']:.3f} s ({flops / m['median_s'] / 1e9:.0f} GFLOP/s)"
          f" -> ratio {s['median_s'] / m['median_s']:.2f}x")
    print(f"            peak memory sslx: xla {gib(s['xla_bytes']):.2f} GiB = "
          f"{s['xla_bytes'] / matrix:.2f} x {MATRIX}; rss growth "
          f"{gib(s['rss_peak_bytes']):.2f} GiB = "
          f"{s['rss_peak_bytes'] / matrix:.2f} x {MATRIX}  "
          f"(matmuls: xla {m['xla_bytes'] / matrix:.2f} x, rss "
          f"{m['rss_peak_bytes'] / matrix:.2f} x)")
    print(f"            sslx times {[round(t, 3) for t in s['times']]}, "
          f"matmul times {[round(t, 3) for t in m['times']]}")
    out[n2] = res
  return out


def main():
  if len(sys.argv) == 3 and sys.argv[1] == "--child":
    spec = json.loads(sys.argv[2])
    print("RESULT" + json.dumps(child(**spec)), flush=True)
    return
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--part", choices=["a", "b", "ab"], default="ab")
  p.add_argument("--sizes", default="8192,16384",
                 help="2N values for (b), comma separated")
  p.add_argument("--optax_sizes", default="1024,2048,4096,8192",
                 help="2N candidates for (a)")
  p.add_argument("--memory_budget_gb", type=float, default=12.0,
                 help="(a): optax 'fits' if its XLA buffers are at most this")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--optax_repeats", type=int, default=2)
  p.add_argument("--rounds", type=int, default=2, help="rounds for (b)")
  p.add_argument("--rounds_a", type=int, default=1, help="rounds for (a)")
  p.add_argument("--json_out", default="")
  args = p.parse_args()
  args.sizes = [int(s) for s in args.sizes.split(",")]
  args.optax_sizes = [int(s) for s in args.optax_sizes.split(",")]
  import jax
  with open("/proc/meminfo") as f:
    mem_gib = {l.split(":")[0]: int(l.split()[1]) / 2**20 for l in f}
  print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, "
        f"{mem_gib['MemTotal']:.0f} GiB RAM ({mem_gib['MemAvailable']:.0f} "
        f"available), load average {os.getloadavg()[0]:.1f} at start")
  results = {}
  if "a" in args.part:
    results["a"] = part_a(args)
  if "b" in args.part:
    results["b"] = part_b(args)
  print(f"load average {os.getloadavg()[0]:.1f} at end")
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
