"""Tests for sslx.graph.propagation: propagation, deep-LP pseudo-labels, in-batch LP."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx import graph, losses
from sslx.graph import propagation


# ----------------------------------------------------------------- propagate


@pytest.fixture(scope="module")
def small_graph():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  idx, _ = graph.knn_graph(x, k=5, metric="euclidean")
  idx = np.asarray(idx)
  w = rng.uniform(0.2, 1.0, size=idx.shape).astype(np.float32)
  labels = np.full(40, -1)
  labels[[0, 1, 2, 3, 4, 5]] = [0, 1, 2, 0, 1, 2]
  a = np.zeros((40, 40))
  np.add.at(a, (np.repeat(np.arange(40), 5), idx.ravel()), w.ravel())
  y = np.eye(3)[np.maximum(labels, 0)] * (labels >= 0)[:, None]
  return idx, w, labels, a, y


def _spreading_closed_form(w_mat, degree, y, alpha):
  s = w_mat / np.sqrt(np.outer(degree, degree))
  return (1 - alpha) * np.linalg.solve(np.eye(len(y)) - alpha * s, y)


@pytest.mark.parametrize("method,num_iters", [("spreading", 3000), ("cg", 200)])
def test_propagate_equals_closed_form(small_graph, method, num_iters):
  idx, w, labels, a, y = small_graph
  sym = a + a.T
  expected = _spreading_closed_form(sym, sym.sum(1), y, 0.9)
  scores = graph.propagate(idx, w, labels, num_classes=3, alpha=0.9,
                           num_iters=num_iters, tol=0.0, method=method)
  np.testing.assert_allclose(np.asarray(scores), expected, atol=2e-5)


def test_propagate_directed_uses_in_degrees(small_graph):
  idx, w, labels, a, y = small_graph
  in_deg = a.sum(0)
  in_deg[in_deg == 0] = 1.0
  expected = _spreading_closed_form(a, in_deg, y, 0.5)
  scores = graph.propagate(idx, w, labels, num_classes=3, alpha=0.5,
                           num_iters=500, tol=0.0, symmetrize=False)
  np.testing.assert_allclose(np.asarray(scores), expected, atol=1e-5)


def test_propagation_equals_harmonic_solution(small_graph):
  idx, w, labels, a, y = small_graph
  sym = a + a.T
  lab, unl = labels >= 0, labels < 0
  harmonic = np.linalg.solve(np.diag(sym.sum(1)[unl]) - sym[np.ix_(unl, unl)],
                             sym[np.ix_(unl, lab)] @ y[lab])
  scores = np.asarray(graph.propagate(
      idx, w, labels, num_classes=3, num_iters=3000, tol=0.0,
      method="propagation"))
  np.testing.assert_allclose(scores[unl], harmonic, atol=1e-5)
  np.testing.assert_array_equal(scores[lab], y[lab])


def test_propagate_class_size_normalisation_and_stopping(small_graph):
  idx, w, labels, a, y = small_graph
  labels = labels.copy()
  labels[6:10] = 0   # class 0 now has 6 labeled points, classes 1, 2 two each
  plain = graph.propagate(idx, w, labels, num_classes=3, alpha=0.9,
                          num_iters=50, method="cg")
  balanced = graph.propagate(idx, w, labels, num_classes=3, alpha=0.9,
                             num_iters=50, method="cg",
                             normalize_by_class_size=True)
  # Linear in the seeds: class c's column is divided by its label count.
  np.testing.assert_allclose(np.asarray(balanced),
                             np.asarray(plain) / np.array([6.0, 2.0, 2.0]),
                             rtol=1e-4, atol=1e-6)
  _, iters_tol = propagation._propagate_with_iters(
      idx, w, labels, num_classes=3, alpha=0.2, num_iters=100, tol=1e-3,
      method="spreading", normalize_by_class_size=False)
  _, iters_all = propagation._propagate_with_iters(
      idx, w, labels, num_classes=3, alpha=0.2, num_iters=100, tol=0.0,
      method="spreading", normalize_by_class_size=False)
  assert 1 < int(iters_tol) < 100 and int(iters_all) == 100


def test_propagate_under_jit_matches_eager(small_graph):
  idx, w, labels, *_ = small_graph
  fn = jax.jit(lambda i, ww, l: graph.propagate(i, ww, l, num_classes=3,
                                                alpha=0.9, num_iters=30))
  np.testing.assert_allclose(
      np.asarray(fn(idx, w, labels)),
      np.asarray(graph.propagate(idx, w, labels, num_classes=3, alpha=0.9,
                                 num_iters=30)), rtol=1e-5, atol=1e-6)


def test_propagate_errors(small_graph):
  idx, w, labels, *_ = small_graph
  kw = dict(num_classes=3)
  with pytest.raises(ValueError, match=r"`labels` must be in \[-1, 3\).*got 3"):
    graph.propagate(idx, w, np.where(labels == 2, 3, labels), **kw)
  with pytest.raises(ValueError, match=r"got -2"):
    graph.propagate(idx, w, np.where(labels == 2, -2, labels), **kw)
  with pytest.raises(ValueError, match="no labeled point: all entries are -1"):
    graph.propagate(idx, w, np.full(40, -1), **kw)
  with pytest.raises(ValueError, match=r"no labeled point of class\(es\) \[2\]"):
    graph.propagate(idx, w, np.where(labels == 2, -1, labels), **kw)
  with pytest.raises(ValueError, match="one entry per point: got 39 labels"):
    graph.propagate(idx, w, labels[:39], **kw)
  with pytest.raises(ValueError, match="`weights` must have the shape"):
    graph.propagate(idx, w[:, :4], labels, **kw)
  with pytest.raises(ValueError, match="`weights` must be finite"):
    graph.propagate(idx, -w, labels, **kw)
  with pytest.raises(ValueError, match=r"`indices` must be in \[0, 40\)"):
    graph.propagate(idx + 1, w, labels, **kw)
  with pytest.raises(ValueError, match=r"`alpha` must be in \(0, 1\)"):
    graph.propagate(idx, w, labels, alpha=1.0, **kw)
  with pytest.raises(ValueError, match="`method`"):
    graph.propagate(idx, w, labels, method="jacobi", **kw)


# ------------------------------------------------------ pseudo-labels, loss


def test_lp_pseudo_labels_hand_computed():
  scores = np.array([[2, 0, 0], [1, 1, 0], [1, 1, 1], [-1, 3, 1]], np.float32)
  labels = np.array([-1, -1, 0, -1])
  pseudo, omega, zeta = graph.lp_pseudo_labels(scores, labels)
  h1 = math.log(2)                                   # [.5, .5, 0]
  h3 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # [0, .75, .25]
  np.testing.assert_array_equal(np.asarray(pseudo), [0, 0, 0, 1])
  np.testing.assert_allclose(
      np.asarray(omega),
      [1.0, 1 - h1 / math.log(3), 1.0, 1 - h3 / math.log(3)], rtol=1e-5)
  # 3 points end in class 0, 1 in class 1, none in class 2.
  np.testing.assert_allclose(np.asarray(zeta), [4 / 3 / 3, 4 / 3, 0.0],
                             rtol=1e-6)


def test_lp_pseudo_labels_normalises_by_max_certainty():
  scores = np.array([[1, 1, 0], [0, 3, 1], [0, 0, 0]], np.float32)
  _, omega, _ = graph.lp_pseudo_labels(scores, np.array([-1, -1, -1]))
  w1 = 1 - math.log(2) / math.log(3)
  w2 = 1 + (0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(3)
  # An all-zero row is uniform: no certainty.
  np.testing.assert_allclose(np.asarray(omega), [w1 / w2, 1.0, 0.0], rtol=1e-5)


# ------------------------------------------------------------ in-batch LP


@pytest.fixture(scope="module")
def batch(blobs):
  x, y = blobs
  rng = np.random.default_rng(3)
  pick = rng.choice(600, 96, replace=False)
  labels = np.where(np.arange(96) % 8 == 0, y[pick], -1)
  return jnp.asarray(x[pick]), jnp.asarray(labels), y[pick]


def test_batch_label_propagation_jits_once_and_is_accurate(batch):
  emb, labels, truth = batch
  traces = []

  def step(e, l):
    traces.append(1)
    return graph.batch_label_propagation(e, l, num_classes=6, k=8)

  step = jax.jit(step)
  targets = step(emb, labels)
  step(emb + 0.01, jnp.roll(labels, 1))   # new values, same shapes
  assert len(traces) == 1
  assert targets.pseudo_labels.shape == (96,)
  assert targets.probabilities.shape == (96, 6)
  lab = np.asarray(labels) >= 0
  np.testing.assert_array_equal(np.asarray(targets.pseudo_labels)[lab],
                                np.asarray(labels)[lab])
  np.testing.assert_array_equal(np.asarray(targets.certainty_weights)[lab], 1.0)
  assert (np.asarray(targets.pseudo_labels) == truth).mean() >= 0.95


def test_batch_label_propagation_matches_the_building_blocks(batch):
  emb, labels, _ = batch
  targets = graph.batch_label_propagation(emb, labels, num_classes=6, k=8,
                                          num_iters=20)
  idx, sim = graph.knn_graph(emb, k=8, metric="cosine")
  scores = graph.propagate(idx, jnp.maximum(sim, 0) ** 3, labels,
                           num_classes=6, num_iters=20, method="cg",
                           normalize_by_class_size=True)
  pseudo, omega, zeta = graph.lp_pseudo_labels(scores, labels)
  np.testing.assert_array_equal(np.asarray(targets.pseudo_labels),
                                np.asarray(pseudo))
  np.testing.assert_allclose(np.asarray(targets.certainty_weights),
                             np.asarray(omega), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(targets.class_weights),
                             np.asarray(zeta), rtol=1e-6)


def test_batch_label_propagation_targets_are_stop_gradient(batch):
  emb, labels, _ = batch
  head = jax.random.normal(jax.random.PRNGKey(0), (16, 6))

  def loss(e, w):
    t = graph.batch_label_propagation(e, labels, num_classes=6, k=8)
    return losses.weighted_pseudo_label_loss(e @ w, t.pseudo_labels,
                                            t.certainty_weights,
                                            t.class_weights)

  def through_targets_only(e):
    t = graph.batch_label_propagation(e, labels, num_classes=6, k=8)
    return (losses.weighted_pseudo_label_loss(
        jax.lax.stop_gradient(e) @ head, t.pseudo_labels,
        t.certainty_weights, t.class_weights)
            + jnp.sum(t.probabilities ** 2) + jnp.sum(t.certainty_weights))

  g_emb, g_head = jax.grad(loss, argnums=(0, 1))(emb, head)
  # Gradient flows through the logits ...
  assert np.isfinite(np.asarray(g_emb)).all() and np.abs(g_emb).sum() > 0
  assert np.isfinite(np.asarray(g_head)).all() and np.abs(g_head).sum() > 0
  # ... and never through the targets (fixed, as in Iscen et al.).
  np.testing.assert_array_equal(np.asarray(jax.grad(through_targets_only)(emb)),
                                0.0)


def test_batch_label_propagation_is_permutation_equivariant(batch):
  emb, labels, _ = batch
  perm = np.random.default_rng(4).permutation(96)
  a = graph.batch_label_propagation(emb, labels, num_classes=6, k=8)
  b = graph.batch_label_propagation(emb[perm], labels[perm], num_classes=6,
                                    k=8)
  np.testing.assert_array_equal(np.asarray(a.pseudo_labels)[perm],
                                np.asarray(b.pseudo_labels))
  np.testing.assert_allclose(np.asarray(a.certainty_weights)[perm],
                             np.asarray(b.certainty_weights), atol=1e-4)


def test_batch_label_propagation_errors(batch):
  emb, labels, _ = batch
  with pytest.raises(ValueError, match="`k` must be in"):
    graph.batch_label_propagation(emb, labels, num_classes=6, k=96)
  with pytest.raises(ValueError, match=r"`labels` must be in \[-1, 6\)"):
    graph.batch_label_propagation(emb, labels.at[3].set(6), num_classes=6)
  with pytest.raises(ValueError, match="`embeddings` must be finite"):
    graph.batch_label_propagation(emb.at[0, 0].set(jnp.nan), labels,
                                  num_classes=6)
