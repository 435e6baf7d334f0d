"""AdaMatch: the relative threshold and distribution alignment against USB's adamatch (in
numpy), hand-computed values, the checkpointed state, and one smoke step."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import (align_distribution, distribution_alignment_update,
                         masked_pseudo_label_loss, relative_threshold)
from sslx.methods import adamatch


class UsbAdaMatch:
  """USB's adamatch mask and pseudo-labels (DistAlignEMAHook 'model' + the relative
  threshold hook), re-written in numpy."""

  def __init__(self, k, m, p_cutoff):
    self.m, self.p_cutoff = m, p_cutoff
    self.p_model, self.p_target = None, np.ones(k) / k

  def step(self, probs_lb, probs_ulb):
    mean = probs_ulb.mean(0)
    self.p_model = mean if self.p_model is None else self.p_model * self.m + mean * (1 - self.m)
    self.p_target = self.p_target * self.m + probs_lb.mean(0) * (1 - self.m)
    aligned = probs_ulb * (self.p_target + 1e-6) / (self.p_model + 1e-6)
    aligned = aligned / aligned.sum(-1, keepdims=True)
    cutoff = probs_lb.max(-1).mean() * self.p_cutoff
    return (aligned.max(-1) >= cutoff).astype(np.float64), aligned.argmax(-1)


def _step(state, probs_lb, probs_ulb, m, tau):
  p, t, n = distribution_alignment_update(*state, probs_ulb, probs_lb, momentum=m)
  aligned = align_distribution(probs_ulb, p, t)
  mask = (jnp.max(aligned, -1) >= relative_threshold(probs_lb, threshold=tau)).astype(jnp.float32)
  return (p, t, n), mask, jnp.argmax(aligned, -1)


def test_hand_computed_threshold_and_alignment():
  # tau times the mean labeled confidence: .9 * (.8 + .6) / 2.
  np.testing.assert_allclose(relative_threshold(jnp.array([[0.8, 0.2], [0.4, 0.6]]),
                                                threshold=0.9), 0.63, rtol=1e-6)
  # One step from USB's start, lambda = .5: p_model = the batch mean (.7, .3); p_target =
  # .5 (.5, .5) + .5 (.9, .1) = (.7, .3): the alignment is the identity here.
  state = (jnp.zeros(2), jnp.full(2, 0.5), jnp.int32(0))
  probs_lb = jnp.array([[0.9, 0.1], [0.9, 0.1]])
  probs_ulb = jnp.array([[0.8, 0.2], [0.6, 0.4]])
  state, mask, labels = _step(state, probs_lb, probs_ulb, 0.5, 0.95)
  np.testing.assert_allclose(state[0], [0.7, 0.3], rtol=1e-6)
  np.testing.assert_allclose(state[1], [0.7, 0.3], rtol=1e-6)
  np.testing.assert_array_equal(mask, [0, 0])  # .8 and .6 < .95 * .9 = .855
  np.testing.assert_array_equal(labels, [0, 0])
  with pytest.raises(ValueError, match="probs_labeled"):
    relative_threshold(jnp.ones(3))


def test_sequence_matches_usb_adamatch():
  rng = np.random.default_rng(4)
  k, m, tau = 4, 0.7, 0.9
  usb = UsbAdaMatch(k, m, tau)
  state = (jnp.zeros(k), jnp.full(k, 1.0 / k), jnp.int32(0))
  step = jax.jit(lambda s, pl, pu: _step(s, pl, pu, m, tau))
  seen = set()
  for t in range(10):
    probs_lb = rng.dirichlet(np.full(k, 0.2), size=4).astype(np.float32)
    probs_ulb = rng.dirichlet(np.full(k, 0.2 + 0.05 * t), size=12).astype(np.float32)
    want_mask, want_labels = usb.step(probs_lb.astype(np.float64), probs_ulb.astype(np.float64))
    state, mask, labels = step(state, probs_lb, probs_ulb)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(state[0], usb.p_model, rtol=1e-5)
    np.testing.assert_allclose(state[1], usb.p_target, rtol=1e-5)
    seen.update(np.asarray(mask).tolist())
  assert seen == {0.0, 1.0}
  # The unlabeled loss of a batch is USB's masked CE on the aligned argmax.
  logits = rng.normal(size=(12, k)).astype(np.float32)
  z = logits.astype(np.float64)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  np.testing.assert_allclose(masked_pseudo_label_loss(logits, labels, mask),
                             np.mean(-log_p[np.arange(12), np.asarray(labels)] * np.asarray(mask)),
                             rtol=1e-6)


def test_option_errors_name_the_field():
  opts = adamatch.OPTIONS.copy_and_resolve_references()
  opts.threshold, opts.ema_p = 2.0, 1.0
  errors = adamatch.option_errors(opts)
  assert any("adamatch.threshold" in e for e in errors)
  assert any("adamatch.ema_p" in e for e in errors)


def test_smoke_step_and_state_survive_a_checkpoint(tmp_path):
  config = load_experiment("adamatch_digits", "smoke")
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  am = state.method_state["adamatch"]
  assert int(am["da_updates"]) == 1
  np.testing.assert_allclose(float(jnp.sum(am["p_model"])), 1.0, rtol=1e-5)
  np.testing.assert_allclose(float(jnp.sum(am["p_target"])), 1.0, rtol=1e-5)
  assert 0 < float(metrics["adamatch/relative_threshold"]) <= 0.95
  assert np.isfinite(float(metrics["loss/adamatch"]))
  assert np.isfinite(float(metrics["grad_norm"]))
  assert {"adamatch/mask_rate", "adamatch/pseudo_label_accuracy"} <= set(metrics)
  restored = flax.serialization.from_state_dict(am, flax.serialization.to_state_dict(
      jax.tree.map(np.asarray, am)))
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  back = train.restore_checkpoint(manager, exp.state).method_state["adamatch"]
  manager.close()
  for got in (restored, back):
    for name in am:
      np.testing.assert_array_equal(got[name], am[name])
