"""Tests for sslx.losses.nearest_neighbour (NNCLR's support lookup and InfoNCE).

Against solo-learn's ``find_nn`` / ``nnclr_loss_func`` / ``dequeue_and_enqueue`` rewritten in
float64 numpy (including several steps of lookup + loss + FIFO enqueue), hand values,
jit == eager, gradients (none to the neighbours), a batch permutation, errors, and the
``axis_name`` gather under ``jax.vmap`` with a named axis.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sslx.losses import moco_enqueue, nearest_neighbours, nnclr_loss


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _official_loss(nn, p, t):
  """solo-learn nnclr_loss_func: normalize nn, p; logits = nn @ p.T / T; CE at arange."""
  logits = _unit(nn) @ _unit(p).T / t
  m = logits.max(1, keepdims=True)
  log_softmax = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
  return -np.mean(np.diagonal(log_softmax))


def _official_find_nn(z, queue):
  """solo-learn find_nn on the normalised projection: argmax of z @ queue.T."""
  idx = np.argmax(_unit(z) @ np.asarray(queue, np.float64).T, axis=1)
  return idx, np.asarray(queue, np.float64)[idx]


def _data(n=8, d=5, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(n, d)).astype(np.float32) for _ in range(4)]


@pytest.fixture(scope="module")
def jit_loss():
  return jax.jit(lambda a, b, t: nnclr_loss(a, b, temperature=t))


def test_loss_matches_the_official_formula(jit_loss):
  for seed, t in ((0, 0.1), (1, 0.2), (2, 1.0)):
    nn, p, _, _ = _data(seed=seed)
    np.testing.assert_allclose(jit_loss(nn, p, t), _official_loss(nn, p, t), rtol=1e-5)
  nn, p, _, _ = _data()
  np.testing.assert_allclose(nnclr_loss(nn, p), _official_loss(nn, p, 0.1), rtol=1e-5)  # T=0.1
  np.testing.assert_allclose(jit_loss(nn, p, 0.1), nnclr_loss(nn, p), rtol=1e-6)  # jit == eager


def test_hand_values(jit_loss):
  e = jnp.eye(2)
  # Logits [[1/T, 0], [0, 1/T]]: CE = log(1 + exp(-1/T)).
  np.testing.assert_allclose(jit_loss(e, e, 1.0), np.log1p(np.exp(-1.0)), rtol=1e-6)
  np.testing.assert_allclose(jit_loss(e, e, 0.5), np.log1p(np.exp(-2.0)), rtol=1e-6)
  # Rows are anchors, columns candidates: nn = [e1, e1], p = [e1, e2], T = 1:
  # row 0 [1, 0] at 0 -> log(1 + e^-1); row 1 [1, 0] at 1 -> log(1 + e^1).
  nn = jnp.array([[1.0, 0.0], [1.0, 0.0]])
  expected = (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(1.0))) / 2
  np.testing.assert_allclose(jit_loss(nn, e, 1.0), expected, rtol=1e-6)
  # Swapped, p = [e1, e1]: both rows see two equal logits -> log 2 (not symmetric).
  np.testing.assert_allclose(jit_loss(e, nn, 1.0), np.log(2.0), rtol=1e-6)


def test_lookup_matches_find_nn_and_a_hand_case():
  queue = _unit(np.random.default_rng(3).normal(size=(40, 5))).astype(np.float32)
  z = _data(n=16)[0] * 7.0  # the scale of z does not matter
  idx, nn = jax.jit(nearest_neighbours)(z, queue)
  ref_idx, ref_nn = _official_find_nn(z, queue)
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_allclose(nn, ref_nn, rtol=1e-6)
  assert idx.dtype == jnp.int32 and nn.shape == (16, 5)
  support = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  idx, nn = nearest_neighbours(jnp.array([[2.0, 0.1], [-0.3, -5.0], [-4.0, 3.0]]), support)
  # scores: [2, .1, -2] -> 0; [-.3, -5, .3] -> 2; [-4, 3, 4] -> 2.
  np.testing.assert_array_equal(idx, [0, 2, 2])
  np.testing.assert_array_equal(nn, support[np.array([0, 2, 2])])


def test_several_steps_of_lookup_loss_and_enqueue_match_the_official_loop():
  """solo-learn's training_step for 5 steps: find_nn for both views, the halved symmetric
  loss, then z1 (normalised) written at queue_ptr, FIFO; the queue starts as unit rows."""
  rng = np.random.default_rng(7)
  n, d, k, t = 4, 3, 12, 0.1  # k a multiple of n, as the official assert requires
  queue0 = _unit(rng.normal(size=(k, d)))
  ref_queue, ref_ptr = queue0.copy(), 0
  queue, ptr = jnp.asarray(queue0, jnp.float32), jnp.zeros((), jnp.int32)

  @jax.jit
  def step(queue, ptr, z1, z2, p1, p2):
    _, nn1 = nearest_neighbours(z1, queue)
    _, nn2 = nearest_neighbours(z2, queue)
    loss = (nnclr_loss(nn1, p2, temperature=t) + nnclr_loss(nn2, p1, temperature=t)) / 2
    return loss, *moco_enqueue(queue, ptr, z1)

  for _ in range(5):
    z1, z2, p1, p2 = (rng.normal(size=(n, d)).astype(np.float32) for _ in range(4))
    _, nn1 = _official_find_nn(z1, ref_queue)
    _, nn2 = _official_find_nn(z2, ref_queue)
    ref_loss = _official_loss(nn1, p2, t) / 2 + _official_loss(nn2, p1, t) / 2
    ref_queue[ref_ptr:ref_ptr + n] = _unit(z1)
    ref_ptr = (ref_ptr + n) % k
    loss, queue, ptr = step(queue, ptr, z1, z2, p1, p2)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(queue, ref_queue, rtol=1e-5, atol=1e-6)
    assert int(ptr) == ref_ptr
  # After 5 steps of 4 rows in 12: rows 0..7 hold steps 4-5, rows 8..11 step 3.
  assert int(ptr) == 20 % 12


def test_gradients_flow_to_predictions_only():
  nn, p, _, _ = _data(n=6, d=4)
  check_grads(lambda p: nnclr_loss(nn, p, temperature=0.5), (jnp.asarray(p),), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)
  g_nn, g_p = jax.grad(lambda a, b: nnclr_loss(a, b), argnums=(0, 1))(nn, p)
  np.testing.assert_array_equal(g_nn, 0.0)
  assert np.all(np.isfinite(g_p)) and np.abs(g_p).sum() > 0
  g = jax.grad(lambda p: nnclr_loss(jnp.zeros_like(p), p))(jnp.zeros((3, 4)))  # zero vectors
  assert np.all(np.isfinite(g))


def test_batch_permutation_invariance(jit_loss):
  nn, p, _, _ = _data(n=10, seed=4)
  perm = np.random.default_rng(0).permutation(10)
  np.testing.assert_allclose(jit_loss(nn[perm], p[perm], 0.1), jit_loss(nn, p, 0.1), rtol=1e-6)
  assert not np.isclose(jit_loss(nn[perm], p, 0.1), jit_loss(nn, p, 0.1))  # pairs matter


def test_axis_name_gathers_the_predictions():
  nn, p, _, _ = _data(n=8, seed=5)
  sharded = jax.vmap(lambda a, b: nnclr_loss(a, b, temperature=0.2, axis_name="d"),
                     axis_name="d")(nn.reshape(4, 2, -1), p.reshape(4, 2, -1))
  np.testing.assert_allclose(sharded, np.full(4, _official_loss(nn, p, 0.2)), rtol=1e-5)


def test_bad_inputs_name_the_argument():
  a = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match=r"`neighbours` and `predictions` must have the same shape"):
    nnclr_loss(a, jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match=r"`neighbours` must have rank 2"):
    nnclr_loss(jnp.zeros(3), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"`temperature` must be > 0"):
    nnclr_loss(a, a, temperature=0.0)
  with pytest.raises(ValueError, match=r"`support` must be \[K >= 1, dim = 3\], got shape \(5, 2\)"):
    nearest_neighbours(a, jnp.zeros((5, 2)))
  with pytest.raises(ValueError, match=r"`embeddings` must have rank 2"):
    nearest_neighbours(jnp.zeros(3), jnp.zeros((5, 3)))
