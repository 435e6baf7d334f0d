"""The multi-device XLA:CPU deadlock that ``sslx/dispatch.py`` prevents, in a few lines of JAX.

A data-parallel program with an all-reduce inside a loop, on 2 XLA:CPU devices, is queued
``--steps`` times before the host waits for it, with at most ``--depth`` calls in flight
(0 = unbounded, what plain JAX code does). Each case runs in a child process with a time
limit, so a hang is reported instead of waited out:

  python scripts/repro_cpu_deadlock.py
  # steps depth  result
  #    30     0  ok
  #    40     0  HUNG (XLA: "waiting for `all reduce ...` ... may be stuck")
  #   200     2  ok

Measured on the project's 2-core machine (jax 0.10.2): 30 queued calls always passed, 40
always hung, any bound passed (200 and 2,000 calls, also with the cores loaded).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import sys
import jax
jax.config.update("jax_num_cpu_devices", int(sys.argv[3]))
import jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from sslx.dispatch import Pacer
steps, depth = int(sys.argv[1]), int(sys.argv[2])
mesh = Mesh(np.array(jax.devices()), ("data",))
x = jax.device_put(jnp.ones((256, 256)), NamedSharding(mesh, P("data")))
w = jax.device_put(jnp.full((256, 256), 1e-3), NamedSharding(mesh, P()))

@jax.jit
def step(w, x):
  def body(i, w):  # the mean over the sharded batch is an all-reduce inside a while loop
    return w - 1e-3 * jnp.tanh(x @ w).mean(0)[None, :]
  return jax.lax.fori_loop(0, 3, body, w)

jax.block_until_ready(step(w, x))
pacer = Pacer(depth) if depth > 0 else None
for _ in range(steps):
  w = step(w, x)
  if pacer is not None:
    pacer.admit(w)
jax.block_until_ready(w)
print("ok")
"""


def run_case(steps: int, depth: int, devices: int, timeout: float) -> str:
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=repo)
  env.pop("XLA_FLAGS", None)
  try:
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(depth), str(devices)],
                         env=env, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return f"HUNG (no result within {timeout:g} s)"
  if out.returncode == 0 and out.stdout.strip().endswith("ok"):
    return "ok"
  stuck = "may be stuck" in out.stderr or "Termination timeout" in out.stderr
  return f"{'HUNG' if stuck else 'FAILED'} (exit {out.returncode})"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--cases", default="30:0,40:0,200:0,200:2,2000:2",
                      help="comma-separated steps:depth pairs (depth 0 = unbounded)")
  parser.add_argument("--devices", type=int, default=2)
  parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
  args = parser.parse_args()
  print(f"# {args.devices} XLA:CPU devices, {os.cpu_count()} cores")
  print("# steps depth  result")
  for case in args.cases.split(","):
    steps, depth = (int(v) for v in case.split(":"))
    print(f"{steps:7d} {depth:5d}  {run_case(steps, depth, args.devices, args.timeout)}",
          flush=True)


if __name__ == "__main__":
  main()
