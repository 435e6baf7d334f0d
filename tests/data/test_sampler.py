"""Device-resident sampling: epochs, determinism/resume, exact integer math, placement."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from sslx.data.sampler import (FEISTEL_ROUNDS, SORT_MAX_POOL, keyed_permutation, sample_batch,
                               sample_indices, to_device)

KEY = jax.random.key(42)


@functools.lru_cache(maxsize=None)
def _stream_fn(batch_size, pool_size):
  """Jitted: steps [S] -> indices [S, batch_size] (one compile per shape)."""
  return jax.jit(jax.vmap(
      lambda key, s: sample_indices(key, s, batch_size=batch_size, pool_size=pool_size),
      in_axes=(None, 0)))


def _stream(batch_size, pool_size, steps, key=KEY):
  return np.asarray(_stream_fn(batch_size, pool_size)(key, jnp.asarray(steps, jnp.int32)))


@pytest.mark.parametrize("batch_size,pool_size", [
    (7, 20),     # pool not a multiple of the batch: batches straddle epochs
    (64, 40),    # batch larger than the pool (64 labeled per step from 40 labels)
    (1, 3),
    (300, 2000),  # above SORT_MAX_POOL: the Feistel walk
])
def test_every_example_once_per_epoch(batch_size, pool_size):
  num_steps = -(-4 * pool_size // batch_size)  # at least 4 epochs
  stream = _stream(batch_size, pool_size, np.arange(num_steps)).reshape(-1)
  assert stream.dtype == np.int32
  epochs = [stream[e * pool_size:(e + 1) * pool_size] for e in range(4)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(pool_size))
  if pool_size >= 5:
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh order each epoch


def _np_fmix32(h):
  h ^= h >> 16
  h = (h * 0x85EBCA6B) & 0xFFFFFFFF
  h ^= h >> 13
  h = (h * 0xC2B2AE35) & 0xFFFFFFFF
  return h ^ (h >> 16)


def _np_keyed_permutation(round_keys, x, n):
  """Independent Python-int implementation of the documented Feistel walk."""
  half = max(1, -(-max(1, (max(n, 2) - 1).bit_length()) // 2))
  mask = (1 << half) - 1

  def feistel(v):
    left, right = v >> half, v & mask
    for k in round_keys:
      left, right = right, left ^ (_np_fmix32(right ^ int(k)) & mask)
    return (left << half) | right

  y = feistel(x)
  while y >= n:
    y = feistel(y)
  return y


@functools.lru_cache(maxsize=None)
def _perm_fn(pool_size):
  return jax.jit(lambda key, e: jax.random.permutation(jax.random.fold_in(key, e), pool_size))


def _expected_indices(key, step, batch_size, pool_size):
  """The documented formula with exact Python/NumPy int64 positions."""
  positions = step * batch_size + np.arange(batch_size, dtype=np.int64)
  epochs, offsets = positions // pool_size, positions % pool_size
  want = np.empty(batch_size, np.int64)
  for e in np.unique(epochs):
    rows = epochs == e
    if pool_size <= SORT_MAX_POOL:
      want[rows] = np.asarray(_perm_fn(pool_size)(key, jnp.uint32(e)))[offsets[rows]]
    else:
      round_keys = np.asarray(jax.random.bits(jax.random.fold_in(key, jnp.uint32(e)),
                                              (FEISTEL_ROUNDS,), jnp.uint32))
      want[rows] = [_np_keyed_permutation(round_keys, int(o), pool_size) for o in offsets[rows]]
  return want


@pytest.mark.parametrize("batch_size,pool_size", [(448, 50_000), (64, 40)])
def test_matches_the_documented_formula_exactly_at_large_steps(batch_size, pool_size):
  steps = [0, 111, 2**31 - 1]  # the last one overflows int32 positions by far
  got = _stream(batch_size, pool_size, steps)
  for row, step in zip(got, steps):
    np.testing.assert_array_equal(row, _expected_indices(KEY, step, batch_size, pool_size))


def test_keyed_permutation_is_a_bijection_and_looks_uniform():
  for n in (1, 2, 3, 1025, 4096, 5000):  # 4096 = 2**12: no cycle-walking needed
    y = np.asarray(keyed_permutation(KEY, jnp.arange(n), n))
    np.testing.assert_array_equal(np.sort(y), np.arange(n))
  n, num_keys, bins = 5000, 2000, 10
  xs = jnp.array([0, 1, n // 2, n - 1])
  values = np.asarray(jax.jit(jax.vmap(lambda k: keyed_permutation(k, xs, n)))(
      jax.random.split(jax.random.key(7), num_keys)))
  for column in values.T:  # where a given position lands, over keys: uniform over bins
    counts = np.bincount(column * bins // n, minlength=bins)
    chi2 = ((counts - num_keys / bins) ** 2 / (num_keys / bins)).sum()
    assert chi2 < 30, chi2  # 9 degrees of freedom: p < 1e-3
  assert abs(np.corrcoef(values[:, 0], values[:, 1])[0, 1]) < 0.1


def test_deterministic_and_identical_after_resume_mid_epoch():
  # a run of 12 steps vs. a run interrupted after step 4 and resumed in a fresh function
  full = _stream(7, 20, np.arange(12))
  resumed_fn = jax.jit(lambda s: sample_indices(KEY, s, batch_size=7, pool_size=20))
  resumed = np.stack([np.asarray(resumed_fn(jnp.int32(s))) for s in range(5, 12)])
  np.testing.assert_array_equal(full[5:], resumed)  # step 5 starts mid-epoch (35 % 20)
  eager = np.asarray(sample_indices(KEY, 7, batch_size=7, pool_size=20))  # no jit
  np.testing.assert_array_equal(full[7], eager)
  other = _stream(7, 20, np.arange(12), key=jax.random.key(43))
  assert not np.array_equal(full, other)


def test_sample_indices_rejects_bad_arguments():
  with pytest.raises(ValueError, match="pool_size must be >= 1, got 0"):
    sample_indices(KEY, 0, batch_size=4, pool_size=0)
  with pytest.raises(ValueError, match="batch_size must be a static Python int"):
    sample_indices(KEY, 0, batch_size=4.0, pool_size=10)
  with pytest.raises(ValueError, match="step must be an integer scalar"):
    sample_indices(KEY, jnp.zeros((2,), jnp.int32), batch_size=4, pool_size=10)


def _arrays(num_labeled=10, num_unlabeled=1030, num_test=6):
  """Pools whose images encode their label: image == label % 256 everywhere.

  The labeled pool uses the exact-permutation path, the unlabeled one (> SORT_MAX_POOL)
  the Feistel walk.
  """
  def pool(n, offset):
    ids = np.arange(n) + offset
    return np.broadcast_to(ids[:, None, None, None] % 256, (n, 2, 2, 1)).astype(np.uint8), \
        ids.astype(np.int32)
  li, ll = pool(num_labeled, 0)
  ui, ul = pool(num_unlabeled, 100)
  ti, tl = pool(num_test, 200)
  return dict(labeled_images=li, labeled_labels=ll, unlabeled_images=ui,
              unlabeled_labels=ul, test_images=ti, test_labels=tl)


class _DS:
  def __init__(self, arrays):
    self.__dict__.update(arrays)


def test_sample_batch_gathers_matching_rows_and_keys():
  arrays = {k: jnp.asarray(v) for k, v in _arrays().items()}
  fn = jax.jit(functools.partial(sample_batch, labeled_batch_size=16, unlabeled_batch_size=24))
  for step in (0, 3):
    batch = fn(arrays, KEY, jnp.int32(step))
    assert set(batch) == {"labeled_images", "labeled_labels", "labeled_indices",
                          "unlabeled_images", "unlabeled_labels", "unlabeled_indices"}
    assert batch["labeled_images"].shape == (16, 2, 2, 1)
    assert batch["labeled_images"].dtype == jnp.uint8
    assert batch["labeled_labels"].dtype == jnp.int32
    for pool in ("labeled", "unlabeled"):
      images, labels = np.asarray(batch[f"{pool}_images"]), np.asarray(batch[f"{pool}_labels"])
      np.testing.assert_array_equal(images[:, 0, 0, 0], labels % 256)  # one row's image+label
    # labeled and unlabeled pools use fold_in(key, 0) and fold_in(key, 1)
    np.testing.assert_array_equal(
        batch["unlabeled_labels"],
        _expected_indices(jax.random.fold_in(KEY, 1), step, 24, 1030) + 100)
    np.testing.assert_array_equal(
        batch["labeled_labels"], _expected_indices(jax.random.fold_in(KEY, 0), step, 16, 10))
    np.testing.assert_array_equal(batch["unlabeled_indices"], batch["unlabeled_labels"] - 100)
  only_labeled = jax.jit(functools.partial(
      sample_batch, labeled_batch_size=16, unlabeled_batch_size=0))(arrays, KEY, jnp.int32(3))
  assert set(only_labeled) == {"labeled_images", "labeled_labels", "labeled_indices"}
  np.testing.assert_array_equal(only_labeled["labeled_labels"], batch["labeled_labels"])


def test_sample_batch_errors():
  arrays = {k: jnp.asarray(v) for k, v in _arrays(num_unlabeled=0).items()}
  with pytest.raises(ValueError, match="unlabeled_batch_size=8 but the unlabeled pool is empty"):
    sample_batch(arrays, KEY, 0, labeled_batch_size=4, unlabeled_batch_size=8)
  with pytest.raises(ValueError, match="both 0"):
    sample_batch(arrays, KEY, 0, labeled_batch_size=0, unlabeled_batch_size=0)


def test_to_device_single_device_replicates():
  mesh = jax.make_mesh((1,), ("data",))
  host = _arrays()
  arrays = to_device(_DS(host), mesh)
  assert set(arrays) == set(host)
  for k, v in arrays.items():
    assert v.sharding.spec == P() and v.dtype == host[k].dtype
    np.testing.assert_array_equal(np.asarray(v), host[k])
  with pytest.raises(ValueError, match="unlabeled_images has"):
    to_device(_DS(dict(host, unlabeled_labels=host["unlabeled_labels"][:5])), mesh)


_CHILD = textwrap.dedent("""
    import json, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType
    from tests.data.test_sampler import _arrays, _DS
    from sslx.data.sampler import sample_batch, to_device
    assert jax.device_count() == 4
    host = _arrays()
    out = {}
    for axis_type, threshold in ((AxisType.Auto, 2**31), (AxisType.Auto, 0),
                                 (AxisType.Explicit, 0)):  # 0: every image array sharded
      mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type,))
      if True:
        arrays = to_device(_DS(host), mesh, max_replicated_bytes=threshold)
        step = jax.jit(lambda a, s: sample_batch(a, jax.random.key(42), s,
                                                 labeled_batch_size=16,
                                                 unlabeled_batch_size=24))
        batches = [step(arrays, jnp.int32(s)) for s in (0, 3)]
        out[f"{axis_type.name}-{threshold}"] = dict(
            spec=str(arrays["unlabeled_images"].sharding.spec),
            label_spec=str(arrays["unlabeled_labels"].sharding.spec),
            rows=arrays["unlabeled_images"].shape[0],
            shard_rows=[s.data.shape[0] for s in arrays["unlabeled_images"].addressable_shards],
            batches=[{k: np.asarray(v).tolist() for k, v in b.items()} for b in batches])
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_device_run():
  """Starts the 4-device child at module start so it overlaps the other tests."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.Popen([sys.executable, "-c", _CHILD], env=env, cwd=root,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  yield proc
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


@pytest.fixture(autouse=True)
def _start_child_early(request):
  if "four_device_run" not in request.fixturenames:
    request.getfixturevalue("four_device_run")


def test_to_device_four_devices_replicated_and_sharded_agree(four_device_run):
  stdout, stderr = four_device_run.communicate(timeout=300)
  assert four_device_run.returncode == 0, stderr[-3000:]
  result = json.loads(stdout.split("RESULT", 1)[1])
  assert len(result) == 3
  arrays = {k: jnp.asarray(v) for k, v in _arrays().items()}
  want = [{k: np.asarray(v).tolist() for k, v in sample_batch(
      arrays, KEY, s, labeled_batch_size=16, unlabeled_batch_size=24).items()} for s in (0, 3)]
  for name, r in result.items():
    assert r["batches"] == want, name  # same batches on 1 or 4 devices, either placement
    assert r["label_spec"] == "P()"
    if name.endswith("-0"):
      assert r["spec"] == "P('data',)" and r["rows"] == 1032  # 1030 rows padded to 4 x 258
      assert r["shard_rows"] == [258] * 4
    else:
      assert r["spec"] == "P()" and r["rows"] == 1030
