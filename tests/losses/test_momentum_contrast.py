"""Tests for sslx.losses.momentum_contrast (MoCo v3's InfoNCE).

Against the official builder.py formula rewritten in float64 numpy, hand values, jit ==
eager, gradients, invariances, errors; and one child process with 4 simulated CPU devices
checking that `axis_name` inside `jax.shard_map` (keys all-gathered) gives the
single-device value and gradient of the whole batch.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sslx.losses import moco_enqueue, moco_infonce, moco_v2_infonce


def _pair(n=10, d=6, seed=0):
  rng = np.random.default_rng(seed)
  k = rng.normal(size=(n, d))
  q = k + 0.8 * rng.normal(size=(n, d))
  return q.astype(np.float32), k.astype(np.float32)


def _official(q, k, t):
  """moco-v3 builder.py: normalize q, k; logits = q @ k.T / T; CrossEntropy(logits,
  arange(N)) * (2 * T)."""
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
  k /= np.maximum(np.linalg.norm(k, axis=1, keepdims=True), 1e-12)
  logits = q @ k.T / t
  m = logits.max(1, keepdims=True)
  log_softmax = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
  return -np.mean(np.diagonal(log_softmax)) * 2 * t


@pytest.fixture(scope="module")
def jit_loss():
  return jax.jit(lambda q, k, t: moco_infonce(q, k, temperature=t))


def test_matches_the_official_formula(jit_loss):
  for seed, t in ((0, 1.0), (1, 0.2), (2, 0.05)):
    q, k = _pair(seed=seed)
    np.testing.assert_allclose(jit_loss(q, k, t), _official(q, k, t), rtol=1e-5)
  q, k = _pair()
  np.testing.assert_allclose(moco_infonce(q, k), _official(q, k, 1.0), rtol=1e-5)  # default T
  np.testing.assert_allclose(jit_loss(q, k, 1.0), moco_infonce(q, k), rtol=1e-6)


def test_hand_values(jit_loss):
  e = jnp.eye(2)
  # Logits [[1/T, 0], [0, 1/T]]: CE log(1 + exp(-1/T)), times 2T.
  np.testing.assert_allclose(jit_loss(e, e, 1.0), 2 * np.log1p(np.exp(-1.0)), rtol=1e-6)
  np.testing.assert_allclose(jit_loss(e, 3 * e, 0.5), np.log1p(np.exp(-2.0)), rtol=1e-6)
  # One image: its key is the only candidate, the loss is 0 whatever the angle.
  np.testing.assert_allclose(jit_loss(jnp.array([[1.0, 2.0]]), jnp.array([[-3.0, 1.0]]), 0.2),
                             0.0, atol=1e-7)


def test_invariances_and_gradients(jit_loss):
  q, k = _pair(seed=3)
  base = jit_loss(q, k, 0.2)
  perm = np.random.default_rng(0).permutation(len(q))
  np.testing.assert_allclose(jit_loss(q[perm], k[perm], 0.2), base, rtol=1e-5)
  assert abs(float(jit_loss(q[perm], k, 0.2) - base)) > 1e-1  # pairs matter
  # Not symmetric in (q, k): the softmax runs over keys (columns) only.
  assert abs(float(jit_loss(k, q, 0.2) - base)) > 1e-4
  scale = np.arange(1, len(q) + 1, dtype=np.float32)[:, None]
  np.testing.assert_allclose(jit_loss(q * scale, k / scale, 0.2), base, rtol=1e-5)
  # Keys get no gradient (the momentum encoder is not trained by the loss).
  assert float(jnp.abs(jax.grad(lambda x: moco_infonce(q, x))(k)).sum()) == 0.0
  check_grads(lambda x: moco_infonce(x, k, temperature=0.2), (q,), order=1, modes=["rev"],
              atol=1e-2, rtol=1e-2)
  g = jax.grad(lambda x: moco_infonce(x, k))(jnp.asarray(q).at[0].set(0.0))  # a zero query
  assert np.isfinite(np.asarray(g)).all()
  assert moco_infonce(q.astype(jnp.bfloat16), k).dtype == jnp.float32


@pytest.mark.parametrize("call, match", [
    (lambda: moco_infonce(jnp.ones((4, 3)), jnp.ones((4, 3)), temperature=0.0),
     r"`temperature` must be > 0, got 0.0"),
    (lambda: moco_infonce(jnp.ones((4, 3)), jnp.ones((5, 3))),
     r"`z1` and `z2` must have the same shape, got \(4, 3\) and \(5, 3\)"),
    (lambda: moco_infonce(jnp.ones((4,)), jnp.ones((4,))), r"must have rank 2"),
    (lambda: moco_infonce(jnp.ones((0, 3)), jnp.ones((0, 3))), r"batch of at least 1"),
])
def test_errors_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def _official_v2(q, k, queue, t):
  """moco builder.py: l_pos = q.k, l_neg = q @ queue; CE([l_pos, l_neg] / T, label 0)."""
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  k /= np.linalg.norm(k, axis=1, keepdims=True)
  logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ np.asarray(queue, np.float64).T],
                          1) / t
  m = logits.max(1, keepdims=True)
  return np.mean(m[:, 0] + np.log(np.exp(logits - m).sum(1)) - logits[:, 0])


def test_v2_loss_matches_the_official_formula_and_hand_values():
  q, k = _pair(seed=5)
  queue = np.random.default_rng(6).normal(size=(7, q.shape[1]))
  queue = (queue / np.linalg.norm(queue, axis=1, keepdims=True)).astype(np.float32)
  jit_v2 = jax.jit(lambda a, b, c, t: moco_v2_infonce(a, b, c, temperature=t))
  for t in (0.2, 1.0):
    np.testing.assert_allclose(jit_v2(q, k, queue, t), _official_v2(q, k, queue, t), rtol=1e-5)
  np.testing.assert_allclose(moco_v2_infonce(q, k, queue), _official_v2(q, k, queue, 0.2),
                             rtol=1e-5)
  # Other keys of the batch are no negatives: permuting the batch's keys and queries
  # together, or changing only which row is which, leaves the mean unchanged.
  perm = np.random.default_rng(0).permutation(len(q))
  np.testing.assert_allclose(jit_v2(q[perm], k[perm], queue, 0.2), jit_v2(q, k, queue, 0.2),
                             rtol=1e-5)
  e = np.eye(2, dtype=np.float32)
  # q = k = e1, one queued key e2, T = 1: logits [1, 0] -> log(1 + e^-1).
  np.testing.assert_allclose(jit_v2(e[:1], 2 * e[:1], e[1:], 1.0), np.log1p(np.exp(-1)),
                             rtol=1e-6)
  assert float(jnp.abs(jax.grad(lambda x: moco_v2_infonce(q, x, queue))(k)).sum()) == 0.0
  assert float(jnp.abs(jax.grad(lambda x: moco_v2_infonce(q, k, x))(queue)).sum()) == 0.0
  check_grads(lambda x: moco_v2_infonce(x, k, queue), (q,), order=1, modes=["rev"],
              atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match=r"`queue` must be \[K >= 1, dim = 6\], got shape \(7, 5\)"):
    moco_v2_infonce(q, k, queue[:, :5])


def test_enqueue_replaces_the_oldest_rows_and_wraps():
  queue, pointer = jnp.zeros((5, 2)), jnp.zeros((), jnp.int32)
  enqueue = jax.jit(moco_enqueue)
  written = []
  for step in range(4):  # 2 keys a step into 5 rows: rows 0-1, 2-3, 4-0, 1-2
    keys = np.array([[step + 1.0, 0.0], [0.0, -(step + 1.0)]], np.float32)
    queue, pointer = enqueue(queue, pointer, keys)
    written.append(keys / np.abs(keys).sum(1, keepdims=True))  # unit rows
  assert int(pointer) == 8 % 5
  expected = np.zeros((5, 2), np.float32)
  for step, rows in enumerate(([0, 1], [2, 3], [4, 0], [1, 2])):
    expected[rows] = written[step]
  np.testing.assert_allclose(queue, expected, rtol=1e-6)
  with pytest.raises(ValueError, match=r"`queue` of 5 rows cannot take a batch of 6 keys"):
    moco_enqueue(queue, pointer, jnp.ones((6, 2)))
  with pytest.raises(ValueError, match=r"`keys` must be \[batch, dim = 2\], got shape \(2, 3\)"):
    moco_enqueue(queue, pointer, jnp.ones((2, 3)))


_CHILD = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp
    from jax.sharding import PartitionSpec as P
    from sslx.losses.momentum_contrast import moco_infonce

    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    def maxdiff(a, b):
      return max(float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
                 for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    k = jax.random.split(jax.random.key(0), 4)
    keys = jax.random.normal(k[0], (16, 8))
    queries = keys + 0.8 * jax.random.normal(k[1], (16, 8))
    fn = lambda q, key, ax=None: moco_infonce(q, key, temperature=0.2, axis_name=ax)
    sharded = jax.jit(jax.shard_map(lambda a, b: fn(a, b, 'data'), mesh=mesh,
                                    in_specs=(P('data'), P('data')), out_specs=P()))
    local = jax.jit(jax.shard_map(lambda a, b: fn(a, b)[None], mesh=mesh,
                                  in_specs=(P('data'), P('data')), out_specs=P('data')))
    single = jax.jit(fn)
    out = {'value': maxdiff(sharded(queries, keys), single(queries, keys)),
           'local_differs': maxdiff(local(queries, keys).mean(), single(queries, keys)),
           'grad_q': maxdiff(jax.jit(jax.grad(sharded))(queries, keys),
                             jax.jit(jax.grad(single))(queries, keys))}
    # A training step: gradient w.r.t. replicated parameters of the query network.
    x = jax.random.normal(k[2], (16, 6))
    w = jax.random.normal(k[3], (6, 8))
    def step(a, b, w):
      return jax.grad(lambda w: fn(a @ w, b, 'data'))(w)
    g = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P('data'), P('data'), P()),
                              out_specs=P()))(x, keys, w)
    g1 = jax.jit(jax.grad(lambda w: fn(x @ w, keys)))(w)
    out['grad_params'] = maxdiff(g, g1)
    out['grad_scale'] = float(jnp.max(jnp.abs(g1)))

    # MoCo v2: the replicated queue gets the same (gathered) keys on every device.
    from sslx.losses.momentum_contrast import moco_enqueue, moco_v2_infonce
    queue = jax.random.normal(k[2], (24, 8))
    queue = queue / jnp.linalg.norm(queue, axis=1, keepdims=True)
    ptr = jnp.asarray(20, jnp.int32)  # the 16 keys wrap around
    enq = jax.jit(jax.shard_map(lambda q, p, b: moco_enqueue(q, p, b, axis_name='data'),
                                mesh=mesh, in_specs=(P(), P(), P('data')),
                                out_specs=(P(), P())))
    (q4, p4), (q1, p1) = enq(queue, ptr, keys), jax.jit(moco_enqueue)(queue, ptr, keys)
    out['enqueue'] = maxdiff(q4, q1)
    out['enqueue_pointer'] = [int(p4), int(p1)]
    # Each device's copy of the queue: all four identical.
    per_device = jax.jit(jax.shard_map(
        lambda q, p, b: moco_enqueue(q, p, b, axis_name='data')[0][None], mesh=mesh,
        in_specs=(P(), P(), P('data')), out_specs=P('data')))(queue, ptr, keys)
    out['enqueue_devices_agree'] = maxdiff(per_device, jnp.broadcast_to(q1, per_device.shape))
    v2 = lambda a, b, c, ax=None: moco_v2_infonce(a, b, c, temperature=0.2, axis_name=ax)
    v2s = jax.jit(jax.shard_map(lambda a, b, c: v2(a, b, c, 'data'), mesh=mesh,
                                in_specs=(P('data'), P('data'), P()), out_specs=P()))
    out['v2_value'] = maxdiff(v2s(queries, keys, queue), jax.jit(v2)(queries, keys, queue))
    out['v2_grad_q'] = maxdiff(jax.jit(jax.grad(v2s))(queries, keys, queue),
                               jax.jit(jax.grad(v2))(queries, keys, queue))
    print('RESULT' + json.dumps(out))
""")


def test_multi_device_equals_the_whole_batch():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads([l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1][6:])
  assert out["value"] < 1e-5
  assert out["local_differs"] > 1e-2  # each device alone sees 3 negatives, not 15
  assert out["grad_q"] < 1e-6
  assert out["grad_scale"] > 1e-3
  assert out["grad_params"] < 1e-5
  assert out["enqueue"] < 1e-6 and out["enqueue_devices_agree"] < 1e-6
  assert out["enqueue_pointer"] == [(20 + 16) % 24] * 2
  assert out["v2_value"] < 1e-5
  assert out["v2_grad_q"] < 1e-6
