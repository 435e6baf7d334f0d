"""Tests for sslx.losses.classification (cross_entropy, accuracy)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from sslx.losses.classification import accuracy, cross_entropy

LOGITS = np.array([[2.0, 0.0, -1.0],
                   [0.0, 0.0, 0.0],
                   [-3.0, 1.0, 4.0],
                   [0.5, -0.5, 1.5]], np.float32)
LABELS = np.array([0, 1, 2, 0], np.int32)


def _np_log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def jitted_ce():
  return jax.jit(cross_entropy, static_argnames=("reduction",))


def test_hand_computed_integer_labels():
  logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
  # -log(e^2 / (e^2 + 1)) = log(1 + e^-2); -log(1/2) = log 2.
  expected = np.array([np.log1p(np.exp(-2.0)), np.log(2.0)])
  np.testing.assert_allclose(
      cross_entropy(logits, jnp.array([0, 1]), reduction="none"), expected,
      rtol=1e-6)
  np.testing.assert_allclose(
      cross_entropy(logits, jnp.array([0, 1])), expected.mean(), rtol=1e-6)


def test_hand_computed_soft_targets_and_smoothing():
  logits = jnp.array([[1.0, 0.0]])
  log_p = np.log(np.array([np.e / (np.e + 1), 1 / (np.e + 1)]))
  soft = jnp.array([[0.25, 0.75]])
  np.testing.assert_allclose(cross_entropy(logits, soft),
                             -(0.25 * log_p[0] + 0.75 * log_p[1]), rtol=1e-6)
  # Smoothing 0.2 with C = 2: one-hot [1, 0] -> [0.9, 0.1].
  np.testing.assert_allclose(
      cross_entropy(logits, jnp.array([0]), label_smoothing=0.2),
      -(0.9 * log_p[0] + 0.1 * log_p[1]), rtol=1e-6)


def test_weights_mean_divides_by_batch_not_weight_sum():
  per_example = -_np_log_softmax(LOGITS)[np.arange(4), LABELS]
  weights = np.array([1.0, 0.0, 0.5, 0.0], np.float32)
  got_mean = cross_entropy(LOGITS, LABELS, weights=weights)
  got_sum = cross_entropy(LOGITS, LABELS, weights=weights, reduction="sum")
  got_none = cross_entropy(LOGITS, LABELS, weights=weights, reduction="none")
  np.testing.assert_allclose(got_mean, (weights * per_example).sum() / 4,
                             rtol=1e-6)
  np.testing.assert_allclose(got_sum, (weights * per_example).sum(), rtol=1e-6)
  np.testing.assert_allclose(got_none, weights * per_example, rtol=1e-6)


def test_agrees_with_optax():
  np.testing.assert_allclose(
      cross_entropy(LOGITS, LABELS),
      optax.losses.softmax_cross_entropy_with_integer_labels(
          LOGITS, LABELS).mean(), rtol=1e-6)
  one_hot = jax.nn.one_hot(LABELS, 3)
  smoothed = optax.smooth_labels(one_hot, 0.1)
  np.testing.assert_allclose(
      cross_entropy(LOGITS, LABELS, label_smoothing=0.1),
      optax.losses.softmax_cross_entropy(LOGITS, smoothed).mean(), rtol=1e-6)
  soft = jax.nn.softmax(jnp.arange(12.0).reshape(4, 3) / 5)
  np.testing.assert_allclose(
      cross_entropy(LOGITS, soft),
      optax.losses.softmax_cross_entropy(LOGITS, soft).mean(), rtol=1e-6)


def test_jit_matches_eager_and_batch_permutation_invariance(jitted_ce):
  weights = jnp.array([0.3, 1.0, 0.0, 2.0])
  eager = cross_entropy(LOGITS, LABELS, weights=weights, label_smoothing=0.1)
  jitted = jitted_ce(LOGITS, LABELS, weights=weights, label_smoothing=0.1)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)
  perm = np.array([2, 0, 3, 1])
  permuted = jitted_ce(LOGITS[perm], LABELS[perm], weights=weights[perm],
                       label_smoothing=0.1)
  np.testing.assert_allclose(permuted, eager, rtol=1e-6)


def test_check_grads():
  check_grads(lambda x: cross_entropy(x, LABELS, label_smoothing=0.1),
              (jnp.asarray(LOGITS),), order=1, modes=("fwd", "rev"),
              atol=1e-2, rtol=1e-2, eps=1e-2)


def test_zero_weights_give_zero_finite_gradient_even_for_extreme_logits():
  logits = jnp.array([[1e4, -1e4], [0.0, 1.0]])
  grad = jax.grad(lambda x: cross_entropy(
      x, jnp.array([1, 0]), weights=jnp.array([0.0, 1.0])))(logits)
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(grad[0], 0.0)
  assert np.abs(grad[1]).sum() > 0


def test_bfloat16_logits_are_computed_in_float32():
  bf16 = jnp.asarray(LOGITS * 3.1, jnp.bfloat16)
  got = cross_entropy(bf16, LABELS)
  assert got.dtype == jnp.float32
  expected = cross_entropy(jnp.asarray(bf16, jnp.float32), LABELS)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_accuracy():
  # Row argmaxes: 0, 0 (tie -> lowest), 2, 2; labels 0, 1, 2, 0.
  np.testing.assert_allclose(accuracy(LOGITS, LABELS), 0.5)
  soft = jax.nn.one_hot(LABELS, 3) * 0.7 + 0.1
  np.testing.assert_allclose(accuracy(LOGITS, soft), 0.5)
  assert accuracy(LOGITS, LABELS).dtype == jnp.float32


@pytest.mark.parametrize("call, match", [
    (lambda: cross_entropy(jnp.ones((2, 3), jnp.int32), jnp.array([0, 1])),
     r"`logits` must be a floating-point array, got dtype int32"),
    (lambda: cross_entropy(jnp.ones((2, 3, 4)), jnp.array([0, 1])),
     r"`logits` must have rank 2 .*got shape \(2, 3, 4\)"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1, 2])),
     r"integer `labels` must have shape \[batch\] = \(2,\).*got \(3,\)"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0.0, 1.0])),
     r"soft `labels` must have the shape of `logits`.*\(2, 3\), got \(2,\)"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0, 3])),
     r"`labels` must be in \[0, 2\]"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([True, False])),
     r"`labels` must be integer class indices.*got dtype bool"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1]),
                           label_smoothing=1.5),
     r"`label_smoothing` must be in \[0.0, 1.0\], got 1.5"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1]),
                           weights=jnp.ones((3,))),
     r"`weights` must have shape \[batch\] = \(2,\), got \(3,\)"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1]),
                           weights=jnp.ones((2,), jnp.int32)),
     r"`weights` must be a floating-point array"),
    (lambda: cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1]),
                           reduction="avg"),
     r"`reduction` must be one of"),
])
def test_errors_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()
