"""scikit-learn-compatible label spreading and label propagation, in JAX.

Drop-in replacements for :class:`sklearn.semi_supervised.LabelSpreading` and
:class:`sklearn.semi_supervised.LabelPropagation`: same constructor arguments,
``fit(X, y)`` with ``-1`` for unlabeled samples, ``transduction_``,
``label_distributions_``, ``classes_``, ``n_iter_``, ``predict``,
``predict_proba`` and ``score``. The graph is always a sparse k-nearest-
neighbour graph built by :func:`sslx.graph.knn_graph`, so memory is
``O(N * n_neighbors)`` for both kernels, and the iterations are
:func:`sslx.graph.propagate`.

Example (scikit-learn's classic example, with only the import changed)::

  >>> from sklearn import datasets
  >>> import numpy as np
  >>> import sslx
  >>> iris = datasets.load_iris()
  >>> rng = np.random.RandomState(42)
  >>> labels = np.copy(iris.target)
  >>> labels[rng.rand(len(iris.target)) < 0.9] = -1
  >>> model = sslx.LabelPropagation(kernel="knn", n_neighbors=10)
  >>> model.fit(iris.data, labels).transduction_.shape
  (150,)

Differences from scikit-learn, all documented on the classes:

* ``kernel='rbf'`` weighs the edges of the ``n_neighbors``-nearest-neighbour
  graph by ``exp(-gamma * |x_i - x_j|^2)`` instead of building the dense
  N x N kernel (which cannot hold 100k points in memory). With the default
  ``gamma=20`` the weights of far points vanish anyway.
* ``n_neighbors`` counts neighbours other than the point itself (scikit-
  learn's kNN graph counts the point as one of its own neighbours), and the
  graph is symmetrised (W + W^T, Zhou et al.); scikit-learn uses the directed
  graph.
* The iterations run in float32 on the JAX default device (a GPU when there
  is one).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

from sslx import graph as _graph
from sslx.graph import propagation as _propagation

__all__ = ["LabelSpreading", "LabelPropagation"]

_KERNELS = ("knn", "rbf")


def _check_finite_2d(name: str, x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(
        f"`{name}` must be 2-D ([n_samples, n_features]), got shape {x.shape}.")
  if not np.issubdtype(x.dtype, np.number):
    raise ValueError(f"`{name}` must be numeric, got dtype {x.dtype}.")
  finite = np.isfinite(x).all(axis=1)
  if not finite.all():
    raise ValueError(
        f"`{name}` must be finite, got NaN or infinite values in "
        f"{int((~finite).sum())} row(s), first at row "
        f"{int(np.flatnonzero(~finite)[0])}.")
  return x


class _BaseLabelPropagation(ClassifierMixin, BaseEstimator):
  """Shared fit/predict; subclasses set `_variant` and `__init__`."""

  _variant = "spreading"

  def _check_params(self, n_samples: int) -> None:
    if self.kernel not in _KERNELS:
      raise ValueError(
          f"`kernel` must be one of {_KERNELS} (sslx builds a sparse kNN "
          f"graph; callables are not supported), got {self.kernel!r}.")
    if isinstance(self.n_neighbors, bool) or not isinstance(
        self.n_neighbors, (int, np.integer)) or self.n_neighbors < 2:
      raise ValueError(
          f"`n_neighbors` must be an int >= 2 (the sample itself counts as "
          f"one), got {self.n_neighbors!r}.")
    if self.n_neighbors > n_samples:
      raise ValueError(
          f"`n_neighbors` must be <= the number of samples: got n_neighbors="
          f"{self.n_neighbors} for {n_samples} samples.")
    if not (isinstance(self.gamma, (int, float, np.number)) and self.gamma > 0):
      raise ValueError(f"`gamma` must be a positive number, got {self.gamma!r}.")
    if self._variant == "spreading" and not 0.0 < self.alpha < 1.0:
      raise ValueError(f"`alpha` must be in (0, 1), got {self.alpha!r}.")
    if self.max_iter < 1:
      raise ValueError(f"`max_iter` must be >= 1, got {self.max_iter!r}.")
    if self.knn_method not in ("exact", "approx"):
      raise ValueError(
          f"`knn_method` must be 'exact' or 'approx', got {self.knn_method!r}.")

  def _edge_weights(self, sim):
    """Edge weights from negative squared distances [N, k]."""
    if self.kernel == "knn":
      return np.ones_like(np.asarray(sim))
    return np.exp(self.gamma * np.asarray(sim, np.float64)).astype(np.float32)

  def fit(self, X, y):
    """Fits the model transductively to ``X`` and partial labels ``y``.

    Args:
      X: ``[n_samples, n_features]`` array.
      y: ``[n_samples]`` class labels, ``-1`` for unlabeled samples.

    Returns:
      self, with ``transduction_`` (the label of every sample),
      ``label_distributions_`` ``[n_samples, n_classes]``, ``classes_`` and
      ``n_iter_``.
    """
    x = _check_finite_2d("X", X)
    y = np.asarray(y)
    if y.ndim != 1:
      raise ValueError(f"`y` must be 1-D ([n_samples]), got shape {y.shape}.")
    if y.shape[0] != x.shape[0]:
      raise ValueError(
          f"`X` and `y` must have the same number of samples, got "
          f"{x.shape[0]} and {y.shape[0]}.")
    x = check_array(x, dtype=[np.float64, np.float32])
    check_classification_targets(y)
    self._check_params(x.shape[0])
    unlabeled = y == -1
    if unlabeled.all():
      raise ValueError(
          "`y` has no labeled sample: all entries are -1; label at least one "
          "sample per class.")
    classes = np.unique(y[~unlabeled])
    codes = np.full(y.shape[0], -1, np.int32)
    codes[~unlabeled] = np.searchsorted(classes, y[~unlabeled])

    self.X_ = x
    self.classes_ = classes
    self.n_features_in_ = x.shape[1]
    idx, sim = _graph.knn_graph(
        x.astype(np.float32, copy=False), k=int(self.n_neighbors) - 1,
        metric="euclidean", method=self.knn_method,
        num_probes=self.num_probes, leaf_size=self.leaf_size)
    weights = self._edge_weights(sim)
    if self._variant == "propagation" and not self.symmetrize:
      # scikit-learn's kNN graph counts each sample as its own neighbour; in
      # label propagation that self-loop makes a lazy walk (same fixed point,
      # scikit-learn's speed of convergence).
      n = x.shape[0]
      idx = np.concatenate([np.arange(n, dtype=np.int32)[:, None],
                            np.asarray(idx)], axis=1)
      weights = np.concatenate([np.ones((n, 1), np.float32), weights], axis=1)
    scores, n_iter = _propagation._propagate_with_iters(  # pylint: disable=protected-access
        idx, weights, codes, num_classes=len(classes),
        alpha=self.alpha if self._variant == "spreading" else 0.5,
        num_iters=int(self.max_iter), tol=float(self.tol),
        method=self._variant, normalize_by_class_size=False,
        symmetrize=bool(self.symmetrize))
    dist = np.asarray(scores, np.float64)
    total = dist.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    self.label_distributions_ = dist / total
    self.transduction_ = classes[np.argmax(self.label_distributions_, axis=1)]
    self.n_iter_ = int(n_iter)
    if self.n_iter_ >= self.max_iter:
      warnings.warn(
          f"max_iter={self.max_iter} was reached without convergence.",
          category=ConvergenceWarning)
    return self

  def predict_proba(self, X):
    """Class probabilities of new samples from their training neighbours.

    For ``kernel='knn'`` the label distributions of the ``n_neighbors``
    nearest training samples are summed; for ``'rbf'`` they are weighted by
    ``exp(-gamma * d^2)``; rows are then normalised.

    Args:
      X: ``[n_queries, n_features]``.

    Returns:
      ``[n_queries, n_classes]`` probabilities.
    """
    check_is_fitted(self, "label_distributions_")
    x = _check_finite_2d("X", X)
    if x.shape[1] != self.n_features_in_:
      raise ValueError(
          f"`X` has {x.shape[1]} features, but the model was fitted with "
          f"{self.n_features_in_}.")
    idx, sim = _graph.knn_search(
        x.astype(np.float32, copy=False),
        self.X_.astype(np.float32, copy=False),
        k=int(self.n_neighbors), metric="euclidean")
    idx, sim = np.asarray(idx), np.asarray(sim, np.float64)
    if self.kernel == "knn":
      w = np.ones_like(sim)
    else:   # shift by the nearest distance: same ratios, no underflow to 0/0
      w = np.exp(self.gamma * (sim - sim[:, :1]))
    probs = np.einsum("qk,qkc->qc", w, self.label_distributions_[idx])
    total = probs.sum(axis=1, keepdims=True)
    uniform = np.full_like(probs, 1.0 / probs.shape[1])
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0),
                    uniform)

  def predict(self, X):
    """Most probable class of each new sample (see `predict_proba`)."""
    return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class LabelSpreading(_BaseLabelPropagation):
  r"""Label spreading (Zhou et al. 2004) on a sparse kNN graph.

  Iterates :math:`F \leftarrow \alpha S F + (1 - \alpha) Y` with
  :math:`S = D^{-1/2} W D^{-1/2}` over the symmetrised kNN graph (see
  :func:`sslx.graph.propagate`), like scikit-learn's
  ``LabelSpreading``, whose arguments it takes.

  Args:
    kernel: ``'knn'`` (unit edge weights) or ``'rbf'`` (edge weights
      ``exp(-gamma |x_i - x_j|^2)`` on the same kNN graph).
    gamma: rbf parameter.
    n_neighbors: as in scikit-learn, the sample counts as one of its own
      ``n_neighbors``: each sample is linked to its ``n_neighbors - 1``
      nearest other samples.
    alpha: clamping factor in (0, 1): the weight of the neighbours' labels
      against the initial label.
    max_iter: maximum number of iterations.
    tol: stop when the summed absolute change of the label distributions is
      below ``tol`` (scikit-learn's rule).
    n_jobs: accepted for compatibility; unused (JAX uses all cores).
    symmetrize: ``False`` (default) keeps scikit-learn's directed kNN graph
      and normalisation, so results match scikit-learn's; ``True`` uses the
      symmetrised graph W + W^T of Zhou et al.
    knn_method: ``'exact'`` or ``'approx'`` neighbours
      (:func:`sslx.graph.knn_graph`).
    num_probes: approximate search: tree leaves searched per leaf.
    leaf_size: approximate search: points per leaf.
  """

  _variant = "spreading"

  def __init__(self, kernel: str = "rbf", *, gamma: float = 20,
               n_neighbors: int = 7, alpha: float = 0.2, max_iter: int = 30,
               tol: float = 1e-3, n_jobs: Optional[int] = None,
               symmetrize: bool = False, knn_method: str = "exact",
               num_probes: int = 32, leaf_size: int = 256):
    self.kernel = kernel
    self.gamma = gamma
    self.n_neighbors = n_neighbors
    self.alpha = alpha
    self.symmetrize = symmetrize
    self.max_iter = max_iter
    self.tol = tol
    self.n_jobs = n_jobs
    self.knn_method = knn_method
    self.num_probes = num_probes
    self.leaf_size = leaf_size


class LabelPropagation(_BaseLabelPropagation):
  r"""Label propagation (Zhu and Ghahramani 2002) on a sparse kNN graph.

  Iterates :math:`F \leftarrow D^{-1} W F` with the labeled rows clamped to
  their labels, over the symmetrised kNN graph (see
  :func:`sslx.graph.propagate`), like scikit-learn's
  ``LabelPropagation``, whose arguments it takes.

  Args:
    kernel: ``'knn'`` (unit edge weights) or ``'rbf'`` (edge weights
      ``exp(-gamma |x_i - x_j|^2)`` on the same kNN graph).
    gamma: rbf parameter.
    n_neighbors: as in scikit-learn, the sample counts as one of its own
      ``n_neighbors``: each sample is linked to its ``n_neighbors - 1``
      nearest other samples.
    max_iter: maximum number of iterations.
    tol: stop when the summed absolute change of the label distributions is
      below ``tol`` (scikit-learn's rule).
    n_jobs: accepted for compatibility; unused (JAX uses all cores).
    symmetrize: ``False`` (default) keeps scikit-learn's directed kNN graph
      and normalisation, so results match scikit-learn's; ``True`` uses the
      symmetrised graph W + W^T of Zhou et al.
    knn_method: ``'exact'`` or ``'approx'`` neighbours.
    num_probes: approximate search: tree leaves searched per leaf.
    leaf_size: approximate search: points per leaf.
  """

  _variant = "propagation"

  def __init__(self, kernel: str = "rbf", *, gamma: float = 20,
               n_neighbors: int = 7, max_iter: int = 1000, tol: float = 1e-3,
               n_jobs: Optional[int] = None, symmetrize: bool = False,
               knn_method: str = "exact", num_probes: int = 32,
               leaf_size: int = 256):
    self.kernel = kernel
    self.gamma = gamma
    self.n_neighbors = n_neighbors
    self.symmetrize = symmetrize
    self.max_iter = max_iter
    self.tol = tol
    self.n_jobs = n_jobs
    self.knn_method = knn_method
    self.num_probes = num_probes
    self.leaf_size = leaf_size
