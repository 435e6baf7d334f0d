"""Pi-model: the method loss against USB's formula, its gradient, one training step."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.methods.pi_model import pi_model_loss


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _usb_pimodel_unsup(logits_w, logits_s, it, num_train_iter, unsup_warm_up):
  """USB pimodel: consistency_loss(logits_s, softmax(logits_w), 'mse') * warm-up ramp."""
  mse = ((_softmax(logits_s) - _softmax(logits_w)) ** 2).mean(1).mean()
  return mse * np.clip(it / (unsup_warm_up * num_train_iter), 0.0, 1.0)


def _ctx(first, second, step, labels=None, warmup=0.4, num_steps=100):
  batch = {} if labels is None else {"unlabeled_labels": jnp.asarray(labels)}
  return types.SimpleNamespace(
      outputs={"unlabeled_weak": {"logits": first}, "unlabeled_weak_2": {"logits": second}},
      step=step, num_steps=num_steps, batch=batch,
      options=ml_collections.ConfigDict(dict(warmup=warmup)))


def test_matches_usb_on_fixed_logits_and_is_jit_safe():
  rng = np.random.default_rng(0)
  first = (2 * rng.normal(size=(8, 5))).astype(np.float32)
  second = (2 * rng.normal(size=(8, 5))).astype(np.float32)
  for step in (0, 10, 40, 90):
    loss, _ = pi_model_loss(_ctx(first, second, step))
    np.testing.assert_allclose(loss, _usb_pimodel_unsup(first, second, step, 100, 0.4),
                               rtol=1e-5, atol=1e-9)
  loss, metrics = pi_model_loss(_ctx(first, second, 20, labels=np.arange(8) % 5))
  jitted, _ = jax.jit(lambda a, b, s: pi_model_loss(_ctx(a, b, s)))(first, second, 20)
  np.testing.assert_allclose(jitted, loss, rtol=1e-6)
  perm = rng.permutation(8)
  np.testing.assert_allclose(pi_model_loss(_ctx(first[perm], second[perm], 20))[0], loss,
                             rtol=1e-6)
  assert float(metrics["ramp"]) == pytest.approx(0.5)
  expected_acc = np.mean(first.argmax(-1) == np.arange(8) % 5)
  assert float(metrics["unlabeled_accuracy"]) == pytest.approx(expected_acc)
  # Hand-computed: uniform over 2 classes against a confident first pass:
  # softmax([log 3, 0]) = [0.75, 0.25]: ((0.5 - 0.75)^2 + (0.5 - 0.25)^2) / 2 = 0.0625.
  hand, _ = pi_model_loss(_ctx(jnp.array([[np.log(3.0), 0.0]]), jnp.zeros((1, 2)), 40))
  assert float(hand) == pytest.approx(0.0625, rel=1e-5)


def test_only_the_second_pass_gets_gradient():
  rng = np.random.default_rng(1)
  first = rng.normal(size=(4, 3)).astype(np.float32)
  second = rng.normal(size=(4, 3)).astype(np.float32)
  g1, g2 = jax.grad(lambda a, b: pi_model_loss(_ctx(a, b, 50))[0], argnums=(0, 1))(first, second)
  assert float(jnp.abs(g1).sum()) == 0.0
  assert float(jnp.abs(g2).sum()) > 0 and np.isfinite(np.asarray(g2)).all()


def test_option_errors_name_the_field():
  config = load_experiment("pi_model_digits", "smoke")
  config.pi_model.warmup = -0.1
  with pytest.raises(ValueError, match="pi_model.warmup"):
    experiment.setup(config, devices=jax.devices()[:1])


def test_smoke_training_steps():
  exp = experiment.setup(load_experiment("pi_model_digits", "smoke"), devices=jax.devices()[:1])
  state = exp.state
  for _ in range(2):
    state, metrics = exp.train_step(state, exp.input.arrays)
  assert np.isfinite(float(metrics["loss"]))
  assert float(metrics["pi_model/ramp"]) == pytest.approx(1 / 2.4)
  # Two independently augmented weak views: the passes differ, so the error is positive.
  assert float(metrics["pi_model/consistency"]) > 0
  assert float(metrics["loss/pi_model"]) == pytest.approx(
      float(metrics["pi_model/consistency"]) / 2.4, rel=1e-5)
