"""Mean Teacher: the loss against USB's formula, the teacher's EMA over steps, the ramp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import softmax_mse
from sslx.methods.mean_teacher import ramp


def _usb_mse(logits, targets, mask=None):
  """USB's consistency_loss(logits, targets, 'mse'), written out in numpy."""
  z = np.asarray(logits, np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  loss = ((p - np.asarray(targets, np.float64)) ** 2).mean(1)
  if mask is not None:
    loss = loss * np.asarray(mask)
  return loss.mean()


def test_softmax_mse_matches_usb_and_is_jit_safe():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 4)).astype(np.float32)
  targets = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
  mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  np.testing.assert_allclose(softmax_mse(logits, targets), _usb_mse(logits, targets), rtol=1e-6)
  np.testing.assert_allclose(softmax_mse(logits, targets, mask=mask),
                             _usb_mse(logits, targets, mask), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(softmax_mse)(logits, targets), softmax_mse(logits, targets),
                             rtol=1e-6)
  perm = rng.permutation(6)
  np.testing.assert_allclose(softmax_mse(logits[perm], targets[perm]),
                             softmax_mse(logits, targets), rtol=1e-6)
  # Hand-computed: uniform logits over 2 classes against a one-hot target: (0.5^2 + 0.5^2) / 2.
  assert float(softmax_mse(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]))) == pytest.approx(0.25)
  # No gradient reaches the target probabilities; the logits' gradient is finite.
  g_t = jax.grad(lambda t: softmax_mse(logits, t))(targets)
  assert float(jnp.abs(g_t).sum()) == 0.0
  jax.test_util.check_grads(lambda z: softmax_mse(z, targets), (logits,), order=1,
                            modes=["rev"], atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="target_probs"):
    softmax_mse(logits, targets[:, :3])


def test_ramp_is_linear_over_the_warmup_fraction():
  assert [float(ramp(s, 100, 0.4)) for s in (0, 20, 40, 90)] == [0.0, 0.5, 1.0, 1.0]
  assert float(ramp(0, 100, 0.0)) == 1.0


def test_teacher_is_an_ema_of_the_student_over_steps():
  config = load_experiment("mean_teacher_digits", "smoke")
  config.mean_teacher.teacher_decay = 0.5
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  teacher = jax.tree.map(np.asarray, state.method_params["mean_teacher"]["teacher"]["model"])
  np.testing.assert_array_equal(jax.tree.leaves(teacher)[0],
                                np.asarray(jax.tree.leaves(state.params["model"])[0]))
  for _ in range(3):
    state, metrics = exp.train_step(state, exp.input.arrays)
    student = jax.tree.map(np.asarray, state.params["model"])
    expected = jax.tree.map(lambda t, s: 0.5 * t + 0.5 * s, teacher, student)
    teacher = jax.tree.map(np.asarray, state.method_params["mean_teacher"]["teacher"]["model"])
    jax.tree.map(lambda e, t: np.testing.assert_allclose(t, e, rtol=1e-5, atol=1e-7),
                 expected, teacher)
  assert np.isfinite(float(metrics["loss/mean_teacher"]))
  assert 0 < float(metrics["mean_teacher/ramp"]) <= 1
  assert "mean_teacher/teacher_accuracy" in metrics
