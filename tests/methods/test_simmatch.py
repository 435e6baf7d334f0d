"""SimMatch: the loss, pseudo-labels and bank against USB's train_step (re-written in numpy),
a hand-computed value, jit, gradients, invariances, the state over several steps, and one
smoke step whose bank survives a checkpoint and resumes exactly."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import (distribution_queue_update, simmatch_bank_update, simmatch_in_loss,
                         simmatch_pseudo_labels)
from sslx.methods import simmatch


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _normalize(x, axis=-1):
  return x / np.linalg.norm(x, axis=axis, keepdims=True)


class UsbSimMatch:
  """USB's SimMatch.train_step (use_ema_teacher, DistAlignQueueHook uniform,
  FixedThresholdingHook, consistency_loss 'ce'), in numpy. The bank is [dim, K] as USB's."""

  def __init__(self, bank_t, num_classes, da_len, T, alpha, p_cutoff, lambda_in, ema_bank=None):
    self.mem_bank, self.labels_bank = bank_t.copy(), np.zeros(bank_t.shape[1], np.int64)
    self.p_model, self.ptr = np.zeros((da_len, num_classes)), 0
    self.T, self.alpha, self.p_cutoff, self.lambda_in = T, alpha, p_cutoff, lambda_in
    self.ema_bank = ema_bank

  def step(self, logits_w, logits_s, feats_w, feats_s, feats_lb, y_lb, idx_lb, epoch):
    bank = self.mem_bank.copy()
    probs = _softmax(logits_w)
    self.p_model[self.ptr] = probs.mean(0)  # update_p, then align
    self.ptr = (self.ptr + 1) % len(self.p_model)
    probs = probs * (1 / probs.shape[1] + 1e-6) / (self.p_model.mean(0) + 1e-6)
    probs = probs / probs.sum(-1, keepdims=True)
    teacher_prob_orig = _softmax(feats_w @ bank / self.T)
    factor = probs[:, self.labels_bank]  # gather(1, labels_bank.expand)
    teacher_prob = teacher_prob_orig * factor
    teacher_prob /= teacher_prob.sum(1, keepdims=True)
    aggregated = np.zeros_like(probs)
    for k, c in enumerate(self.labels_bank):  # scatter_add
      aggregated[:, c] += teacher_prob_orig[:, k]
    probs_w = probs * self.alpha + aggregated * (1 - self.alpha)
    student_prob = _softmax(feats_s @ bank / self.T)
    in_loss = np.sum(-teacher_prob * np.log(student_prob), axis=1).mean()
    if epoch == 0:
      in_loss *= 0.0
      probs_w = probs
    mask = (probs_w.max(-1) >= self.p_cutoff).astype(np.float64)
    log_p = np.log(_softmax(logits_s))
    unsup = np.mean(np.sum(-probs_w * log_p, axis=1) * mask)
    if self.ema_bank is None:
      self.mem_bank[:, idx_lb] = feats_lb.T
    else:
      self.mem_bank[:, idx_lb] = _normalize(
          self.ema_bank * self.mem_bank[:, idx_lb] + (1 - self.ema_bank) * feats_lb.T, axis=0)
    self.labels_bank[idx_lb] = y_lb
    return unsup + self.lambda_in * in_loss, mask


def _fake_ctx(options, state, step, data):
  """A Context stand-in: the head is the l2 normalisation, the teacher pass returns the
  labeled 'teacher' features, so the method's composition is compared with USB's."""
  head = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  outputs = {"unlabeled_weak": {"logits": data["logits_w"], "features": data["feats_w"]},
             "unlabeled_strong": {"logits": data["logits_s"], "features": data["feats_s"]},
             "labeled_weak": {"features": data["feats_lb_online"]}}
  return types.SimpleNamespace(
      options=options, state=state, step=jnp.asarray(step, jnp.int32), outputs=outputs,
      images={"labeled_weak": None},
      batch={"labeled_labels": data["y_lb"], "labeled_indices": data["idx_lb"],
             "unlabeled_labels": data["truth"]},
      extra=lambda name, x, params="online": head(x),
      forward=lambda images, params="online", train=True: {"features": data["feats_lb"]})


def _random_step(rng, b=6, bl=3, k=4, d=5, pool=5):
  f32 = lambda x: np.asarray(x, np.float32)
  return {"logits_w": f32(3 * rng.normal(size=(b, k))), "logits_s": f32(rng.normal(size=(b, k))),
          "feats_w": f32(rng.normal(size=(b, d))), "feats_s": f32(rng.normal(size=(b, d))),
          "feats_lb": f32(rng.normal(size=(bl, d))),
          "feats_lb_online": f32(rng.normal(size=(bl, d))),
          "y_lb": rng.integers(0, k, bl).astype(np.int32),
          "idx_lb": rng.choice(pool, bl, replace=False).astype(np.int32),
          "truth": rng.integers(-1, k, b).astype(np.int32)}


@pytest.mark.parametrize("bank_momentum", [0.0, 0.7])
def test_method_matches_usb_train_step_over_several_steps(bank_momentum):
  rng = np.random.default_rng(0)
  k, d, pool, da_len = 4, 5, 5, 3
  opts = simmatch.OPTIONS.copy_and_resolve_references()
  opts.update(threshold=0.5, temperature=0.5, da_len=da_len, warmup_steps=2,
              in_loss_weight=0.7, bank_momentum=bank_momentum)
  bank = _normalize(rng.normal(size=(pool, d))).astype(np.float32)
  state = {"bank": jnp.asarray(bank), "bank_labels": jnp.zeros((pool,), jnp.int32),
           "p_model_queue": jnp.zeros((da_len, k)), "p_model_pointer": jnp.zeros((), jnp.int32)}
  usb = UsbSimMatch(bank.T.astype(np.float64), k, da_len, 0.5, 0.9, 0.5, 0.7,
                    ema_bank=bank_momentum or None)
  loss_fn = jax.jit(lambda s, t, data: simmatch.simmatch_loss(_fake_ctx(opts, s, t, data)))
  masks = []
  for t in range(5):  # da queue wraps at 3; warm-up ends at step 2
    data = _random_step(rng, k=k, d=d, pool=pool)
    feats_lb = data["feats_lb"] if bank_momentum == 0 else data["feats_lb_online"]
    n64 = lambda x: _normalize(x.astype(np.float64))
    want_loss, want_mask = usb.step(
        data["logits_w"].astype(np.float64), data["logits_s"].astype(np.float64),
        n64(data["feats_w"]), n64(data["feats_s"]), n64(feats_lb), data["y_lb"],
        data["idx_lb"], epoch=0 if t < 2 else 1)
    loss, metrics, state = loss_fn(state, t, data)
    np.testing.assert_allclose(float(loss), want_loss, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["mask_rate"]), want_mask.mean())
    np.testing.assert_allclose(state["bank"], usb.mem_bank.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state["bank_labels"], usb.labels_bank)
    np.testing.assert_allclose(state["p_model_queue"], usb.p_model, rtol=1e-5, atol=1e-7)
    assert int(state["p_model_pointer"]) == usb.ptr
    assert (float(metrics["in_loss"]) == 0.0) == (t < 2)
    masks.append(want_mask.mean())
  assert 0 < np.mean(masks) < 1  # the threshold both kept and dropped examples


def test_hand_computed_pseudo_labels_and_in_loss():
  # One example, bank e1 (label 0) and e2 (label 1), T = 1: q = (e, 1) / (e + 1).
  e = math.e
  q = np.array([e, 1.0]) / (e + 1)
  p = np.array([[0.8, 0.2]], np.float32)
  unfolded, aggregated = simmatch_pseudo_labels(
      p, np.array([[1.0, 0.0]], np.float32), np.eye(2, dtype=np.float32), np.array([0, 1]),
      temperature=1.0, smoothing_alpha=0.5)
  want_unfolded = np.array([0.8 * q[0], 0.2 * q[1]]) / (0.8 * q[0] + 0.2 * q[1])
  np.testing.assert_allclose(unfolded[0], want_unfolded, rtol=1e-6)
  np.testing.assert_allclose(aggregated[0], 0.5 * p[0] + 0.5 * q, rtol=1e-6)
  # Strong embedding e2: log-softmax of (0, 1) is (-log(1 + e), 1 - log(1 + e)).
  loss = simmatch_in_loss(np.array([[0.0, 1.0]], np.float32), np.eye(2, dtype=np.float32),
                          unfolded, temperature=1.0)
  want = want_unfolded[0] * math.log(1 + e) + want_unfolded[1] * (math.log(1 + e) - 1)
  assert float(loss) == pytest.approx(want, rel=1e-6)
  # Bank labels all class 1: the unfolding is q itself, the aggregation puts q's mass on 1.
  unfolded, aggregated = simmatch_pseudo_labels(
      p, np.array([[1.0, 0.0]], np.float32), np.eye(2, dtype=np.float32), np.array([1, 1]),
      temperature=1.0, smoothing_alpha=0.5)
  np.testing.assert_allclose(unfolded[0], q, rtol=1e-6)
  np.testing.assert_allclose(aggregated[0], [0.4, 0.6], rtol=1e-6)


def test_jit_gradients_invariances_and_errors():
  rng = np.random.default_rng(1)
  b, d, kb, c = 7, 6, 5, 3
  probs = _softmax(rng.normal(size=(b, c))).astype(np.float32)
  zw = _normalize(rng.normal(size=(b, d))).astype(np.float32)
  zs = _normalize(rng.normal(size=(b, d))).astype(np.float32)
  bank = _normalize(rng.normal(size=(kb, d))).astype(np.float32)
  labels = np.array([0, 2, 1, 1, 0], np.int32)
  kw = dict(temperature=0.1, smoothing_alpha=0.9)
  unfolded, aggregated = simmatch_pseudo_labels(probs, zw, bank, labels, **kw)
  jit_u, jit_a = jax.jit(lambda *a: simmatch_pseudo_labels(*a, **kw))(probs, zw, bank, labels)
  np.testing.assert_allclose(jit_u, unfolded, rtol=1e-6)
  np.testing.assert_allclose(jit_a, aggregated, rtol=1e-6)
  np.testing.assert_allclose(np.sum(aggregated, -1), 1.0, rtol=1e-6)
  loss = simmatch_in_loss(zs, bank, unfolded, temperature=0.1)
  np.testing.assert_allclose(jax.jit(lambda z: simmatch_in_loss(z, bank, unfolded,
                                                                temperature=0.1))(zs), loss,
                             rtol=1e-6)
  # Batch permutation: targets permute with the batch, the loss is unchanged; permuting the
  # bank with its labels permutes the unfolded columns and leaves the aggregation.
  perm, bperm = rng.permutation(b), rng.permutation(kb)
  u2, a2 = simmatch_pseudo_labels(probs[perm], zw[perm], bank[bperm], labels[bperm], **kw)
  np.testing.assert_allclose(u2, np.asarray(unfolded)[perm][:, bperm], rtol=1e-5)
  np.testing.assert_allclose(a2, np.asarray(aggregated)[perm], rtol=1e-5)
  np.testing.assert_allclose(simmatch_in_loss(zs[perm], bank, np.asarray(unfolded)[perm],
                                              temperature=0.1), loss, rtol=1e-5)
  grad = jax.grad(lambda z: simmatch_in_loss(z, bank, unfolded, temperature=0.1))(zs)
  assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
  jax.test_util.check_grads(lambda z: simmatch_in_loss(z, bank, unfolded, temperature=0.5),
                            (zs,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
  # The bank update is invariant to the order of the labeled batch (distinct indices).
  z_lb, y_lb, idx = zw[:3], np.array([2, 0, 1], np.int32), np.array([4, 0, 2], np.int32)
  for m in (0.0, 0.7):
    one = simmatch_bank_update(bank, labels, z_lb, y_lb, idx, momentum=m)
    p3 = np.array([2, 0, 1])
    two = simmatch_bank_update(bank, labels, z_lb[p3], y_lb[p3], idx[p3], momentum=m)
    np.testing.assert_allclose(one[0], two[0], rtol=1e-6)
    np.testing.assert_array_equal(one[1], [0, 2, 1, 1, 2])  # rows 4, 0, 2 <- 2, 0, 1
    np.testing.assert_array_equal(np.asarray(one[0])[[1, 3]], bank[[1, 3]])  # untouched rows
  with pytest.raises(ValueError, match="bank_labels"):
    simmatch_pseudo_labels(probs, zw, bank, labels[:3], **kw)
  with pytest.raises(ValueError, match="unfolded"):
    simmatch_in_loss(zs, bank, unfolded[:, :2], temperature=0.1)
  with pytest.raises(ValueError, match="temperature"):
    simmatch_in_loss(zs, bank, unfolded, temperature=0.0)
  with pytest.raises(ValueError, match="momentum"):
    simmatch_bank_update(bank, labels, z_lb, y_lb, idx, momentum=1.0)
  with pytest.raises(ValueError, match="queue"):
    distribution_queue_update(jnp.zeros((4, 2)), jnp.zeros((), jnp.int32), probs)


def test_option_errors_name_the_field():
  opts = simmatch.OPTIONS.copy_and_resolve_references()
  opts.update(threshold=1.5, temperature=0.0, da_len=0, bank_momentum=1.0, proj_size=0)
  errors = "\n".join(simmatch.option_errors(opts))
  for field in ("threshold", "temperature", "da_len", "bank_momentum", "proj_size"):
    assert f"simmatch.{field}" in errors
  assert simmatch.option_errors(simmatch.OPTIONS) == []
  for bad in (float('nan'), float('inf')):  # every float option refuses NaN and inf
    for field, value in simmatch.OPTIONS.items():
      if isinstance(value, float):
        opts = simmatch.OPTIONS.copy_and_resolve_references()
        opts[field] = bad
        assert any(f'simmatch.{field}' in e for e in simmatch.option_errors(opts)), field


def test_smoke_step_fills_the_bank_and_resumes_exactly(tmp_path):
  config = load_experiment("simmatch_digits", "smoke")
  config.simmatch.warmup_steps = 1
  exp = experiment.setup(config, devices=jax.devices()[:1])
  host = lambda t: jax.tree.map(np.asarray, t)
  state0 = host(exp.state.method_state["simmatch"])
  assert state0["bank"].shape == (exp.pool_sizes["labeled"], 16)
  np.testing.assert_allclose(np.linalg.norm(state0["bank"], axis=-1), 1.0, rtol=1e-5)
  teacher0 = host(exp.state.method_params["simmatch"]["teacher"])
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  assert float(metrics["simmatch/in_loss"]) == 0.0  # step 0 is in the warm-up
  state, metrics = exp.train_step(state, exp.input.arrays)
  assert float(metrics["simmatch/in_loss"]) > 0.0
  for key in ("loss/simmatch", "grad_norm", "simmatch/pseudo_label_accuracy"):
    assert np.isfinite(float(metrics[key])), key
  sm = host(state.method_state["simmatch"])
  written = np.any(sm["bank"] != state0["bank"], axis=-1)
  assert written.sum() > 0
  np.testing.assert_array_equal(sm["bank_labels"][written],
                                np.asarray(exp.input.arrays["labeled_labels"])[written])
  np.testing.assert_allclose(np.linalg.norm(sm["bank"], axis=-1), 1.0, rtol=1e-5)
  assert int(sm["p_model_pointer"]) == 2
  # The teacher (model and head) is an EMA with momentum 0.999 of the online parameters.
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), teacher0,
                       host(state.method_params["simmatch"]["teacher"]))
  assert max(jax.tree.leaves(moved)) > 0 and set(teacher0) == {"model", "simmatch"}
  # Checkpoint round trip, then one more step from the restored and the live state.
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  restored = train.restore_checkpoint(manager, exp.state)
  manager.close()
  jax.tree.map(np.testing.assert_array_equal, sm, host(restored.method_state["simmatch"]))
  a, _ = exp.train_step(state, exp.input.arrays)
  b, _ = exp.train_step(restored, exp.input.arrays)
  for x, y in zip(jax.tree.leaves(host(a)), jax.tree.leaves(host(b))):
    np.testing.assert_array_equal(x, y)


def test_streamed_batches_without_pool_positions_are_refused():
  ctx = types.SimpleNamespace(options=simmatch.OPTIONS, state=None,
                              batch={"labeled_images": jnp.zeros((2, 8, 8, 1))})
  with pytest.raises(ValueError, match="labeled_indices"):
    simmatch.simmatch_loss(ctx)


def test_streamed_data_is_refused_by_the_config_check():
  from sslx import methods
  config = load_experiment("simmatch_digits", "smoke")
  assert methods.config_errors(config) == []
  config.data.streaming = True
  assert any(e.startswith("loss.terms.simmatch:") and "data.streaming=False" in e
             for e in methods.config_errors(config))
