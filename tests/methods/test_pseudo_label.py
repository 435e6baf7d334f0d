"""Pseudo-Label: the loss against USB's formula, its gradient, the ramp, one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import pseudo_label_loss


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _usb_pseudo_label(logits, p_cutoff):
  """USB pseudolabel: FixedThresholdingHook mask, argmax target, ce consistency_loss."""
  probs = _softmax(logits)
  mask = (probs.max(-1) >= p_cutoff).astype(np.float64)
  target = probs.argmax(-1)
  ce = -np.log(probs[np.arange(len(target)), target])
  return (ce * mask).mean(), mask


def test_matches_usb_on_fixed_logits_and_is_jit_safe():
  rng = np.random.default_rng(0)
  logits = (3 * rng.normal(size=(8, 5))).astype(np.float32)
  for threshold in (0.0, 0.5, 0.7):
    expected, mask = _usb_pseudo_label(logits, threshold)
    loss, aux = pseudo_label_loss(logits, threshold=threshold)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_array_equal(aux["mask"], mask)
    jitted, _ = jax.jit(lambda z, t=threshold: pseudo_label_loss(z, threshold=t))(logits)
    np.testing.assert_allclose(jitted, loss, rtol=1e-6)
  assert 0 < float(aux["mask_rate"]) < 1  # the fixed logits exercise both branches
  perm = rng.permutation(8)
  np.testing.assert_allclose(pseudo_label_loss(logits[perm], threshold=0.5)[0],
                             pseudo_label_loss(logits, threshold=0.5)[0], rtol=1e-6)
  # Hand-computed: the confident row costs -log(sigmoid(4)); the unsure one is masked out.
  loss, aux = pseudo_label_loss(jnp.array([[4.0, 0.0], [0.0, 0.0]]), threshold=0.9)
  assert float(loss) == pytest.approx(np.log1p(np.exp(-4.0)) / 2, rel=1e-5)


def test_gradient_treats_the_pseudo_label_as_a_constant():
  rng = np.random.default_rng(1)
  logits = (3 * rng.normal(size=(6, 4))).astype(np.float32)
  grad = jax.grad(lambda z: pseudo_label_loss(z, threshold=0.6)[0])(logits)
  probs = _softmax(logits)
  mask = probs.max(-1) >= 0.6
  # d/dz of -log softmax(z)_y with y fixed: (p - onehot(y)) / B on the masked rows.
  expected = (probs - np.eye(4)[probs.argmax(-1)]) * mask[:, None] / 6
  np.testing.assert_allclose(grad, expected, atol=1e-6)
  assert np.isfinite(np.asarray(grad)).all()


def test_bad_inputs_name_the_argument():
  with pytest.raises(ValueError, match="logits"):
    pseudo_label_loss(jnp.zeros((3,)))
  with pytest.raises(ValueError, match="threshold"):
    pseudo_label_loss(jnp.zeros((3, 2)), threshold=1.5)


def test_option_errors_name_the_field():
  config = load_experiment("pseudo_label_digits", "smoke")
  config.pseudo_label.threshold = 2.0
  with pytest.raises(ValueError, match="pseudo_label.threshold"):
    experiment.setup(config, devices=jax.devices()[:1])


def test_smoke_training_steps_ramp_the_weight():
  exp = experiment.setup(load_experiment("pseudo_label_digits", "smoke"),
                         devices=jax.devices()[:1])
  state = exp.state
  ramps = []
  for _ in range(2):
    state, metrics = exp.train_step(state, exp.input.arrays)
    ramps.append(float(metrics["pseudo_label/ramp"]))
    assert np.isfinite(float(metrics["loss"]))
  # smoke: 6 steps, warmup 0.4 -> the weight is step / 2.4.
  np.testing.assert_allclose(ramps, [0.0, 1 / 2.4], rtol=1e-6)
  assert float(metrics["loss/pseudo_label"]) >= 0
  assert 0 <= float(metrics["pseudo_label/pseudo_label_accuracy"]) <= 1
