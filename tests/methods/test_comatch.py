"""CoMatch: the loss, memory smoothing, graph and queues against USB's train_step (re-written
in numpy), hand-computed values, jit, gradients, a batch permutation, the state over several
steps, and smoke steps whose queues survive a checkpoint and resume exactly."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import (comatch_contrastive_loss, comatch_enqueue, comatch_memory_smoothing,
                         comatch_pseudo_label_graph, distribution_queue_update)
from sslx.methods import comatch


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


class UsbCoMatch:
  """USB's CoMatch.train_step (DistAlignQueueHook uniform, FixedThresholdingHook,
  update_bank, comatch_contrastive_loss), in numpy."""

  def __init__(self, queue_batch, rows, dim, k, da_len, T, alpha, p_cutoff, c_cutoff, lambda_c):
    self.queue_batch, self.queue_size = queue_batch, queue_batch * rows
    self.queue_feats, self.queue_probs = np.zeros((self.queue_size, dim)), np.zeros(
        (self.queue_size, k))
    self.queue_ptr = 0
    self.p_model, self.p_ptr = np.zeros((da_len, k)), 0
    self.T, self.alpha, self.p_cutoff, self.c_cutoff, self.lambda_c = (
        T, alpha, p_cutoff, c_cutoff, lambda_c)

  def update_bank(self, feats, probs):
    length = feats.shape[0]
    if self.queue_ptr + length > self.queue_size:
      cut = self.queue_size - self.queue_ptr
      feats, probs = feats[:cut], probs[:cut]
    self.queue_feats[self.queue_ptr:self.queue_ptr + length] = feats
    self.queue_probs[self.queue_ptr:self.queue_ptr + length] = probs
    self.queue_ptr = (self.queue_ptr + length) % self.queue_size

  def step(self, logits_w, logits_s0, feats_w, feats_s0, feats_s1, feats_lb, y_lb, epoch, it):
    probs = _softmax(logits_w)
    self.p_model[self.p_ptr] = probs.mean(0)
    self.p_ptr = (self.p_ptr + 1) % len(self.p_model)
    probs = probs * (1 / probs.shape[1] + 1e-6) / (self.p_model.mean(0) + 1e-6)
    probs = probs / probs.sum(-1, keepdims=True)
    probs_orig = probs.copy()
    if epoch > 0 and it > self.queue_batch:
      a = np.exp(feats_w @ self.queue_feats.T / self.T)
      a = a / a.sum(1, keepdims=True)
      probs = self.alpha * probs + (1 - self.alpha) * a @ self.queue_probs
    mask = (probs.max(-1) >= self.p_cutoff).astype(np.float64)
    onehot = np.eye(probs.shape[1])[y_lb]
    self.update_bank(np.concatenate([feats_w, feats_lb]), np.concatenate([probs_orig, onehot]))
    unsup = np.mean(np.sum(-probs * np.log(_softmax(logits_s0)), 1) * mask)
    q = probs @ probs.T
    np.fill_diagonal(q, 1)
    q = q * (q >= self.c_cutoff)
    q = q / q.sum(1, keepdims=True)
    sim = np.exp(feats_s0 @ feats_s1.T / self.T)
    sim_probs = sim / sim.sum(1, keepdims=True)
    contrast = np.mean(-(np.log(sim_probs + 1e-7) * q).sum(1))
    return unsup + self.lambda_c * contrast, mask, q


def _fake_ctx(options, state, step, data):
  """A Context stand-in whose embedding head is the l2 normalisation."""
  outputs = {"labeled_weak": {"features": data["feats_lb"]},
             "unlabeled_weak": {"logits": data["logits_w"], "features": data["feats_w"]},
             "unlabeled_strong": {"logits": data["logits_s0"], "features": data["feats_s0"]},
             "unlabeled_strong_2": {"features": data["feats_s1"]}}
  return types.SimpleNamespace(
      options=options, state=state, step=jnp.asarray(step, jnp.int32), outputs=outputs,
      batch={"labeled_labels": data["y_lb"], "unlabeled_labels": data["truth"]},
      extra=lambda name, x, params="online": x / jnp.linalg.norm(x, axis=-1, keepdims=True))


def test_method_matches_usb_train_step_over_several_steps():
  rng = np.random.default_rng(0)
  b, bl, k, d, da_len, queue_batch = 6, 3, 3, 4, 4, 2
  opts = comatch.OPTIONS.copy_and_resolve_references()
  opts.update(threshold=0.9, contrast_threshold=0.5, temperature=0.5, da_len=da_len,
              queue_size=queue_batch * (b + bl), warmup_steps=1, contrast_weight=0.5)
  state = comatch.init_state(opts, types.SimpleNamespace(num_classes=k))
  state["queue_embeddings"] = jnp.zeros((opts.queue_size, d))
  usb = UsbCoMatch(queue_batch, b + bl, d, k, da_len, 0.5, 0.9, 0.9, 0.5, 0.5)
  loss_fn = jax.jit(lambda s, t, data: comatch.comatch_loss(_fake_ctx(opts, s, t, data)))
  f32 = lambda x: np.asarray(x, np.float32)
  neighbours, smoothing, masks = [], [], []
  for t in range(6):  # smoothing from step 3 (USB: it > queue_batch); the queues wrap
    centers = rng.normal(size=(k, d))
    y_w = rng.integers(0, k, b)
    data = {"logits_w": f32(4 * np.eye(k)[y_w] + rng.normal(size=(b, k))),
            "logits_s0": f32(rng.normal(size=(b, k))),
            "feats_w": f32(centers[y_w] + 0.3 * rng.normal(size=(b, d))),
            "feats_s0": f32(rng.normal(size=(b, d))), "feats_s1": f32(rng.normal(size=(b, d))),
            "feats_lb": f32(rng.normal(size=(bl, d))),
            "y_lb": rng.integers(0, k, bl).astype(np.int32), "truth": y_w.astype(np.int32)}
    n64 = lambda x: _normalize(x.astype(np.float64))
    want, want_mask, q = usb.step(
        data["logits_w"].astype(np.float64), data["logits_s0"].astype(np.float64),
        n64(data["feats_w"]), n64(data["feats_s0"]), n64(data["feats_s1"]),
        n64(data["feats_lb"]), data["y_lb"], epoch=0 if t < 1 else 1, it=t)
    loss, metrics, state = loss_fn(state, t, data)
    np.testing.assert_allclose(float(loss), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["mask_rate"]), want_mask.mean())
    np.testing.assert_allclose(state["queue_embeddings"], usb.queue_feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["queue_probs"], usb.queue_probs, rtol=1e-5, atol=1e-6)
    assert int(state["queue_pointer"]) == usb.queue_ptr
    np.testing.assert_allclose(state["p_model_queue"], usb.p_model, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics["graph_neighbours"]),
                               np.mean((q > 0).sum(1)) - 1, rtol=1e-6)
    neighbours.append(float(metrics["graph_neighbours"]))
    smoothing.append(float(metrics["smoothing"]))
    masks.append(want_mask.mean())
  assert smoothing == [0, 0, 0, 1, 1, 1]
  assert 0 < np.mean(masks) < 1  # the threshold both kept and dropped examples
  assert max(neighbours) > 0  # the graph had edges besides the self-loops


def test_hand_computed_values():
  e = math.e
  # Memory smoothing: one query e1, queue (e1: class 0, e2: class 1), T = 1, alpha 0.5.
  got = comatch_memory_smoothing(np.array([[0.6, 0.4]], np.float32),
                                 np.array([[1.0, 0.0]], np.float32), np.eye(2, dtype=np.float32),
                                 np.eye(2, dtype=np.float32), temperature=1.0, alpha=0.5)
  np.testing.assert_allclose(got[0], 0.5 * np.array([0.6, 0.4]) + 0.5 * np.array([e, 1]) / (e + 1),
                             rtol=1e-6)
  # Graph: two images of class 0, one of class 1 -> two blocks, rows normalised.
  probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
  graph = comatch_pseudo_label_graph(probs, threshold=0.8)
  np.testing.assert_allclose(graph, [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1]])
  # Self-loops survive any threshold; 0.6 . 0.4 agreements (0.52) fall under 0.8.
  soft = np.array([[0.6, 0.4], [0.6, 0.4]], np.float32)
  np.testing.assert_allclose(comatch_pseudo_label_graph(soft, threshold=0.8), np.eye(2))
  w = np.array([[1.0, 0.52], [0.52, 1.0]]) / 1.52  # the self-loop weighs 1, not p . p
  np.testing.assert_allclose(comatch_pseudo_label_graph(soft, threshold=0.5), w, rtol=1e-6)
  # Contrastive loss, T = 1, embeddings e1, e1, e2 in both views.
  z = probs
  row_0 = -math.log(e / (2 * e + 1) + 1e-7)  # = -0.5 log(..) - 0.5 log(..)
  row_2 = -math.log(e / (2 + e) + 1e-7)
  loss = comatch_contrastive_loss(z, z, graph, temperature=1.0)
  assert float(loss) == pytest.approx((2 * row_0 + row_2) / 3, rel=1e-6)
  # Queues: 4 rows, pointer 3, two rows written -> rows 3 and 0, pointer 1.
  qe, qp, ptr = comatch_enqueue(jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.int32(3),
                                np.array([[1.0, 0], [0, 1.0]], np.float32),
                                np.array([[0.3, 0.7], [0.9, 0.1]], np.float32))
  np.testing.assert_allclose(qe, [[0, 1], [0, 0], [0, 0], [1, 0]])
  np.testing.assert_allclose(qp, [[0.9, 0.1], [0, 0], [0, 0], [0.3, 0.7]])
  assert int(ptr) == 1
  queue, ptr = distribution_queue_update(jnp.zeros((2, 2)), jnp.int32(1),
                                         np.array([[1.0, 0], [0.2, 0.8]], np.float32))
  np.testing.assert_allclose(queue, [[0, 0], [0.6, 0.4]])
  assert int(ptr) == 0


def test_jit_gradients_permutation_and_errors():
  rng = np.random.default_rng(1)
  b, d, c = 8, 5, 3
  z0 = _normalize(rng.normal(size=(b, d))).astype(np.float32)
  z1 = _normalize(rng.normal(size=(b, d))).astype(np.float32)
  probs = _softmax(4 * rng.normal(size=(b, c))).astype(np.float32)
  graph = comatch_pseudo_label_graph(probs, threshold=0.8)
  np.testing.assert_allclose(np.sum(graph, -1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(lambda p: comatch_pseudo_label_graph(p, threshold=0.8))(
      probs), graph, rtol=1e-6)
  fn = lambda a, b_: comatch_contrastive_loss(a, b_, graph, temperature=0.2)
  loss = fn(z0, z1)
  np.testing.assert_allclose(jax.jit(fn)(z0, z1), loss, rtol=1e-6)
  perm = rng.permutation(b)
  graph_p = comatch_pseudo_label_graph(probs[perm], threshold=0.8)
  np.testing.assert_allclose(graph_p, np.asarray(graph)[perm][:, perm], rtol=1e-6)
  np.testing.assert_allclose(comatch_contrastive_loss(z0[perm], z1[perm], graph_p,
                                                      temperature=0.2), loss, rtol=1e-5)
  queue_z = _normalize(rng.normal(size=(10, d))).astype(np.float32)
  queue_p = _softmax(rng.normal(size=(10, c))).astype(np.float32)
  smoothed = comatch_memory_smoothing(probs, z0, queue_z, queue_p, temperature=0.2, alpha=0.9)
  np.testing.assert_allclose(np.sum(smoothed, -1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(comatch_memory_smoothing(probs[perm], z0[perm], queue_z, queue_p,
                                                      temperature=0.2, alpha=0.9),
                             np.asarray(smoothed)[perm], rtol=1e-6)
  g0, g1 = jax.grad(fn, argnums=(0, 1))(z0, z1)
  assert np.isfinite(g0).all() and np.isfinite(g1).all() and np.abs(g0).sum() > 0
  jax.test_util.check_grads(lambda a: comatch_contrastive_loss(a, z1, graph, temperature=1.0),
                            (z0,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="graph"):
    comatch_contrastive_loss(z0, z1, graph[:4], temperature=0.2)
  with pytest.raises(ValueError, match="embeddings_1"):
    comatch_contrastive_loss(z0, z1[:4], graph, temperature=0.2)
  with pytest.raises(ValueError, match="queue_probs"):
    comatch_memory_smoothing(probs, z0, queue_z, queue_p[:, :2], temperature=0.2, alpha=0.9)
  with pytest.raises(ValueError, match="threshold"):
    comatch_pseudo_label_graph(probs, threshold=1.5)
  with pytest.raises(ValueError, match="queue_embeddings"):
    comatch_enqueue(jnp.zeros((4, d)), jnp.zeros((4, c)), jnp.int32(0), z0, probs)


def test_option_errors_name_the_field():
  opts = comatch.OPTIONS.copy_and_resolve_references()
  opts.update(contrast_threshold=2.0, temperature=-1.0, queue_size=0, smoothing_alpha=1.5)
  errors = "\n".join(comatch.option_errors(opts))
  for field in ("contrast_threshold", "temperature", "queue_size", "smoothing_alpha"):
    assert f"comatch.{field}" in errors
  assert comatch.option_errors(comatch.OPTIONS) == []
  for bad in (float('nan'), float('inf')):  # every float option refuses NaN and inf
    for field, value in comatch.OPTIONS.items():
      if isinstance(value, float):
        opts = comatch.OPTIONS.copy_and_resolve_references()
        opts[field] = bad
        assert any(f'comatch.{field}' in e for e in comatch.option_errors(opts)), field


def test_smoke_steps_fill_the_queue_and_resume_exactly(tmp_path):
  config = load_experiment("comatch_digits", "smoke")
  rows = config.batch_size * (config.unlabeled_ratio + 1)
  config.comatch.queue_size = rows  # one step of rows: smoothing from step 2
  exp = experiment.setup(config, devices=jax.devices()[:1])
  host = lambda t: jax.tree.map(np.asarray, t)
  state = exp.state
  assert state.method_state["comatch"]["queue_embeddings"].shape == (rows, 16)
  smoothing = []
  for _ in range(3):
    state, metrics = exp.train_step(state, exp.input.arrays)
    smoothing.append(float(metrics["comatch/smoothing"]))
    for key in ("loss/comatch", "grad_norm", "comatch/contrastive",
                "comatch/pseudo_label_accuracy"):
      assert np.isfinite(float(metrics[key])), key
  assert smoothing == [0.0, 0.0, 1.0]
  cm = host(state.method_state["comatch"])
  np.testing.assert_allclose(np.linalg.norm(cm["queue_embeddings"], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(cm["queue_probs"].sum(-1), 1.0, rtol=1e-5)
  labeled_rows = cm["queue_probs"][-config.batch_size:]  # the labeled batch, one-hot
  assert set(np.unique(labeled_rows)) <= {0.0, 1.0}
  assert int(cm["num_enqueued"]) == rows + 1 and int(cm["queue_pointer"]) == 0
  # Checkpoint round trip, then one more step from the restored and the live state.
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  restored = train.restore_checkpoint(manager, exp.state)
  manager.close()
  jax.tree.map(np.testing.assert_array_equal, cm, host(restored.method_state["comatch"]))
  a, _ = exp.train_step(state, exp.input.arrays)
  b, _ = exp.train_step(restored, exp.input.arrays)
  for x, y in zip(jax.tree.leaves(host(a)), jax.tree.leaves(host(b))):
    np.testing.assert_array_equal(x, y)
