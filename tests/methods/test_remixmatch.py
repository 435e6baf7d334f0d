"""ReMixMatch: the losses against USB's formulas, the class prior, the rotation, the method
on a stand-in model against USB's train_step and DistAlignEMAHook written in numpy over
several steps, and one training step (with the labeled prior from init)."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import class_prior, mixup_lambda, remixmatch_loss, soft_cross_entropy
from sslx.methods import remixmatch


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _ce(logits, targets):
  """USB's ce_loss with soft targets, reduction='mean'."""
  return (-(targets * np.log(_softmax(logits))).sum(1)).mean()


def test_remixmatch_loss_matches_usb_and_a_hand_value():
  rng = np.random.default_rng(0)
  logits = (2 * rng.normal(size=(9, 4))).astype(np.float32)
  targets = rng.dirichlet(np.ones(4), size=9).astype(np.float32)
  strong = rng.normal(size=(3, 4)).astype(np.float32)
  guess = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
  got = remixmatch_loss(logits, targets, strong, guess, num_labeled=3)
  expected = (_ce(logits[:3], targets[:3]), _ce(logits[3:], targets[3:]), _ce(strong, guess))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  fn = jax.jit(lambda *a: remixmatch_loss(*a, num_labeled=3))
  np.testing.assert_allclose(fn(logits, targets, strong, guess), got, rtol=1e-6)
  # Permuting rows inside each part (with their targets) changes nothing.
  p = np.r_[2, 0, 1, 8, 3, 7, 4, 6, 5]
  np.testing.assert_allclose(remixmatch_loss(logits[p], targets[p], strong[::-1], guess[::-1],
                                             num_labeled=3), got, rtol=1e-5)
  # Hand value: uniform logits over 2 classes give log 2 for any target.
  half = jnp.array([[1.0, 0.0], [0.3, 0.7]])
  np.testing.assert_allclose(remixmatch_loss(jnp.zeros((2, 2)), half, jnp.zeros((2, 2)), half,
                                             num_labeled=1), [np.log(2)] * 3, rtol=1e-6)
  g = jax.grad(lambda z, s: sum(remixmatch_loss(z, targets, s, guess, num_labeled=3)),
               argnums=(0, 1))(logits, strong)
  assert all(np.isfinite(np.asarray(x)).all() for x in g)
  g_t = jax.grad(lambda t: soft_cross_entropy(logits, t))(targets)
  assert float(jnp.abs(g_t).sum()) == 0.0  # targets are constants
  with pytest.raises(ValueError, match="num_labeled"):
    remixmatch_loss(logits, targets, strong, guess, num_labeled=9)
  with pytest.raises(ValueError, match="guess"):
    remixmatch_loss(logits, targets, strong, guess[:2], num_labeled=3)


def test_class_prior_and_rotation():
  np.testing.assert_allclose(class_prior(jnp.array([0, 2, 2, -1, 1, 2]), 4),
                             [0.2, 0.2, 0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(class_prior(jnp.array([-1, -1]), 4), [0.25] * 4)
  with pytest.raises(ValueError, match="labels"):
    class_prior(jnp.array([0.0, 1.0]), 2)
  x = np.arange(3 * 3 * 3, dtype=np.float32).reshape(3, 3, 3, 1)
  turns = np.array([1, 3, 0])
  got = remixmatch.rotate_each(jnp.asarray(x), jnp.asarray(turns))
  for b in range(3):
    np.testing.assert_array_equal(got[b], np.rot90(x[b], turns[b], axes=(0, 1)))


class _Hook:
  """USB's DistAlignEMAHook (p_target_type='gt') in numpy."""

  def __init__(self, p_target, m=0.999):
    self.p_target, self.p_model, self.m = np.asarray(p_target, np.float64), None, m

  def dist_align(self, probs):
    mean = probs.mean(0)
    self.p_model = mean if self.p_model is None else self.p_model * self.m + mean * (1 - self.m)
    aligned = probs * (self.p_target + 1e-6) / (self.p_model + 1e-6)
    return aligned / aligned.sum(-1, keepdims=True)


def test_method_over_three_steps_matches_usb_train_step():
  rng = np.random.default_rng(2)
  k, n_lb, n_ulb = 3, 2, 4
  w = rng.normal(size=(4, k)).astype(np.float32)
  w_rot = rng.normal(size=(4, 4)).astype(np.float32)
  flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
  options = ml_collections.ConfigDict(dict(remixmatch.OPTIONS))
  options.distribution_momentum = 0.9  # large enough that the EMA moves visibly
  prior = np.array([0.5, 0.25, 0.25])
  hook = _Hook(prior, m=0.9)
  state = {"p_model": jnp.full((k,), 1 / 3), "p_target": jnp.asarray(prior, jnp.float32),
           "da_updates": jnp.zeros((), jnp.int32)}
  for step in range(3):
    images = {v: rng.normal(size=(n_ulb, 2, 2, 1)).astype(np.float32)
              for v in ("unlabeled_weak", "unlabeled_strong", "unlabeled_strong_2")}
    images["labeled_weak"] = rng.normal(size=(n_lb, 2, 2, 1)).astype(np.float32)
    labels = np.array([0, 2])
    keys = {n: jax.random.key(10 * step + i)
            for i, n in enumerate(("lambda", "permutation", "rotation"))}
    forward = lambda x, **kw: {"logits": jnp.asarray(x).reshape(len(x), -1) @ w,
                               "features": jnp.asarray(x).reshape(len(x), -1)}
    ctx = types.SimpleNamespace(
        options=options, state=state, images=images, num_classes=k, step=step, num_steps=256,
        batch={"labeled_labels": jnp.asarray(labels)},
        outputs={v: {"logits": jnp.asarray(flat(x) @ w, jnp.float32)} for v, x in images.items()},
        rng=lambda name: keys[name], forward=forward, extra=lambda name, x: x @ w_rot)
    loss, metrics, state = remixmatch.remixmatch_method_loss(ctx)
    # USB's train_step in numpy, with the same lambda, permutation and rotations.
    sharp = hook.dist_align(_softmax(flat(images["unlabeled_weak"]) @ w)) ** 2
    sharp /= sharp.sum(-1, keepdims=True)
    x = np.concatenate([images[v] for v in ("labeled_weak", "unlabeled_strong",
                                            "unlabeled_strong_2", "unlabeled_weak")])
    y = np.concatenate([np.eye(k)[labels], sharp, sharp, sharp])
    lam = float(mixup_lambda(keys["lambda"], alpha=0.75))
    index = np.asarray(jax.random.permutation(keys["permutation"], len(x)))
    mixed_x, mixed_y = lam * x + (1 - lam) * x[index], lam * y + (1 - lam) * y[index]
    logits = flat(mixed_x) @ w
    sup, unsup = _ce(logits[:n_lb], mixed_y[:n_lb]), _ce(logits[n_lb:], mixed_y[n_lb:])
    u1 = _ce(flat(images["unlabeled_strong"]) @ w, sharp)
    turns = np.asarray(jax.random.randint(keys["rotation"], (n_ulb,), 0, 4))
    rotated = np.stack([np.rot90(im, t, axes=(0, 1))
                        for im, t in zip(images["unlabeled_strong"], turns)])
    rot = _ce(flat(rotated) @ w_rot, np.eye(4)[turns])
    ramp = np.clip(step / (256 / 64), 0, 1)
    expected = sup + 0.5 * ramp * u1 + 1.5 * ramp * unsup + 0.5 * rot
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    np.testing.assert_allclose(state["p_model"], hook.p_model, rtol=1e-5)
    np.testing.assert_allclose(metrics["rotation_loss"], rot, rtol=1e-4)
  assert int(state["da_updates"]) == 3
  np.testing.assert_allclose(state["p_target"], prior)


def test_option_errors_name_the_field():
  config = load_experiment("remixmatch_digits", "smoke")
  config.remixmatch.kl_weight = -1.0
  with pytest.raises(ValueError, match="remixmatch.kl_weight"):
    experiment.setup(config, devices=jax.devices()[:1])


def test_smoke_training_step_with_the_labeled_prior():
  exp = experiment.setup(load_experiment("remixmatch_digits", "smoke"), devices=jax.devices()[:1])
  state = exp.state  # the target distribution is the labeled prior from init
  labels = np.asarray(exp.input.arrays["labeled_labels"])
  np.testing.assert_allclose(state.method_state["remixmatch"]["p_target"],
                             np.bincount(labels, minlength=10) / len(labels), rtol=1e-6)
  head = np.asarray(state.params["remixmatch"]["rotation_head"]["Dense_0"]["kernel"])
  state, metrics = exp.train_step(state, exp.input.arrays)
  assert np.isfinite(float(metrics["loss"]))
  assert "loss/supervised" not in metrics
  assert 0.5 <= float(metrics["remixmatch/lambda"]) <= 1.0
  assert int(state.method_state["remixmatch"]["da_updates"]) == 1
  moved = np.asarray(state.params["remixmatch"]["rotation_head"]["Dense_0"]["kernel"])
  assert not np.allclose(head, moved)  # the rotation head is trained
