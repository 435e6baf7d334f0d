"""FreeMatch: the self-adaptive thresholds and the fairness loss against USB's code (in
numpy), hand-computed EMA sequences, the checkpointed state, and one smoke step."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import freematch_fairness_loss, freematch_thresholds, freematch_update
from sslx.methods import freematch


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


class UsbFreeMatchHook:
  """USB's FreeMatchThresholingHook (update, then mask), re-written in numpy."""

  def __init__(self, k, m):
    self.m, self.p_model, self.label_hist = m, np.ones(k), np.ones(k)
    self.time_p = self.p_model.mean()

  def masking(self, probs):
    max_probs, max_idx = probs.max(-1), probs.argmax(-1)
    self.time_p = self.time_p * self.m + (1 - self.m) * max_probs.mean()
    self.p_model = self.p_model * self.m + (1 - self.m) * probs.mean(0)
    hist = np.bincount(max_idx, minlength=len(self.p_model)).astype(np.float64)
    self.label_hist = self.label_hist * self.m + (1 - self.m) * hist / hist.sum()
    mod = self.p_model / self.p_model.max()
    return (max_probs >= self.time_p * mod[max_idx]).astype(np.float64)


def usb_entropy_loss(mask, logits_s, prob_model, label_hist):
  """USB's freematch entropy_loss, re-written in numpy (boolean selection and all)."""
  prob_s = _softmax(np.asarray(logits_s)[mask.astype(bool)])
  hist_s = np.bincount(prob_s.argmax(-1), minlength=prob_s.shape[1]).astype(np.float64)
  hist_s = hist_s / hist_s.sum()
  with np.errstate(divide="ignore"):
    scaler = 1 / label_hist
    scaler[np.isinf(scaler)] = 0
    mod_model = prob_model * scaler
    mod_model = mod_model / mod_model.sum()
    scaler_s = 1 / hist_s
    scaler_s[np.isinf(scaler_s)] = 0
  mod_mean = prob_s.mean(0) * scaler_s
  mod_mean = mod_mean / mod_mean.sum()
  return float((mod_model * np.log(mod_mean + 1e-12)).sum())


def _step(state, probs, m):
  probs = jnp.asarray(probs, jnp.float32)
  tau, p, h = freematch_update(*state, probs, momentum=m)
  thresholds = freematch_thresholds(tau, p)
  label = jnp.argmax(probs, -1)
  mask = (jnp.max(probs, -1) >= thresholds[label]).astype(jnp.float32)
  return (tau, p, h), mask, thresholds


def _init(k):
  return jnp.ones((), jnp.float32), jnp.ones((k,), jnp.float32), jnp.ones((k,), jnp.float32)


def test_hand_computed_ema_sequence():
  """Two classes, lambda = 0.5, from USB's initial values (tau 1, p~ = h~ = ones)."""
  state = _init(2)
  state, mask, thresholds = _step(state, [[0.8, 0.2], [0.4, 0.6]], 0.5)
  # tau = .5 + .5 * .7; p~ = .5 + .5 * (.6, .4); h~ = .5 + .5 * (.5, .5)
  np.testing.assert_allclose(state[0], 0.85, rtol=1e-6)
  np.testing.assert_allclose(state[1], [0.8, 0.7], rtol=1e-6)
  np.testing.assert_allclose(state[2], [0.75, 0.75], rtol=1e-6)
  np.testing.assert_allclose(thresholds, [0.85, 0.85 * 0.7 / 0.8], rtol=1e-6)
  np.testing.assert_array_equal(mask, [0, 0])  # .8 < .85, .6 < .74375
  state, mask, thresholds = _step(state, [[0.9, 0.1], [0.95, 0.05]], 0.5)
  np.testing.assert_allclose(state[0], 0.8875, rtol=1e-6)
  np.testing.assert_allclose(state[1], [0.8625, 0.3875], rtol=1e-6)
  np.testing.assert_allclose(state[2], [0.875, 0.375], rtol=1e-6)
  np.testing.assert_allclose(thresholds, [0.8875, 0.8875 * 0.3875 / 0.8625], rtol=1e-6)
  np.testing.assert_array_equal(mask, [1, 1])
  # The quantile and clip options of USB.
  q = freematch_update(*_init(2), jnp.array([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1]]),
                       momentum=0.5, use_quantile=True, clip_threshold=True)[0]
  np.testing.assert_allclose(q, min(0.5 + 0.5 * np.quantile([0.6, 0.7, 0.9], 0.8), 0.95),
                             rtol=1e-6)


def test_state_sequence_matches_usb_hook():
  rng = np.random.default_rng(0)
  k, m = 5, 0.9
  usb, state = UsbFreeMatchHook(k, m), _init(k)
  step = jax.jit(lambda s, p: _step(s, p, m))
  seen = set()
  for t in range(15):
    probs = rng.dirichlet(np.full(k, 0.2 + 0.05 * t), size=12).astype(np.float32)
    want = usb.masking(probs.astype(np.float64))
    state, mask, _ = step(state, probs)
    np.testing.assert_array_equal(mask, want)
    np.testing.assert_allclose(state[0], usb.time_p, rtol=1e-5)
    np.testing.assert_allclose(state[1], usb.p_model, rtol=1e-5)
    np.testing.assert_allclose(state[2], usb.label_hist, rtol=1e-5)
    seen.update(np.asarray(mask).tolist())
  assert seen == {0.0, 1.0}


def test_fairness_loss_matches_usb_entropy_loss():
  rng = np.random.default_rng(3)
  logits = (2 * rng.normal(size=(10, 4))).astype(np.float32)
  mask = np.array([1, 0, 1, 1, 1, 0, 1, 1, 0, 1], np.float32)
  p_model = rng.dirichlet(np.ones(4)).astype(np.float32)
  hist = np.array([0.3, 0.0, 0.5, 0.2], np.float32)  # a class never predicted: weight 0
  want = usb_entropy_loss(mask, logits, p_model.astype(np.float64), hist.astype(np.float64))
  got = freematch_fairness_loss(logits, mask, p_model, hist)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(freematch_fairness_loss)(logits, mask, p_model, hist), want,
                             rtol=1e-5)
  perm = rng.permutation(10)
  np.testing.assert_allclose(freematch_fairness_loss(logits[perm], mask[perm], p_model, hist),
                             want, rtol=1e-5)
  # Hand-computed: tied logits argmax to class 0, so SumNorm(p_bar / h_bar) = (1, 0) and
  # SumNorm(p~ / h~) = (.5, .5): L = .5 log(1 + 1e-12) + .5 log(1e-12).
  np.testing.assert_allclose(freematch_fairness_loss(jnp.zeros((2, 2)), jnp.ones(2), jnp.ones(2),
                                                     jnp.ones(2)), 0.5 * np.log(1e-12), rtol=1e-5)
  assert float(freematch_fairness_loss(logits, np.zeros(10, np.float32), p_model, hist)) == 0.0
  # ... and its gradient is 0, not NaN (the first steps of a run mask everything out).
  g0 = jax.grad(lambda z: freematch_fairness_loss(z, np.zeros(10, np.float32), p_model, hist))(
      logits)
  np.testing.assert_array_equal(g0, np.zeros_like(logits))
  grad = jax.grad(lambda z: freematch_fairness_loss(z, mask, p_model, hist))(logits)
  assert np.isfinite(grad).all() and np.abs(grad[mask == 0]).sum() == 0
  assert np.abs(grad).sum() > 0
  with pytest.raises(ValueError, match="label_hist"):
    freematch_fairness_loss(logits, mask, p_model, hist[:3])
  with pytest.raises(ValueError, match="global_threshold"):
    freematch_thresholds(jnp.ones(2), p_model)


def test_option_errors_name_the_field():
  opts = freematch.OPTIONS.copy_and_resolve_references()
  opts.ema_p, opts.fairness_weight = 1.0, -1.0
  errors = freematch.option_errors(opts)
  assert any("freematch.ema_p" in e for e in errors)
  assert any("freematch.fairness_weight" in e for e in errors)


def test_smoke_step_updates_the_emas_and_they_survive_a_checkpoint(tmp_path):
  config = load_experiment("freematch_digits", "smoke")
  config.freematch.ema_p = 0.5  # visible EMA moves in one step
  exp = experiment.setup(config, devices=jax.devices()[:1])
  s0 = exp.state.method_state["freematch"]
  assert float(s0["global_threshold"]) == 1.0 and float(jnp.min(s0["class_probs"])) == 1.0
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  fm = state.method_state["freematch"]
  assert 0.5 < float(fm["global_threshold"]) < 1.0
  np.testing.assert_allclose(float(metrics["freematch/global_threshold"]),
                             float(fm["global_threshold"]))
  np.testing.assert_allclose(float(jnp.sum(fm["label_hist"])), 0.5 * 10 + 0.5, rtol=1e-5)
  assert np.isfinite(float(metrics["loss/freematch"]))
  assert np.isfinite(float(metrics["grad_norm"]))
  np.testing.assert_allclose(float(metrics["loss/freematch"]),
                             float(metrics["freematch/consistency"])
                             + 0.01 * float(metrics["freematch/fairness"]), rtol=1e-5)
  assert {f"freematch/threshold/{c}" for c in range(10)} <= set(metrics)
  assert "freematch/pseudo_label_accuracy" in metrics and "freematch/mask_rate" in metrics
  restored = flax.serialization.from_state_dict(s0, flax.serialization.to_state_dict(
      jax.tree.map(np.asarray, fm)))
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  back = train.restore_checkpoint(manager, exp.state).method_state["freematch"]
  manager.close()
  for got in (restored, back):
    for name in ("global_threshold", "class_probs", "label_hist"):
      np.testing.assert_array_equal(got[name], fm[name])
