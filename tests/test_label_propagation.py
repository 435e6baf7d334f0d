"""Tests for sslx.label_propagation: agreement with scikit-learn, API, errors."""

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest
import sklearn.semi_supervised as sk
from sklearn import datasets
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import sslx.label_propagation as sx

_SEEDS = range(5)


@pytest.fixture(scope="module")
def digits():
  return datasets.load_digits(return_X_y=True)


@pytest.fixture(scope="module")
def iris():
  return datasets.load_iris(return_X_y=True)


def _per_class_mask(y, per_class, seed):
  rng = np.random.RandomState(seed)
  labels = np.full(len(y), -1)
  for c in np.unique(y):
    labels[rng.choice(np.flatnonzero(y == c), per_class, replace=False)] = c
  return labels


def _accuracies(cls_name, params, x, y, masks):
  ours, theirs, same = [], [], []
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for labels in masks:
      unl = labels == -1
      a = getattr(sx, cls_name)(**params).fit(x, labels).transduction_
      b = getattr(sk, cls_name)(**params).fit(x, labels).transduction_
      ours.append((a[unl] == y[unl]).mean())
      theirs.append((b[unl] == y[unl]).mean())
      same.append((a == b).mean())
  return np.mean(ours), np.mean(theirs), np.mean(same)


@pytest.mark.parametrize("cls_name", ["LabelSpreading", "LabelPropagation"])
def test_agrees_with_sklearn_on_digits(digits, cls_name):
  x, y = digits
  masks = [_per_class_mask(y, 2, seed) for seed in _SEEDS]
  ours, theirs, same = _accuracies(
      cls_name, dict(kernel="knn", n_neighbors=10), x, y, masks)
  assert abs(ours - theirs) <= 0.01, (ours, theirs)
  assert same >= 0.97, same


@pytest.mark.parametrize("cls_name", ["LabelSpreading", "LabelPropagation"])
def test_agrees_with_sklearn_on_iris(iris, cls_name):
  x, y = iris
  masks = []
  for seed in _SEEDS:
    labels = y.copy()
    labels[np.random.RandomState(seed).rand(len(y)) < 0.9] = -1
    masks.append(labels)
  ours, theirs, same = _accuracies(
      cls_name, dict(kernel="knn", n_neighbors=10), x, y, masks)
  assert abs(ours - theirs) <= 0.01, (ours, theirs)
  assert same >= 0.95, same


@pytest.mark.parametrize("cls_name", ["LabelSpreading", "LabelPropagation"])
def test_rbf_kernel_converges_as_sklearns(digits, cls_name):
  # scikit-learn's dense rbf affinity: same iterations (159 for LabelPropagation
  # here) and the same distributions up to float32.
  x, y = digits
  x, y = x[:400] / 16, y[:400]
  labels = np.where(np.arange(400) % 10 == 0, y, -1)
  ours = getattr(sx, cls_name)(kernel="rbf", gamma=1.0).fit(x, labels)
  theirs = getattr(sk, cls_name)(kernel="rbf", gamma=1.0).fit(x, labels)
  assert abs(ours.n_iter_ - theirs.n_iter_) <= 2, (ours.n_iter_, theirs.n_iter_)
  np.testing.assert_allclose(ours.label_distributions_,
                             theirs.label_distributions_, atol=1e-5)
  np.testing.assert_allclose(ours.predict_proba(x[:50] + 0.03),
                             theirs.predict_proba(x[:50] + 0.03), atol=1e-5)


@pytest.mark.parametrize("kernel", ["knn", "rbf"])
def test_predict_proba_of_a_row_does_not_depend_on_its_batch(iris, kernel):
  x, y = iris   # iris has many equal distances (one-decimal features, duplicates)
  labels = np.where(np.arange(150) % 3 == 0, y, -1)
  model = sx.LabelSpreading(kernel=kernel, n_neighbors=7, gamma=2.0).fit(x, labels)
  queries = np.round(x[::3] + 0.1, 1)
  batch = model.predict_proba(queries)
  for i in range(len(queries)):
    np.testing.assert_array_equal(model.predict_proba(queries[i:i + 1])[0], batch[i])
  np.testing.assert_array_equal(model.predict_proba(queries[::-1])[::-1], batch)


def test_tied_neighbours_are_ranked_by_training_index():
  # Four training points at distance 1 from the query; n_neighbors=2 keeps the
  # first two by index (classes 0 and 1), whatever else is in the batch.
  x = np.array([[0.0, 1], [0, -1], [1, 0], [-1, 0]])
  model = sx.LabelPropagation(kernel="knn", n_neighbors=2).fit(x, [0, 1, 2, 2])
  alone = model.predict_proba([[0.0, 0.0]])
  np.testing.assert_array_equal(alone, [[0.5, 0.5, 0.0]])
  in_batch = model.predict_proba(np.array([[5.0, 5], [0, 0], [-3, 1]]))
  np.testing.assert_array_equal(in_batch[1], alone[0])


def test_new_sample_counts_and_parameters_reuse_compiled_programs(iris):
  # A grid search refits on folds of other sizes with other parameters: within a
  # size bucket (here 97..128 samples) nothing is compiled again.
  x, y = iris
  perm = np.random.RandomState(0).permutation(150)
  x, y = x[perm], y[perm]
  programs = (sx._dense_iterate, sx._knn_affinity, sx._rbf_affinity,
              sx._query_probabilities)

  def fit_all(n, params):   # n in 97..128, queries in 17..24: one bucket each
    labels = np.where(np.arange(n) % 4 == 0, y[:n], -1)
    for cls, kw in params:
      cls(**kw).fit(x[:n], labels).predict(x[n:n + 17 + n % 7])
  params = [(sx.LabelSpreading, dict(kernel="knn", n_neighbors=5, alpha=0.2)),
            (sx.LabelPropagation, dict(kernel="knn", n_neighbors=5)),
            (sx.LabelSpreading, dict(kernel="rbf", gamma=5.0))]
  fit_all(100, params)
  before = [p._cache_size() for p in programs]
  fit_all(110, [(sx.LabelSpreading, dict(kernel="knn", n_neighbors=9, alpha=0.5)),
                (sx.LabelPropagation, dict(kernel="knn", n_neighbors=3)),
                (sx.LabelSpreading, dict(kernel="rbf", gamma=1.0))])
  fit_all(127, params)
  assert [p._cache_size() for p in programs] == before


def test_estimator_api(iris):
  x, y = iris
  labels = np.where(np.arange(150) % 5 == 0, y + 3, -1)   # classes 3, 4, 5
  model = sx.LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.5)
  assert clone(model).get_params() == model.get_params()
  assert model.set_params(alpha=0.3).alpha == 0.3
  model.fit(x, labels)
  np.testing.assert_array_equal(model.classes_, [3, 4, 5])
  assert model.transduction_.shape == (150,)
  np.testing.assert_array_equal(model.transduction_[labels >= 0],
                                labels[labels >= 0])
  dist = model.label_distributions_
  assert dist.shape == (150, 3)
  np.testing.assert_allclose(dist.sum(1), 1.0, rtol=1e-6)
  proba = model.predict_proba(x[:20] + 0.01)
  assert proba.shape == (20, 3)
  np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
  pred = model.predict(x)
  assert set(pred) <= {3, 4, 5}
  assert model.score(x, y + 3) >= 0.85
  assert model.n_iter_ >= 1
  rbf = sx.LabelPropagation(kernel="rbf", gamma=20, n_neighbors=10).fit(
      x, labels)
  np.testing.assert_allclose(rbf.predict_proba(x).sum(1), 1.0, rtol=1e-6)


def test_approx_neighbours_option(digits):
  x, y = digits
  labels = _per_class_mask(y, 10, 0)
  unl = labels == -1
  exact = sx.LabelSpreading(kernel="knn", n_neighbors=10).fit(x, labels)
  approx = sx.LabelSpreading(kernel="knn", n_neighbors=10, knn_method="approx",
                             leaf_size=128, num_probes=8).fit(x, labels)
  acc = lambda m: (m.transduction_[unl] == y[unl]).mean()
  assert acc(approx) >= acc(exact) - 0.02
  assert exact.knn_recall_ == 1.0 and 0.0 < approx.knn_recall_ < 1.0
  # By default the probe count is chosen for a recall of 0.95.
  targeted = sx.LabelSpreading(kernel="knn", n_neighbors=10, knn_method="approx",
                               leaf_size=64).fit(x, labels)
  assert targeted.knn_recall_ >= 0.95
  assert acc(targeted) >= acc(exact) - 0.01
  for field, value, message in (("recall", 0.0, "`recall` must be a number in"),
                                ("num_probes", 0, "`num_probes` must be None or an int")):
    with pytest.raises(ValueError, match=message):
      sx.LabelSpreading(kernel="knn", knn_method="approx", **{field: value}).fit(x, labels)


def test_estimator_errors(iris):
  x, y = iris
  labels = np.where(np.arange(150) % 5 == 0, y, -1)
  model = sx.LabelSpreading(kernel="knn", n_neighbors=10)
  with pytest.raises(ValueError, match="`y` has no labeled sample"):
    model.fit(x, np.full(150, -1))
  with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[150, 149\]"):
    model.fit(x, labels[:149])
  bad = x.copy()
  bad[7, 1] = np.nan
  with pytest.raises(ValueError, match="`X` must be finite.*row 7"):
    model.fit(bad, labels)
  with pytest.raises(ValueError, match="`n_neighbors` must be <= the number"):
    sx.LabelSpreading(kernel="knn", n_neighbors=151).fit(x, labels)
  with pytest.raises(ValueError, match="`kernel` must be one of"):
    sx.LabelSpreading(kernel="poly").fit(x, labels)
  with pytest.raises(ValueError, match=r"`alpha` must be in \(0, 1\)"):
    sx.LabelSpreading(kernel="knn", alpha=1.5).fit(x, labels)
  fitted = sx.LabelSpreading(kernel="knn", n_neighbors=10).fit(x, labels)
  with pytest.raises(ValueError, match="X has 3 features, but LabelSpreading is expecting 4"):
    fitted.predict(x[:, :3])


def test_iris_seed_example_runs():
  path = (pathlib.Path(__file__).parents[1] / "scripts" /
          "iris_label_propagation.py")
  spec = importlib.util.spec_from_file_location("iris_example", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    (ours, theirs), n_unlabeled = module.transductive_accuracies(42)
  assert 120 <= n_unlabeled <= 150
  assert ours >= 0.8 and abs(ours - theirs) <= 0.05


@pytest.mark.parametrize("symmetrize", [False, True])
@pytest.mark.parametrize("cls_name", ["LabelSpreading", "LabelPropagation"])
def test_dense_and_sparse_knn_graphs_agree(monkeypatch, cls_name, symmetrize):
  # Up to 512 samples the kNN graph is a dense matrix, above it the sparse graph of
  # sslx.graph: same graph (no tied distances here), same iterations and results.
  rng = np.random.RandomState(0)
  x = rng.normal(size=(200, 5)) + np.repeat(rng.normal(size=(4, 5)) * 3, 50, axis=0)
  labels = np.where(np.arange(200) % 10 == 0, np.repeat(np.arange(4), 50), -1)
  make = lambda: getattr(sx, cls_name)(kernel="knn", n_neighbors=6, symmetrize=symmetrize,
                                       max_iter=200)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    dense = make().fit(x, labels)
    monkeypatch.setattr(sx, "_DENSE_KNN_MAX_SAMPLES", 0)
    sparse = make().fit(x, labels)
  assert dense.n_iter_ == sparse.n_iter_
  np.testing.assert_allclose(dense.label_distributions_, sparse.label_distributions_,
                             atol=1e-5)
  np.testing.assert_allclose(dense.predict_proba(x[:40] + 0.1),
                             sparse.predict_proba(x[:40] + 0.1), atol=1e-5)
