"""FlexMatch: the class-wise learning effect, thresholds and pool state against USB's hook,
a hand-computed sequence, the checkpointed state, and one smoke step."""

import collections

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import (flexmatch_learning_effect, flexmatch_select, flexmatch_thresholds,
                         masked_pseudo_label_loss, pseudo_label_diagnostics)
from sslx.methods import flexmatch


class UsbFlexMatchHook:
  """USB's FlexMatchThresholdingHook.masking/update, re-written in numpy (Counter and all)."""

  def __init__(self, pool, num_classes, warmup):
    self.pool, self.k, self.warmup = pool, num_classes, warmup
    self.selected = -np.ones(pool, np.int64)
    self.acc = np.zeros(num_classes)

  def update(self):
    counter = collections.Counter(self.selected.tolist())
    if max(counter.values()) < self.pool:
      if self.warmup:
        denom = max(counter.values())
      else:
        denom = max(v for c, v in counter.items() if c != -1)
      for i in range(self.k):
        self.acc[i] = counter[i] / denom

  def masking(self, probs, idx, p_cutoff):
    conf, label = probs.max(-1), probs.argmax(-1)
    mask = conf >= p_cutoff * (self.acc[label] / (2.0 - self.acc[label]))
    select = conf >= p_cutoff
    self.selected[idx[select]] = label[select]
    self.update()
    return mask.astype(np.float64)


def _step(state, probs, idx, tau, warmup):
  probs = jnp.asarray(probs, jnp.float32)
  thresholds = flexmatch_thresholds(state["learning_effect"], threshold=tau)
  label = jnp.argmax(probs, -1)
  mask = (jnp.max(probs, -1) >= thresholds[label]).astype(jnp.float32)
  selected = flexmatch_select(state["selected_labels"], jnp.asarray(idx, jnp.int32), probs,
                              threshold=tau)
  effect = flexmatch_learning_effect(selected, state["learning_effect"], threshold_warmup=warmup)
  return {"selected_labels": selected, "learning_effect": effect}, mask, thresholds


def _init(pool, k):
  return {"selected_labels": jnp.full((pool,), -1, jnp.int32),
          "learning_effect": jnp.zeros((k,), jnp.float32)}


def test_hand_computed_sequence_with_threshold_warmup():
  """Pool of 4, 2 classes, tau 0.9; the numbers in the comments are worked by hand."""
  steps = [  # (indices, weak probabilities, expected mask, expected selected, expected beta)
      ([0, 1], [[0.95, 0.05], [0.6, 0.4]], [1, 1], [0, -1, -1, -1], [1 / 3, 0]),  # -1s: 3
      ([1, 2, 3], [[0.92, 0.08], [0.3, 0.7], [0.97, 0.03]], [1, 1, 1], [0, 0, -1, 0], [1, 0]),
      ([2, 0], [[0.85, 0.15], [0.2, 0.8]], [0, 1], [0, 0, -1, 0], [1, 0]),  # T = (0.9, 0)
      ([2], [[0.05, 0.95]], [1], [0, 0, 1, 0], [1, 1 / 3]),
      ([2, 3], [[0.02, 0.98], [0.02, 0.98]], [1, 1], [0, 0, 1, 1], [1, 1]),  # T_1 = 0.18
      # Every example selected as class 1: the largest count is the pool, beta is kept.
      ([0, 1], [[0.01, 0.99], [0.01, 0.99]], [1, 1], [1, 1, 1, 1], [1, 1]),
  ]
  state = _init(4, 2)
  for idx, probs, mask, selected, beta in steps:
    state, got_mask, _ = _step(state, probs, idx, 0.9, True)
    np.testing.assert_array_equal(got_mask, mask)
    np.testing.assert_array_equal(state["selected_labels"], selected)
    np.testing.assert_allclose(state["learning_effect"], beta, rtol=1e-6)
  # Without warm-up the unselected examples do not count: beta = (1, 0) after step 1.
  state, _, _ = _step(_init(4, 2), steps[0][1], steps[0][0], 0.9, False)
  np.testing.assert_allclose(state["learning_effect"], [1, 0])
  # The convex mapping: T_c = tau * beta / (2 - beta).
  np.testing.assert_allclose(flexmatch_thresholds(jnp.array([0.0, 1 / 3, 1.0]), threshold=0.9),
                             [0.0, 0.18, 0.9], rtol=1e-6)


@pytest.mark.parametrize("warmup", [True, False])
def test_state_sequence_matches_usb_hook(warmup):
  rng = np.random.default_rng(1)
  pool, k, tau = 30, 4, 0.7
  usb, state = UsbFlexMatchHook(pool, k, warmup), _init(pool, k)
  step = jax.jit(lambda s, p, i: _step(s, p, i, tau, warmup))
  for t in range(12):
    idx = rng.choice(pool, 8, replace=False)
    probs = rng.dirichlet(np.full(k, 0.3 + 0.1 * t), size=8).astype(np.float32)
    want_mask = usb.masking(probs.astype(np.float64), idx, tau)
    state, mask, _ = step(state, probs, idx)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(state["selected_labels"], usb.selected)
    np.testing.assert_allclose(state["learning_effect"], usb.acc, rtol=1e-6)
  assert 0 < (usb.selected >= 0).sum() < pool  # the sequence exercised both regimes


def test_masked_loss_matches_usb_consistency_loss():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 1, 0, 2], np.int32)
  mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  z = logits.astype(np.float64)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  want = np.mean(-log_p[np.arange(6), labels] * mask)  # USB: ce(reduction='none') * mask, mean
  np.testing.assert_allclose(masked_pseudo_label_loss(logits, labels, mask), want, rtol=1e-6)
  soft = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
  np.testing.assert_allclose(masked_pseudo_label_loss(logits, soft, mask),
                             np.mean(-(soft * log_p).sum(-1) * mask), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(masked_pseudo_label_loss)(logits, labels, mask), want,
                             rtol=1e-6)
  perm = rng.permutation(6)
  np.testing.assert_allclose(masked_pseudo_label_loss(logits[perm], labels[perm], mask[perm]),
                             want, rtol=1e-6)
  # Hand-computed: two classes, uniform logits, one of two examples kept: log(2) / 2.
  assert float(masked_pseudo_label_loss(jnp.zeros((2, 2)), jnp.array([0, 1]),
                                        jnp.array([1.0, 0.0]))) == pytest.approx(np.log(2) / 2)
  grad = jax.grad(lambda x: masked_pseudo_label_loss(x, labels, mask))(logits)
  assert np.isfinite(grad).all() and np.abs(grad[mask == 0]).sum() == 0
  jax.test_util.check_grads(lambda x: masked_pseudo_label_loss(x, labels, mask), (logits,),
                            order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="mask"):
    masked_pseudo_label_loss(logits, labels, mask[:3])
  with pytest.raises(ValueError, match="selected_labels"):
    flexmatch_learning_effect(jnp.zeros((4,), jnp.float32), jnp.zeros(2))
  d = pseudo_label_diagnostics(jnp.array([0, 1, 1]), jnp.array([1.0, 0.0, 1.0]),
                               jnp.array([0, 1, -1]))
  assert [float(d[k]) for k in ("mask_rate", "pseudo_label_accuracy",
                                 "masked_pseudo_label_accuracy")] == pytest.approx([2 / 3, 1, 1])


def test_option_errors_name_the_field():
  opts = flexmatch.OPTIONS.copy_and_resolve_references()
  opts.threshold, opts.temperature = 1.5, 0.0
  errors = flexmatch.option_errors(opts)
  assert any("flexmatch.threshold" in e for e in errors)
  assert any("flexmatch.temperature" in e for e in errors)


def test_smoke_step_updates_the_pool_state_and_it_survives_a_checkpoint(tmp_path):
  config = load_experiment("flexmatch_digits", "smoke")
  config.flexmatch.threshold = 0.0  # every prediction is confident: the pool fills at once
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state0 = exp.state.method_state["flexmatch"]
  assert state0["selected_labels"].shape == (exp.pool_sizes["unlabeled"],)
  assert int(jnp.max(state0["selected_labels"])) == -1
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  fm = state.method_state["flexmatch"]
  used = int(jnp.sum(fm["selected_labels"] >= 0))
  assert 0 < used <= config.batch_size * config.unlabeled_ratio
  assert float(metrics["flexmatch/unselected_fraction"]) == pytest.approx(
      1 - used / exp.pool_sizes["unlabeled"])
  assert float(metrics["flexmatch/mask_rate"]) == 1.0  # thresholds start at 0
  assert np.isfinite(float(metrics["loss/flexmatch"]))
  assert np.isfinite(float(metrics["grad_norm"]))
  assert {f"flexmatch/threshold/{c}" for c in range(10)} <= set(metrics)
  assert "flexmatch/pseudo_label_accuracy" in metrics
  # The state round-trips through the checkpoint format and an orbax checkpoint, exactly.
  restored = flax.serialization.from_state_dict(fm, flax.serialization.to_state_dict(
      jax.tree.map(np.asarray, fm)))
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  back = train.restore_checkpoint(manager, exp.state).method_state["flexmatch"]
  manager.close()
  for got in (restored, back):
    np.testing.assert_array_equal(got["selected_labels"], fm["selected_labels"])
    np.testing.assert_array_equal(got["learning_effect"], fm["learning_effect"])


def test_streamed_batches_without_pool_positions_are_refused():
  import types
  ctx = types.SimpleNamespace(options=flexmatch.OPTIONS, state=None,
                              batch={"unlabeled_images": jnp.zeros((2, 8, 8, 1))})
  with pytest.raises(ValueError, match="unlabeled_indices"):
    flexmatch.flexmatch_loss(ctx)
