"""Device-resident sampling: the dataset lives on the accelerators, batches are drawn in-step.

:func:`to_device` places an :class:`~sslx.data.SSLDataset` on the devices once.
Inside the jitted train step, :func:`sample_batch` draws a labeled and an unlabeled
batch from ``(key, step)`` alone, so no host work happens per step and a resumed run
draws exactly the batches the interrupted one would have.

The stream of each pool is an endless sequence of epochs. Position ``p`` of the stream
(``p = step * batch_size + j`` for element ``j`` of the batch at ``step``) reads

    epoch e = p // pool_size,   index = permutation_e(p % pool_size),

where ``permutation_e`` is a pseudorandom permutation of ``[0, pool_size)`` keyed by
``fold_in(key, e)``, so every example is visited exactly once per epoch, each epoch in a
fresh order, and a batch larger than its pool (64 labeled per step from 40 labels)
simply spans several epochs.

For pools above ``SORT_MAX_POOL`` (1024) examples the permutation is evaluated only
at the batch's positions, never materialised: an 8-round Feistel network with
cycle-walking into ``[0, pool_size)`` (the construction behind grain's
``index_shuffle``; Luby & Rackoff 1988; Black & Rogaway, "Ciphers with arbitrary finite
domains", 2002), so its cost grows with the batch, not the pool. Smaller pools use the
exact ``jax.random.permutation``, a sort of the pool per epoch touched: for a 50k pool
that sort made sampling ~130x slower than the Feistel walk on CPU
(``scripts/bench_data.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DEFAULT_MAX_REPLICATED_BYTES = 2 * 2**30
POOLS = ("labeled", "unlabeled", "test")


# ----------------------------------------------------------------------------- placement


def to_device(ds, mesh: jax.sharding.Mesh, *,
              max_replicated_bytes: int = DEFAULT_MAX_REPLICATED_BYTES) -> dict[str, jax.Array]:
  """Places a dataset's arrays on the devices of ``mesh``, once.

  Labels (int32, small) are always replicated (``NamedSharding(mesh, P())``). An image
  array is replicated when it takes at most ``max_replicated_bytes``; a larger one is
  sharded on its first axis over all mesh axes, zero-padded to a multiple of
  ``mesh.size`` rows. **The number of examples of a pool is therefore
  ``labels.shape[0]``**, never ``images.shape[0]``; :func:`sample_batch` only reads
  rows below it. Works multi-host (every process holds the same host arrays).

  Args:
    ds: an :class:`sslx.data.SSLDataset` (or anything with ``{labeled, unlabeled,
      test}_{images, labels}`` attributes).
    mesh: the device mesh.
    max_replicated_bytes: replication threshold per image array
      (``config.data.max_replicated_mib * 2**20``).

  Returns:
    ``{'labeled_images', 'labeled_labels', 'unlabeled_images', 'unlabeled_labels',
    'test_images', 'test_labels'}`` as ``jax.Array``. Pass this dict to the jitted step
    as an argument (not a closure, which would embed the data in the program).
  """
  if max_replicated_bytes < 0:
    raise ValueError(f"max_replicated_bytes must be >= 0, got {max_replicated_bytes}.")
  out = {}
  for pool in POOLS:
    images = np.asarray(getattr(ds, f"{pool}_images"))
    labels = np.asarray(getattr(ds, f"{pool}_labels"))
    if images.shape[:1] != labels.shape:
      raise ValueError(f"{pool}_images has {images.shape[:1]} rows but {pool}_labels has "
                       f"shape {labels.shape}.")
    out[f"{pool}_labels"] = _place(labels, mesh, shard=False)
    out[f"{pool}_images"] = _place(images, mesh, shard=images.nbytes > max_replicated_bytes)
  return out


def _place(x: np.ndarray, mesh: jax.sharding.Mesh, *, shard: bool) -> jax.Array:
  if not shard or mesh.size == 1 or x.shape[0] == 0:
    sharding = NamedSharding(mesh, P())
  else:
    pad = -x.shape[0] % mesh.size
    if pad:
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    sharding = NamedSharding(mesh, P(tuple(mesh.axis_names)))
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


# ----------------------------------------------------------------------------- sampling


def sample_indices(key: jax.Array, step: jax.Array | int, *, batch_size: int,
                   pool_size: int) -> jax.Array:
  """Indices of the batch at ``step`` in an endless stream of per-epoch permutations.

  Element ``j`` of the batch is stream position ``p = step * batch_size + j``; it reads
  ``permutation_e(p % pool_size)`` with ``e = p // pool_size``, where
  ``permutation_e = keyed_permutation(jax.random.fold_in(key, e), ., pool_size)`` (see
  :func:`keyed_permutation`). The integer arithmetic is exact for every
  ``step < 2**31`` (no 64-bit types needed). Cost: O(batch_size), independent of the
  pool size.

  Args:
    key: the sampling key of the whole run, **the same at every step** (e.g.
      ``fold_in(base_key, SAMPLING)``), not a per-step key: the permutation of an epoch
      must not change from one step to the next.
    step: integer scalar, the global step (``0 <= step < 2**31``); may be traced.
    batch_size: static, ``>= 1``; may exceed ``pool_size``.
    pool_size: static, ``1 <= pool_size < 2**31``.

  Returns:
    int32 ``[batch_size]`` indices in ``[0, pool_size)``.

  Example::

    idx = sample_indices(key, 3, batch_size=64, pool_size=40)  # spans epochs 4..6
  """
  batch_size, pool_size = _static_int(batch_size, "batch_size"), _static_int(pool_size,
                                                                              "pool_size")
  if pool_size >= 2**31 or batch_size >= 2**31:
    raise ValueError(f"pool_size and batch_size must be < 2**31, got {pool_size}, {batch_size}.")
  step = jnp.asarray(step)
  if step.ndim != 0 or not jnp.issubdtype(step.dtype, jnp.integer):
    raise ValueError(f"step must be an integer scalar, got {step.dtype}{list(step.shape)}.")
  base_epoch, base_offset = _mul_divmod(step.astype(jnp.uint32), batch_size, pool_size)
  offsets = base_offset + jnp.arange(batch_size, dtype=jnp.uint32)  # < pool + batch < 2**32
  rel_epoch = (offsets // pool_size).astype(jnp.int32)
  in_epoch = offsets % pool_size
  num_epochs = (pool_size + batch_size - 2) // pool_size + 1  # max rel_epoch + 1
  epochs = base_epoch + jnp.arange(num_epochs, dtype=jnp.uint32)
  epoch_keys = jax.vmap(lambda e: jax.random.fold_in(key, e))(epochs)
  if pool_size <= SORT_MAX_POOL:
    perms = jax.vmap(lambda k: jax.random.permutation(k, pool_size))(epoch_keys)
    return perms[rel_epoch, in_epoch.astype(jnp.int32)].astype(jnp.int32)
  round_keys = jax.vmap(_round_keys)(epoch_keys)
  return _feistel_walk(in_epoch, round_keys[rel_epoch], pool_size).astype(jnp.int32)


# Pools up to this size are permuted exactly (jax.random.permutation, a sort of the
# pool per epoch touched: cheap at this size); larger ones by the Feistel walk, whose
# cost does not grow with the pool. On tiny domains a few Feistel rounds are visibly
# non-uniform, on large ones indistinguishable from uniform in our tests.
SORT_MAX_POOL = 1024
FEISTEL_ROUNDS = 8


def keyed_permutation(key: jax.Array, x: jax.Array, size: int) -> jax.Array:
  """``perm(x)`` for a pseudorandom permutation ``perm`` of ``[0, size)`` keyed by ``key``.

  A balanced Feistel network on ``2h`` bits (``2**(2h) >= size``, at most ``4 size``)
  with :data:`FEISTEL_ROUNDS` rounds ``(L, R) -> (R, L ^ F_k(R))``,
  ``F_k(R) = fmix32(R ^ k) mod 2**h`` (MurmurHash3's finaliser; round keys ``k`` from
  ``jax.random.bits(key)``), applied repeatedly until the value falls in
  ``[0, size)`` (cycle-walking, which keeps it a bijection of ``[0, size)``).

  Args:
    key: a JAX PRNG key.
    x: uint32/int32 ``[n]`` values in ``[0, size)``.
    size: static, ``1 <= size < 2**31``.

  Returns:
    uint32 ``[n]``, a bijection of ``[0, size)`` applied elementwise.
  """
  x = jnp.asarray(x).astype(jnp.uint32)
  keys = jnp.broadcast_to(_round_keys(key), x.shape + (FEISTEL_ROUNDS,))
  return _feistel_walk(x, keys, size)


def _round_keys(key: jax.Array) -> jax.Array:
  return jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)


def _half_bits(size: int) -> int:
  return max(1, math.ceil(math.ceil(math.log2(max(size, 2))) / 2))


def _fmix32(h: jax.Array) -> jax.Array:
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _feistel_walk(x: jax.Array, round_keys: jax.Array, size: int) -> jax.Array:
  """Cycle-walking Feistel permutation of ``[0, size)``; ``round_keys`` is ``[n, R]``."""
  half = _half_bits(size)
  mask = jnp.uint32((1 << half) - 1)

  def feistel(v):
    left, right = v >> half, v & mask
    for r in range(round_keys.shape[-1]):
      left, right = right, left ^ (_fmix32(right ^ round_keys[..., r]) & mask)
    return (left << half) | right

  def walk(v):
    return jnp.where(v < size, v, feistel(v))

  y = feistel(x)
  if (1 << (2 * half)) == size:
    return y  # the domain is exactly [0, size): no walking needed
  return jax.lax.while_loop(lambda v: jnp.any(v >= size), walk, y)


def _mul_divmod(step: jax.Array, multiplier: int, divisor: int) -> tuple[jax.Array, jax.Array]:
  """Exact ``divmod(step * multiplier, divisor)`` for uint32 ``step < 2**31``.

  Binary long multiplication modulo ``divisor``: the remainder stays below
  ``divisor < 2**31``, so doubling it never overflows uint32; the quotient is the
  epoch count, far below ``2**32`` in any real run.
  """
  m_quot, m_rem = jnp.uint32(multiplier // divisor), jnp.uint32(multiplier % divisor)
  d = jnp.uint32(divisor)

  def add_bit(i, carry):  # (q, r) <- 2 (q, r) + bit_i(step) * multiplier, r kept < d
    quot, rem = carry
    quot, rem = quot * 2, rem * 2
    wrap = rem >= d
    quot, rem = quot + wrap.astype(jnp.uint32), jnp.where(wrap, rem - d, rem)
    bit = (step >> (30 - i).astype(jnp.uint32)) & 1
    quot, rem = quot + bit * m_quot, rem + bit * m_rem
    wrap = rem >= d
    return quot + wrap.astype(jnp.uint32), jnp.where(wrap, rem - d, rem)

  zero = jnp.zeros((), jnp.uint32)
  quot, rem = jax.lax.fori_loop(0, 31, add_bit, (zero, zero))
  return quot, rem


def sample_batch(arrays: Mapping[str, jax.Array], key: jax.Array, step: jax.Array | int, *,
                 labeled_batch_size: int, unlabeled_batch_size: int) -> dict[str, jax.Array]:
  """Draws the batch at ``step`` from device-resident pools (call inside the jitted step).

  The labeled and unlabeled pools are sampled independently with
  ``fold_in(key, 0)`` and ``fold_in(key, 1)`` by :func:`sample_indices`, then gathered.

  Args:
    arrays: the dict :func:`to_device` returns (pool sizes are read from the label
      arrays' static shapes).
    key: the run's sampling key, the same at every step (see :func:`sample_indices`).
    step: int32 scalar global step.
    labeled_batch_size: static; 0 draws no labeled batch.
    unlabeled_batch_size: static; 0 draws no unlabeled batch.

  Returns:
    ``labeled_images`` uint8 ``[labeled_batch_size, H, W, C]``, ``labeled_labels`` int32
    ``[labeled_batch_size]``, and likewise ``unlabeled_images``/``unlabeled_labels``
    (true labels or -1, for diagnostics only); a pool with batch size 0 has no keys.
    The outputs are replicated; constrain them to the batch sharding
    (``jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P('data')))``) in
    the step.

  Example::

    batch = sample_batch(arrays, sample_key, state.step,
                         labeled_batch_size=64, unlabeled_batch_size=448)
  """
  labeled_batch_size = _static_int(labeled_batch_size, "labeled_batch_size", allow_zero=True)
  unlabeled_batch_size = _static_int(unlabeled_batch_size, "unlabeled_batch_size",
                                     allow_zero=True)
  if labeled_batch_size == 0 and unlabeled_batch_size == 0:
    raise ValueError("labeled_batch_size and unlabeled_batch_size are both 0: nothing to draw.")
  requests = []
  for tag, (pool, batch_size) in enumerate(
      [("labeled", labeled_batch_size), ("unlabeled", unlabeled_batch_size)]):
    if batch_size == 0:
      continue
    images, labels = arrays[f"{pool}_images"], arrays[f"{pool}_labels"]
    pool_size = labels.shape[0]
    if pool_size == 0:
      raise ValueError(
          f"{pool}_batch_size={batch_size} but the {pool} pool is empty (see "
          "data.unlabeled_pool / data.extra_unlabeled / data.num_labels).")
    if images.shape[0] < pool_size:
      raise ValueError(f"{pool}_images has {images.shape[0]} rows, fewer than the "
                       f"{pool_size} labels.")
    requests.append((tag, pool, batch_size, images, labels))
  batch = {}
  for tag, pool, batch_size, images, labels in requests:
    idx = sample_indices(jax.random.fold_in(key, tag), step, batch_size=batch_size,
                         pool_size=labels.shape[0])
    batch[f"{pool}_images"] = gather_rows(images, idx)
    batch[f"{pool}_labels"] = gather_rows(labels, idx)
    batch[f"{pool}_indices"] = idx.astype(jnp.int32)  # positions in the pool (deep LP reads them)
  return batch


def gather_rows(x: jax.Array, idx: jax.Array) -> jax.Array:
  """``x[idx]`` along the first axis, replicated output, for any sharding of ``x``.

  Under a mesh with Explicit axes, a gather from an array sharded on its first axis
  needs its output sharding spelled out; we ask for a replicated result.
  """
  mesh = getattr(getattr(jax.typeof(x), "sharding", None), "mesh", None)
  out_sharding = None
  if mesh is not None and not mesh.empty and any(
      t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
    out_sharding = NamedSharding(mesh, P())
  return x.at[idx].get(mode="promise_in_bounds", out_sharding=out_sharding)


def _static_int(value, name: str, *, allow_zero: bool = False) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be a static Python int, got {type(value).__name__} "
                     f"{value!r}.")
  value = int(value)
  if value < 0 or (value == 0 and not allow_zero):
    raise ValueError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}.")
  return value


def epoch_of(step: int, *, batch_size: int, pool_size: int) -> float:
  """Host helper: how many passes over a pool ``step`` steps make (for logging)."""
  return step * batch_size / pool_size if pool_size else math.inf
