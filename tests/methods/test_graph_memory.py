"""The graph term's feature memory (``graph.memory_size``): what it writes, that an empty
memory changes nothing, that a written one brings its labels into the batch's graph, and
through the trainer (state shapes, rows written per step, errors)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.methods import label_propagation as lp


class _FakeContext:
  """What graph_loss reads: weak-view features, strong-view logits, the labeled labels."""

  def __init__(self, options, state, labeled, unlabeled, labels, logits, truth):
    self.options, self.state, self.num_classes = options, state, 3
    self.outputs = {"labeled_weak": {"features": labeled},
                    "unlabeled_weak": {"features": unlabeled},
                    "unlabeled_strong": {"logits": logits}}
    self.batch = {"labeled_labels": labels, "unlabeled_labels": truth}


def _options(memory_size, k=3):
  options = lp.GRAPH_OPTIONS.copy_and_resolve_references()
  options.memory_size, options.k = memory_size, k
  return options


def _clusters(rng, classes, centres, noise=0.05):
  return (centres[classes] + noise * rng.normal(size=(len(classes), centres.shape[1]))
          ).astype(np.float32)


_CENTRES = np.eye(3, 4, dtype=np.float32) * 3.0 + 0.5


def test_an_empty_memory_gives_the_batch_graph_loss_and_is_then_written():
  rng = np.random.default_rng(0)
  labels = np.array([0, 1, 2, 0], np.int32)
  truth = np.array([0, 1, 2, 0, 1, 2], np.int32)
  labeled, unlabeled = _clusters(rng, labels, _CENTRES), _clusters(rng, truth, _CENTRES)
  logits = rng.normal(size=(6, 3)).astype(np.float32)
  plain = lp.graph_loss(_FakeContext(_options(0), None, labeled, unlabeled, labels, logits,
                                     truth))
  assert len(plain) == 2  # no memory: no state
  info = types.SimpleNamespace(feature_dim=4)
  state = lp._graph_init(_options(16), info)
  assert lp._graph_init(_options(0), info) == {}
  loss, metrics, new = jax.jit(lambda s: lp.graph_loss(_FakeContext(
      _options(16), s, labeled, unlabeled, labels, logits, truth)))(state)
  np.testing.assert_allclose(loss, plain[0], rtol=1e-5)
  np.testing.assert_allclose(metrics["pseudo_label_accuracy"],
                             plain[1]["pseudo_label_accuracy"])
  np.testing.assert_allclose(metrics["mean_certainty"], plain[1]["mean_certainty"], rtol=1e-5)
  # Written: the 10 batch rows (labeled first, unlabeled as -1), unit length; the rest empty.
  both = np.concatenate([labeled, unlabeled])
  np.testing.assert_allclose(new["features"][:10],
                             both / np.linalg.norm(both, axis=1, keepdims=True), rtol=1e-5)
  np.testing.assert_array_equal(new["labels"][:10], [0, 1, 2, 0, -1, -1, -1, -1, -1, -1])
  np.testing.assert_array_equal(new["labels"][10:], lp._EMPTY)
  np.testing.assert_array_equal(new["features"][10:], 0.0)
  assert int(new["pointer"]) == 10
  # The next step wraps around: rows 10..15 then 0..3.
  _, _, newer = lp.graph_loss(_FakeContext(_options(16), new, labeled, unlabeled, labels,
                                           logits, truth))
  assert int(newer["pointer"]) == 4
  np.testing.assert_array_equal(newer["labels"][10:16], [0, 1, 2, 0, -1, -1])
  np.testing.assert_array_equal(newer["labels"][:4], [-1, -1, -1, -1])
  np.testing.assert_array_equal(newer["labels"][4:10], new["labels"][4:10])


def test_the_memory_brings_labels_the_batch_lacks():
  rng = np.random.default_rng(1)
  labels = np.array([0, 0, 1, 1], np.int32)  # no class-2 label in this batch
  truth = np.array([2, 2, 2, 0, 1, 2], np.int32)
  labeled, unlabeled = _clusters(rng, labels, _CENTRES), _clusters(rng, truth, _CENTRES)
  logits = np.zeros((6, 3), np.float32)
  without = lp.graph_loss(_FakeContext(_options(0), None, labeled, unlabeled, labels, logits,
                                       truth))
  assert float(without[1]["pseudo_label_accuracy"]) < 0.34  # 2 of 6 at most: no class 2
  # A memory holding labeled class-2 images (earlier batches), and empty rows.
  memory_labels = np.array([2, 2, 2, lp._EMPTY, lp._EMPTY, lp._EMPTY, lp._EMPTY, lp._EMPTY,
                            lp._EMPTY, lp._EMPTY, lp._EMPTY, lp._EMPTY], np.int32)
  features = np.zeros((12, 4), np.float32)
  features[:3] = _clusters(rng, np.array([2, 2, 2]), _CENTRES)
  state = {"features": jnp.asarray(features), "labels": jnp.asarray(memory_labels),
           "pointer": jnp.asarray(3, jnp.int32)}
  _, metrics, _ = lp.graph_loss(_FakeContext(_options(12), state, labeled, unlabeled, labels,
                                             logits, truth))
  assert float(metrics["pseudo_label_accuracy"]) == 1.0


def test_class_weights_count_written_points_only():
  pseudo = jnp.array([0, 0, 1, 2, 0, 0])
  valid = jnp.array([True, True, True, True, False, False])
  np.testing.assert_allclose(lp.class_weights(pseudo, 3, valid),
                             [(4 / 3) / 2, 4 / 3, 4 / 3], rtol=1e-6)


def test_trainer_writes_the_memory_and_refuses_one_smaller_than_the_batch():
  config = load_experiment("fixmatch_graph_digits", "smoke")
  config.graph.memory_size = 40
  exp = experiment.setup(config, devices=jax.devices()[:1])
  n = config.batch_size * (1 + config.unlabeled_ratio)  # labeled + unlabeled weak views
  s0 = jax.tree.map(np.asarray, exp.state.method_state["graph"])
  assert s0["features"].shape[0] == 40 and s0["features"].shape[1] > 0
  state, _ = exp.train_step(exp.state, exp.input.arrays)
  s1 = jax.tree.map(np.asarray, state.method_state["graph"])
  assert int(s1["pointer"]) == n % 40
  assert np.all((s1["labels"][:config.batch_size] >= 0))  # the labeled images' labels
  np.testing.assert_array_equal(s1["labels"][config.batch_size:n], -1)
  np.testing.assert_array_equal(s1["labels"][n:], lp._EMPTY)
  np.testing.assert_allclose(np.linalg.norm(s1["features"][:n], axis=1), 1.0, rtol=1e-5)
  config.graph.memory_size = n - 1
  exp = experiment.setup(config, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=rf"graph.memory_size \({n - 1}\) must be at least the "
                                       rf"batch"):
    exp.train_step(exp.state, exp.input.arrays)


def test_option_errors_name_the_field():
  options = _options(0)
  assert lp.graph_option_errors(options) == []
  options.memory_size = -1
  assert any("graph.memory_size" in e and "-1" in e for e in lp.graph_option_errors(options))
