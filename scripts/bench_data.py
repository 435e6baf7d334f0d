"""Benchmark the device-resident sampler against a host numpy loader, and a WRN-28-2 step.

  python scripts/bench_data.py                       # CIFAR-10 shapes, ~3-6 min on 2 CPU cores
  python scripts/bench_data.py --unlabeled_pool=604388 --wrn_steps=0   # SVHN+extra pool size

All on generated CIFAR-10-shaped data (uint8 [N, 32, 32, 3]; 4000 labeled, 50000
unlabeled by default), for one FixMatch batch: 64 labeled + 448 unlabeled images.
Three things, timed in the same run on the same machine:

(a) device: ``sslx.data.sample_batch`` jitted on its own -- two epoch-permutation
    streams, index computation and the gather from the device-resident pools -- per
    step, including the dispatch of one jitted call and waiting for its result.
(b) host: what a conventional host loader does per step for the same batch with the
    same sampling semantics: next indices from per-epoch NumPy permutations, gather
    on the host (NumPy fancy indexing), ``jax.device_put`` of the four arrays,
    waiting until they are on the device.
(a') device, sort: the same as (a) but every pool permuted with
    ``jax.random.permutation`` (a sort of the whole pool per epoch the batch touches),
    the design sslx.data.sampler replaces with a Feistel walk for pools above 1024.
(c) model: forward + backward (``jax.value_and_grad``, BatchNorm in train mode) of
    ``create_model('wrn28_2', num_classes=10)`` on the images of a FixMatch step:
    64 labeled + 448 weak + 448 strong = 960 images (uint8 -> normalised float32 in
    the jitted function). This is the denominator of the "< 5% of a training step"
    claim; the real step also augments and updates, so it is an underestimate of the
    step and the reported fraction an overestimate.

Each figure is the median over --rounds rounds (rounds interleave (a) and (b), so
slow drift in the load of a shared machine affects both alike); compile time is
excluded (one warm-up call each).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from sslx.data.sampler import _mul_divmod, gather_rows, sample_batch

LABELED_BATCH = 64
UNLABELED_BATCH = 448
IMAGE_SHAPE = (32, 32, 3)


def _generate(num_labeled: int, num_unlabeled: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return {
      "labeled_images": rng.integers(0, 256, (num_labeled,) + IMAGE_SHAPE, dtype=np.uint8),
      "labeled_labels": rng.integers(0, 10, (num_labeled,), dtype=np.int32),
      "unlabeled_images": rng.integers(0, 256, (num_unlabeled,) + IMAGE_SHAPE, dtype=np.uint8),
      "unlabeled_labels": rng.integers(0, 10, (num_unlabeled,), dtype=np.int32),
  }


class HostLoader:
  """The baseline: per-epoch NumPy permutations, host gather, device_put."""

  def __init__(self, host_arrays, seed: int = 0):
    self.arrays = host_arrays
    self.rng = np.random.default_rng(seed)
    self.streams = {pool: (np.zeros(0, np.int64), 0) for pool in ("labeled", "unlabeled")}

  def _indices(self, pool: str, batch_size: int) -> np.ndarray:
    perm, pos = self.streams[pool]
    n = len(self.arrays[f"{pool}_labels"])
    out = []
    while batch_size:
      if pos == len(perm):
        perm, pos = self.rng.permutation(n), 0
      take = min(batch_size, len(perm) - pos)
      out.append(perm[pos:pos + take])
      pos, batch_size = pos + take, batch_size - take
    self.streams[pool] = (perm, pos)
    return np.concatenate(out)

  def next_batch(self):
    batch = {}
    for pool, size in (("labeled", LABELED_BATCH), ("unlabeled", UNLABELED_BATCH)):
      idx = self._indices(pool, size)
      batch[f"{pool}_images"] = self.arrays[f"{pool}_images"][idx]
      batch[f"{pool}_labels"] = self.arrays[f"{pool}_labels"][idx]
    return jax.block_until_ready(jax.device_put(batch))


def _sort_sample_batch(arrays, key, step):
  """(a'): per-epoch ``jax.random.permutation`` of the whole pool, same stream formula."""
  batch = {}
  for tag, (pool, size) in enumerate((("labeled", LABELED_BATCH),
                                      ("unlabeled", UNLABELED_BATCH))):
    n = arrays[f"{pool}_labels"].shape[0]
    epoch, offset = _mul_divmod(step.astype(jnp.uint32), size, n)
    offsets = offset + jnp.arange(size, dtype=jnp.uint32)
    num_epochs = (n + size - 2) // n + 1
    k = jax.random.fold_in(key, tag)
    perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(k, e), n))(
        epoch + jnp.arange(num_epochs, dtype=jnp.uint32))
    idx = perms[(offsets // n).astype(jnp.int32), (offsets % n).astype(jnp.int32)]
    batch[f"{pool}_images"] = gather_rows(arrays[f"{pool}_images"], idx)
    batch[f"{pool}_labels"] = gather_rows(arrays[f"{pool}_labels"], idx)
  return batch


def _time_per_step(fn, steps: int) -> float:
  start = time.perf_counter()
  for s in range(steps):
    fn(s)
  return (time.perf_counter() - start) / steps


def _wrn_step_fn():
  from sslx.models import create_model  # pylint: disable=import-outside-toplevel
  model = create_model("wrn28_2", num_classes=10)
  n = LABELED_BATCH + 2 * UNLABELED_BATCH
  variables = model.init(jax.random.key(0), jnp.zeros((2,) + IMAGE_SHAPE), train=False)
  params, model_state = variables["params"], {k: v for k, v in variables.items()
                                              if k != "params"}
  images = jax.random.randint(jax.random.key(1), (n,) + IMAGE_SHAPE, 0, 256).astype(jnp.uint8)
  labels = jax.random.randint(jax.random.key(2), (n,), 0, 10)
  mean, std = jnp.array([0.49, 0.48, 0.45]), jnp.array([0.25, 0.24, 0.26])

  @jax.jit
  def step(params, model_state, images, labels):
    def loss_fn(p):
      x = (images.astype(jnp.float32) / 255.0 - mean) / std
      out, new_state = model.apply({"params": p, **model_state}, x, train=True,
                                   mutable=list(model_state))
      logp = jax.nn.log_softmax(out["logits"])
      return -jnp.take_along_axis(logp, labels[:, None], 1).mean(), new_state
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, grads, new_state

  return lambda: jax.block_until_ready(step(params, model_state, images, labels)), n


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--labeled_pool", type=int, default=4000)
  parser.add_argument("--unlabeled_pool", type=int, default=50000)
  parser.add_argument("--steps", type=int, default=50, help="steps per round for (a), (b)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--wrn_steps", type=int, default=3, help="0 skips (c)")
  parser.add_argument("--json", default="", help="also write the results here")
  args = parser.parse_args()

  host = _generate(args.labeled_pool, args.unlabeled_pool)
  arrays = jax.device_put(host)
  key = jax.random.key(0)
  sampler = jax.jit(functools.partial(sample_batch, labeled_batch_size=LABELED_BATCH,
                                      unlabeled_batch_size=UNLABELED_BATCH))
  device_step = lambda s: jax.block_until_ready(sampler(arrays, key, jnp.int32(s)))
  sort_sampler = jax.jit(_sort_sample_batch)
  sort_step = lambda s: jax.block_until_ready(sort_sampler(arrays, key, jnp.int32(s)))
  loader = HostLoader(host)
  host_step = lambda s: loader.next_batch()
  device_step(0)  # compile
  sort_step(0)
  host_step(0)

  device_times, sort_times, host_times = [], [], []
  for r in range(args.rounds):
    device_times.append(_time_per_step(lambda s: device_step(r * args.steps + s), args.steps))
    sort_times.append(_time_per_step(lambda s: sort_step(r * args.steps + s), args.steps))
    host_times.append(_time_per_step(host_step, args.steps))
  result = {
      "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
      "cpu_count_visible": len(jax.devices()), "machine": platform.processor() or
      platform.machine(),
      "labeled_pool": args.labeled_pool, "unlabeled_pool": args.unlabeled_pool,
      "batch": f"{LABELED_BATCH} labeled + {UNLABELED_BATCH} unlabeled",
      "device_sampler_ms": 1e3 * statistics.median(device_times),
      "device_sort_sampler_ms": 1e3 * statistics.median(sort_times),
      "host_loader_ms": 1e3 * statistics.median(host_times),
      "device_sampler_ms_rounds": [round(1e3 * t, 3) for t in device_times],
      "device_sort_sampler_ms_rounds": [round(1e3 * t, 3) for t in sort_times],
      "host_loader_ms_rounds": [round(1e3 * t, 3) for t in host_times],
  }
  result["host_over_device"] = result["host_loader_ms"] / result["device_sampler_ms"]
  result["sort_over_device"] = result["device_sort_sampler_ms"] / result["device_sampler_ms"]

  if args.wrn_steps > 0:
    wrn_step, n = _wrn_step_fn()
    wrn_step()  # compile
    wrn_times = []
    for _ in range(args.wrn_steps):
      start = time.perf_counter()
      wrn_step()
      wrn_times.append(time.perf_counter() - start)
    result["wrn28_2_fwd_bwd_images"] = n
    result["wrn28_2_fwd_bwd_ms"] = 1e3 * statistics.median(wrn_times)
    result["wrn28_2_fwd_bwd_ms_runs"] = [round(1e3 * t, 1) for t in wrn_times]
    result["device_sampler_fraction_of_wrn_step"] = (
        result["device_sampler_ms"] / result["wrn28_2_fwd_bwd_ms"])
  print(json.dumps(result, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
