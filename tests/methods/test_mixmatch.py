"""MixMatch: sharpening, MixUp and the losses against USB's formulas; the method composed
on a stand-in model against USB's train_step written in numpy; one training step."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import mixmatch_loss, mixup, mixup_lambda, sharpen
from sslx.methods import mixmatch as mixmatch_method


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _usb_losses(logits, mixed_y, num_lb):
  """USB: ce_loss(logits_x, mixed_y[:num_lb]) mean; consistency_loss(logits_u, ..., 'mse')."""
  logp = np.log(_softmax(logits))
  sup = (-(mixed_y[:num_lb] * logp[:num_lb]).sum(1)).mean()
  unsup = ((_softmax(logits[num_lb:]) - mixed_y[num_lb:]) ** 2).mean(1).mean()
  return sup, unsup


def test_sharpen_matches_usb_and_a_hand_value():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(5), size=4)
  expected = p ** 2 / (p ** 2).sum(-1, keepdims=True)
  np.testing.assert_allclose(sharpen(p.astype(np.float32), temperature=0.5), expected, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(lambda x: sharpen(x, temperature=0.5))(p.astype(np.float32)),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(sharpen(jnp.array([[0.6, 0.4]]), temperature=0.5),
                             [[0.36 / 0.52, 0.16 / 0.52]], rtol=1e-5)
  with pytest.raises(ValueError, match="temperature"):
    sharpen(p, temperature=0.0)


def test_mixup_and_its_lambda():
  x = jnp.arange(12.0).reshape(3, 2, 2)
  y = jnp.eye(3)
  perm = jnp.array([2, 0, 1])
  mx, my = mixup(x, y, lam=0.75, permutation=perm)
  np.testing.assert_allclose(mx, 0.75 * np.asarray(x) + 0.25 * np.asarray(x)[[2, 0, 1]])
  np.testing.assert_allclose(my[0], [0.75, 0.0, 0.25])
  with pytest.raises(ValueError, match="permutation"):
    mixup(x, y, lam=0.5, permutation=jnp.array([0, 1]))
  lams = jax.vmap(lambda k: mixup_lambda(k, alpha=0.5))(jax.random.split(jax.random.key(0),
                                                                         20000))
  assert float(lams.min()) >= 0.5 and float(lams.max()) <= 1.0
  # max(l, 1 - l) for l ~ Beta(1/2, 1/2) (the arcsine law) has mean 1/2 + 1/pi.
  assert float(lams.mean()) == pytest.approx(0.5 + 1 / np.pi, abs=0.01)
  assert float(mixup_lambda(jax.random.key(0), alpha=0.0)) == 1.0


def test_mixmatch_loss_matches_usb():
  rng = np.random.default_rng(1)
  logits = (2 * rng.normal(size=(9, 4))).astype(np.float32)
  targets = rng.dirichlet(np.ones(4), size=9).astype(np.float32)
  sup, unsup = mixmatch_loss(logits, targets, num_labeled=3)
  exp_sup, exp_unsup = _usb_losses(logits, targets, 3)
  np.testing.assert_allclose(sup, exp_sup, rtol=1e-5)
  np.testing.assert_allclose(unsup, exp_unsup, rtol=1e-5)
  jitted = jax.jit(lambda a, b: mixmatch_loss(a, b, num_labeled=3))(logits, targets)
  np.testing.assert_allclose(jitted, (sup, unsup), rtol=1e-6)
  # Hand-computed: uniform logits over 2 classes, target [1, 0] in both halves:
  # CE log 2; squared error ((0.5 - 1)^2 + 0.5^2) / 2 = 0.25.
  hand = mixmatch_loss(jnp.zeros((2, 2)), jnp.array([[1.0, 0.0], [1.0, 0.0]]), num_labeled=1)
  np.testing.assert_allclose(hand, (np.log(2.0), 0.25), rtol=1e-6)
  g_t = jax.grad(lambda t: sum(mixmatch_loss(logits, t, num_labeled=3)))(targets)
  assert float(jnp.abs(g_t).sum()) == 0.0
  g = jax.grad(lambda z: sum(mixmatch_loss(z, targets, num_labeled=3)))(logits)
  assert np.isfinite(np.asarray(g)).all()
  with pytest.raises(ValueError, match="num_labeled"):
    mixmatch_loss(logits, targets, num_labeled=9)


def test_method_on_a_stand_in_model_matches_usb_train_step():
  rng = np.random.default_rng(2)
  num_classes, n_lb, n_ulb = 3, 2, 4
  w = rng.normal(size=(4, num_classes)).astype(np.float32)
  model = lambda x: np.asarray(x, np.float64).reshape(len(x), -1) @ w
  images = {"labeled_weak": rng.normal(size=(n_lb, 2, 2, 1)),
            "unlabeled_weak": rng.normal(size=(n_ulb, 2, 2, 1)),
            "unlabeled_weak_2": rng.normal(size=(n_ulb, 2, 2, 1))}
  images = {k: v.astype(np.float32) for k, v in images.items()}
  labels = np.array([0, 2])
  keys = {"lambda": jax.random.key(7), "permutation": jax.random.key(8)}
  options = ml_collections.ConfigDict(dict(mixmatch_method.OPTIONS))
  ctx = types.SimpleNamespace(
      options=options, images=images, num_classes=num_classes, step=30, num_steps=100,
      batch={"labeled_labels": jnp.asarray(labels)},
      outputs={k: {"logits": jnp.asarray(model(v), jnp.float32)} for k, v in images.items()},
      rng=lambda name: keys[name],
      forward=lambda x, params, train, rng: {"logits": jnp.asarray(x).reshape(len(x), -1) @ w})
  loss, metrics = mixmatch_method.mixmatch_method_loss(ctx)
  # USB's train_step in numpy, with the same lambda and permutation.
  avg = (_softmax(model(images["unlabeled_weak"])) + _softmax(model(images["unlabeled_weak_2"])))
  sharp = (avg / 2) ** 2
  sharp /= sharp.sum(-1, keepdims=True)
  y = np.concatenate([np.eye(num_classes)[labels], sharp, sharp])
  x = np.concatenate([images["labeled_weak"], images["unlabeled_weak"],
                      images["unlabeled_weak_2"]])
  lam = float(mixup_lambda(keys["lambda"], alpha=0.5))
  index = np.asarray(jax.random.permutation(keys["permutation"], len(x)))
  mixed_x, mixed_y = lam * x + (1 - lam) * x[index], lam * y + (1 - lam) * y[index]
  sup, unsup = _usb_losses(model(mixed_x), mixed_y, n_lb)
  expected = sup + 100.0 * np.clip(30 / (0.4 * 100), 0, 1) * unsup
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  assert float(metrics["lambda"]) == pytest.approx(lam)
  assert 0.5 <= lam <= 1.0


def test_option_errors_name_the_field():
  config = load_experiment("mixmatch_digits", "smoke")
  config.mixmatch.num_augmentations = 0
  with pytest.raises(ValueError, match="mixmatch.num_augmentations"):
    experiment.setup(config, devices=jax.devices()[:1])


def test_smoke_training_steps():
  exp = experiment.setup(load_experiment("mixmatch_digits", "smoke"), devices=jax.devices()[:1])
  state = exp.state
  for _ in range(2):
    state, metrics = exp.train_step(state, exp.input.arrays)
  assert np.isfinite(float(metrics["loss"]))
  assert "loss/supervised" not in metrics
  assert 0.5 <= float(metrics["mixmatch/lambda"]) <= 1.0
  ramp = 1 / 2.4  # smoke: 6 steps, warmup 0.4
  assert float(metrics["loss/mixmatch"]) == pytest.approx(
      float(metrics["mixmatch/labeled_loss"])
      + 100.0 * ramp * float(metrics["mixmatch/unlabeled_loss"]), rel=1e-4)


def test_k_views_are_declared_by_name():
  options = ml_collections.ConfigDict(dict(mixmatch_method.OPTIONS))
  options.num_augmentations = 3
  views = mixmatch_method.views(options)
  assert sorted(views) == ["labeled_weak", "unlabeled_weak", "unlabeled_weak_2",
                           "unlabeled_weak_3"]
  assert {(v.pool, v.augment) for n, v in views.items() if n != "labeled_weak"} == {
      ("unlabeled", "weak")}
