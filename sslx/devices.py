"""How many XLA:CPU devices a CPU-only run splits its batch across.

XLA:CPU runs one device's program with one intra-op thread pool, and a ResNet step
keeps only about 1.3 of a 2-core machine's cores busy that way (element-wise fusions,
BatchNorm reductions and most convolution glue run on one thread). The trainer is
data-parallel already, so the cheap fix is more devices: with one XLA:CPU device per
core, each device runs its share of the batch on its own thread and the cores stay
busy. On the project's 2-core CPU the FixMatch WRN-28-2 step went from 0.96x to 1.15x a
PyTorch reference's speed (``scripts/bench_step.py``, BENCHMARKS.md). The math is the
trainer's usual data parallelism: BatchNorm statistics, losses and gradients are over
the global batch, so a run on 2 CPU devices matches 1 device up to float rounding.

``python -m sslx.main`` calls :func:`use_cpu_devices` (flag ``--cpu_devices``) before
JAX starts. Library users who want the same call it right after ``import jax``. GPU/TPU
runs use the accelerator's devices; where one is expected (a JAX GPU/TPU plugin is
installed, or ``JAX_PLATFORMS`` names one first) the automatic count is 1.
"""

from __future__ import annotations

import importlib.util
import os
import re

import jax

_FORCED_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def available_cores() -> int:
  """CPU cores this process may run on (its affinity mask, not the machine's count)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                        "jax_rocm7_plugin", "libtpu")


def accelerator_expected() -> bool:
  """True when JAX will pick a GPU/TPU (a plugin is installed and JAX_PLATFORMS allows it).

  Decided without starting JAX's backends, which would fix the CPU device count.
  """
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() not in ("cpu", "")
  return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_PLUGINS)


def auto_cpu_devices(batch_sizes, cores: int | None = None) -> int:
  """The most devices, at most one per core, that every batch size divides across.

  1 when a GPU/TPU is expected (:func:`accelerator_expected`): the trainer runs on the
  accelerator's devices, and the CPU needs no more than its default one.
  """
  if cores is None:
    if accelerator_expected():
      return 1
    cores = available_cores()
  sizes = [b for b in batch_sizes if b]
  for n in range(max(1, cores), 0, -1):
    if all(b % n == 0 for b in sizes):
      return n
  return 1


def config_batch_sizes(config) -> list[int]:
  """The batch sizes that must divide across devices (``config.device_errors``' list).

  Values that are not positive ints are left out: the config's validation reports them
  (with the field's name) once the run starts.
  """
  ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
  sizes = [config.batch_size, config.eval_batch_size]
  if ok(config.batch_size) and ok(config.unlabeled_ratio):
    sizes.insert(1, config.batch_size * config.unlabeled_ratio)
  return [b for b in sizes if ok(b)]


def use_cpu_devices(count: int) -> int:
  """Makes the CPU backend expose ``count`` devices; call before JAX's first operation.

  Returns the count in effect. ``XLA_FLAGS=--xla_force_host_platform_device_count=N``,
  when set, wins (tests and scripts use it to simulate N devices) and is returned.
  Raises ``ValueError`` for a count below 1 and ``RuntimeError`` (JAX's) if JAX's
  backends have already started.
  """
  forced = _FORCED_COUNT.search(os.environ.get("XLA_FLAGS", ""))
  if forced:
    return int(forced.group(1))
  if isinstance(count, bool) or not isinstance(count, int) or count < 1:
    raise ValueError(f"cpu_devices must be an int >= 1, got {count!r}")
  jax.config.update("jax_num_cpu_devices", count)
  return count
