"""Dash: the threshold schedule and the selection against USB's hook (in numpy),
hand-computed values, the warm-up estimate of rho_hat over real steps, the checkpointed
state."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import dash_selection, dash_threshold, masked_pseudo_label_loss
from sslx.methods import dash


class UsbDashHook:
  """USB's DashThresholdingHook (update with its counter, then mask), in numpy."""

  def __init__(self, rho_init, rho_min, gamma, c, period, temperature):
    self.rho_init, self.rho_min, self.gamma, self.c = rho_init, rho_min, gamma, c
    self.period, self.t, self.cnt, self.rho = period, temperature, 0, None

  def masking(self, it, logits):
    if it % self.period == 0:
      self.rho = max(self.c * self.gamma ** -self.cnt * self.rho_init, self.rho_min)
      self.cnt += 1
    hard = self.rho == self.rho_min
    z = np.asarray(logits, np.float64)
    log_p = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(
        -1, keepdims=True)
    if hard:
      targets = np.eye(z.shape[1])[z.argmax(-1)]
    else:
      e = np.exp(z / self.t - (z / self.t).max(-1, keepdims=True))
      targets = e / e.sum(-1, keepdims=True)
    loss_w = -(targets * log_p).sum(-1)
    return (loss_w <= self.rho).astype(np.float64), targets, hard


def test_hand_computed_schedule():
  rho = [float(dash_threshold(jnp.int32(t), jnp.float32(2.0), update_every=10))
         for t in (0, 9, 10, 25, 10 * 40)]
  np.testing.assert_allclose(rho, [2.0002, 2.0002, 2.0002 / 1.27, 2.0002 / 1.27 ** 2, 0.05],
                             rtol=1e-6)
  # Hand-computed selection, hard labels: CE of a logit pair (log 3, 0) against its argmax is
  # log(4/3) = .2877 <= .3; (0, 0) gives log 2 > .3.
  mask, targets = dash_selection(jnp.array([[np.log(3.0), 0.0], [0.0, 0.0]]), jnp.float32(0.3),
                                 hard_label=True)
  np.testing.assert_array_equal(mask, [1, 0])
  np.testing.assert_array_equal(targets, [[1, 0], [1, 0]])
  with pytest.raises(ValueError, match="update_every"):
    dash_threshold(jnp.int32(0), jnp.float32(1.0), update_every=0)
  with pytest.raises(ValueError, match="rho"):
    dash_selection(jnp.zeros((2, 2)), jnp.zeros(2), hard_label=True)


def test_sequence_matches_usb_hook():
  rng = np.random.default_rng(5)
  hook = UsbDashHook(rho_init=1.5, rho_min=0.05, gamma=1.27, c=1.0001, period=3, temperature=0.5)

  @jax.jit
  def step(t, logits):
    rho = dash_threshold(t, jnp.float32(1.5), update_every=3)
    hard = rho <= 0.05
    mask, targets = dash_selection(logits, rho, hard_label=hard)
    return mask, targets, hard

  seen = set()
  for t in range(60):
    logits = (3 * rng.normal(size=(16, 5))).astype(np.float32)
    want_mask, want_targets, want_hard = hook.masking(t, logits)
    mask, targets, hard = step(jnp.int32(t), logits)
    assert bool(hard) == want_hard
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(targets, want_targets, rtol=1e-5, atol=1e-7)
    seen.add((bool(hard), float(np.mean(want_mask))))
  assert {h for h, _ in seen} == {False, True}  # both regimes were reached
  # The loss on the strong views: USB's masked CE with the (soft) targets.
  z = rng.normal(size=(16, 5))
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  np.testing.assert_allclose(masked_pseudo_label_loss(z.astype(np.float32), targets, mask),
                             np.mean(-(np.asarray(targets) * log_p).sum(-1) * np.asarray(mask)),
                             rtol=1e-5)


def test_option_errors_name_the_field():
  opts = ml_collections.ConfigDict({**dash.OPTIONS.to_dict(), "warmup_steps": 0, "gamma": 0.5})
  errors = dash.option_errors(opts)
  assert any("dash.warmup_steps" in e for e in errors)
  assert any("dash.gamma" in e for e in errors)


def test_warmup_estimates_rho_hat_then_selects_and_state_survives_a_checkpoint(tmp_path):
  config = load_experiment("dash_digits", "smoke")  # warm-up: steps 0-1, rho every 2 steps
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state, history = exp.state, []
  for _ in range(4):
    state, metrics = exp.train_step(state, exp.input.arrays)
    history.append({k: float(v) for k, v in metrics.items()})
  sup = [h["loss/supervised"] for h in history]  # the labeled weak CE of the same pass
  rho_hat = 0.9 * sup[0] + 0.1 * sup[1]
  np.testing.assert_allclose(history[0]["dash/rho_init"], sup[0], rtol=1e-5)
  np.testing.assert_allclose(history[1]["dash/rho_init"], rho_hat, rtol=1e-5)
  for h in history[2:]:
    np.testing.assert_allclose(h["dash/rho_init"], rho_hat, rtol=1e-5)  # frozen
  assert [h["dash/warmup"] for h in history] == [1, 1, 0, 0]
  assert [h["loss/dash"] for h in history[:2]] == [0, 0]
  assert [h["dash/mask_rate"] for h in history[:2]] == [0, 0]
  np.testing.assert_allclose([h["dash/rho"] for h in history[2:]],
                             [max(1.0001 * rho_hat, 0.05)] * 2, rtol=1e-5)
  assert all(np.isfinite(h["loss/dash"]) and np.isfinite(h["grad_norm"]) for h in history)
  assert "dash/pseudo_label_accuracy" in history[-1]
  ds = state.method_state["dash"]
  assert int(ds["warmup_batches"]) == 2
  restored = flax.serialization.from_state_dict(ds, flax.serialization.to_state_dict(
      jax.tree.map(np.asarray, ds)))
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  back = train.restore_checkpoint(manager, exp.state).method_state["dash"]
  manager.close()
  for got in (restored, back):
    for name in ds:
      np.testing.assert_array_equal(got[name], ds[name])
