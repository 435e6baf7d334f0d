"""NNCLR as a method: its loss over several steps against solo-learn's training_step in
numpy (which view is looked up, which is enqueued, the label queue), and through the
trainer: the queue state over steps, the predictor as the method's module, errors (the
loss and lookup themselves are in tests/losses/test_nearest_neighbour.py)."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.methods import nnclr


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _official_loss(nn, p, t):
  logits = _unit(nn) @ _unit(p).T / t
  m = logits.max(1, keepdims=True)
  return -np.mean(np.diagonal(logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))))


class _FakeContext:
  """What nnclr_method_loss reads: two views' projections, a linear 'predictor'."""

  def __init__(self, options, state, z1, z2, labels, w):
    self.options, self.state, self._w = options, state, w
    self.outputs = {"unlabeled_simclr_1": {"projection": z1},
                    "unlabeled_simclr_2": {"projection": z2}}
    self.batch = {"unlabeled_labels": labels}

  def extra(self, name, x):
    assert name == "predictor"
    return x @ self._w


def test_several_steps_match_the_official_training_step():
  rng = np.random.default_rng(0)
  n, d, k = 4, 3, 10  # 10 rows, 4 a step: the third step wraps around
  options = nnclr.OPTIONS.copy_and_resolve_references()
  options.queue_size, options.temperature = k, 0.2
  info = types.SimpleNamespace(projection_dim=d)
  state = nnclr.init_state(options, info)
  ref_queue, ref_labels, ptr = np.asarray(state["queue"], np.float64), -np.ones(k, int), 0
  np.testing.assert_allclose(np.linalg.norm(ref_queue, axis=-1), 1.0, rtol=1e-6)
  w = rng.normal(size=(d, d)).astype(np.float32)
  loss_fn = jax.jit(lambda s, z1, z2, y: nnclr.nnclr_method_loss(
      _FakeContext(options, s, z1, z2, y, w)))
  for _ in range(4):
    z1, z2 = (rng.normal(size=(n, d)).astype(np.float32) for _ in range(2))
    labels = rng.integers(-1, 3, size=n).astype(np.int32)  # -1: unknown
    # solo-learn: z normalised, p = predictor(unnormalised z), find_nn on the queue so far.
    scores1, scores2 = _unit(z1) @ ref_queue.T, _unit(z2) @ ref_queue.T
    idx1 = scores1.argmax(1)
    nn1, nn2 = ref_queue[idx1], ref_queue[scores2.argmax(1)]
    p1, p2 = z1 @ w, z2 @ w
    ref_loss = _official_loss(nn1, p2, 0.2) / 2 + _official_loss(nn2, p1, 0.2) / 2
    known = labels >= 0
    ref_nn_acc = np.sum(known & (ref_labels[idx1] == labels)) / max(known.sum(), 1)
    rows = (ptr + np.arange(n)) % k
    ref_queue[rows], ref_labels[rows], ptr = _unit(z1), labels, (ptr + n) % k
    loss, metrics, state = loss_fn(state, z1, z2, labels)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["nn_accuracy"], ref_nn_acc, atol=1e-7)
    np.testing.assert_allclose(metrics["nn_similarity"], scores1.max(1).mean(), rtol=1e-5)
    np.testing.assert_allclose(state["queue"], ref_queue, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state["labels"], ref_labels)
    assert int(state["pointer"]) == ptr


def test_trainer_keeps_the_queue_and_trains_the_predictor():
  config = load_experiment("nnclr_digits", "smoke")
  config.nnclr.queue_size = 20  # 16 unlabeled images a step: the second step wraps around
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  s0 = jax.tree.map(np.asarray, state.method_state["nnclr"])
  assert s0["queue"].shape == (20, config.model.projection_dim)
  np.testing.assert_array_equal(s0["labels"], -1)
  predictor = jax.tree.map(np.asarray, state.params["nnclr"]["predictor"])
  assert sorted(predictor) == ["BatchNorm_0", "Dense_0", "Dense_1"]
  state, metrics = exp.train_step(state, exp.input.arrays)
  s1 = jax.tree.map(np.asarray, state.method_state["nnclr"])
  assert int(s1["pointer"]) == 16
  assert not np.allclose(s1["queue"][:16], s0["queue"][:16], atol=1e-3)
  np.testing.assert_array_equal(s1["queue"][16:], s0["queue"][16:])  # not reached yet
  np.testing.assert_allclose(np.linalg.norm(s1["queue"], axis=-1), 1.0, rtol=1e-5)
  assert np.all((s1["labels"][:16] >= 0) & (s1["labels"][:16] < 10))  # digits: all known
  np.testing.assert_array_equal(s1["labels"][16:], -1)
  # A fresh random queue: every neighbour is unlabeled, so no hit yet.
  assert float(metrics["nnclr/nn_accuracy"]) == 0.0
  state, metrics = exp.train_step(state, exp.input.arrays)
  s2 = jax.tree.map(np.asarray, state.method_state["nnclr"])
  assert int(s2["pointer"]) == 32 % 20
  np.testing.assert_array_equal(s2["queue"][12:16], s1["queue"][12:16])  # 16..19, 0..11 written
  # Both directions: CE over 16 columns, within a factor of log(16) at init.
  assert 0.0 < float(metrics["loss/nnclr"]) < 3 * np.log(16)
  assert -1.0 <= float(metrics["nnclr/nn_similarity"]) <= 1.0
  assert all(not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(predictor), jax.tree.leaves(state.params["nnclr"]["predictor"])))


def test_a_queue_smaller_than_the_batch_is_refused_naming_the_field():
  config = load_experiment("nnclr_digits", "smoke")
  config.nnclr.queue_size = 8
  exp = experiment.setup(config, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=r"nnclr.queue_size \(8\) must be at least the unlabeled "
                                       r"batch \(16 images\)"):
    exp.train_step(exp.state, exp.input.arrays)


def test_option_errors_name_the_field():
  options = nnclr.OPTIONS.copy_and_resolve_references()
  assert nnclr.option_errors(options) == []
  options.temperature, options.queue_size, options.views = 0.0, 0, "weak"
  options.predictor_hidden_dim = -3
  errors = nnclr.option_errors(options)
  assert any("nnclr.temperature" in e and "0.0" in e for e in errors)
  assert any("nnclr.queue_size" in e and "0" in e for e in errors)
  assert any("nnclr.predictor_hidden_dim" in e and "-3" in e for e in errors)
  assert "nnclr.views must be one of ('simclr', 'strong'), got 'weak'" in errors
  options = nnclr.OPTIONS.copy_and_resolve_references()
  options.temperature = math.inf
  assert any("nnclr.temperature" in e for e in nnclr.option_errors(options))


_TWO_DEVICES = """
import jax, numpy as np
from helpers import load_experiment
from sslx import experiment
queues = []
for n in (1, 2):
  exp = experiment.setup(load_experiment("nnclr_digits", "smoke"), devices=jax.devices()[:n])
  state = exp.state
  for _ in range(2):
    state, _ = exp.train_step(state, exp.input.arrays)
  s = state.method_state["nnclr"]
  assert s["queue"].sharding.is_fully_replicated, s["queue"].sharding
  queues.append(jax.tree.map(np.asarray, s))
np.testing.assert_allclose(queues[1]["queue"], queues[0]["queue"], rtol=1e-4, atol=1e-5)
np.testing.assert_array_equal(queues[1]["labels"], queues[0]["labels"])
assert int(queues[1]["pointer"]) == int(queues[0]["pointer"]) == 32 % 32  # 2 x 16 rows
print("ok")
"""


def test_two_devices_enqueue_the_global_batch_like_one_device():
  """The queue is replicated and written with the global batch: 2 simulated CPU devices
  (batch sharded) leave the same queue as 1 device."""
  import os
  import subprocess
  import sys
  tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([tests, os.path.dirname(tests)]))
  proc = subprocess.run([sys.executable, "-c", _TWO_DEVICES], env=env, capture_output=True,
                        text=True, timeout=600, cwd=os.path.dirname(tests))
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
