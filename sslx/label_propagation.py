"""scikit-learn-compatible label spreading and label propagation, in JAX.

Drop-in replacements for :class:`sklearn.semi_supervised.LabelSpreading` and
:class:`sklearn.semi_supervised.LabelPropagation`: same constructor arguments
and defaults, ``fit(X, y)`` with ``-1`` for unlabeled samples (``X`` dense or
scipy sparse), ``transduction_``, ``label_distributions_``, ``classes_``,
``n_iter_``, ``predict``, ``predict_proba`` and ``score``; scikit-learn's own
test module for these estimators passes against them (tests of its private
``_build_graph`` aside; see ``tests/test_sklearn_label_propagation.py``).

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

The graph, as in scikit-learn:

* ``kernel='knn'``: each sample's ``n_neighbors`` nearest samples, the sample
  itself counted as its own first neighbour (so ``n_neighbors=1`` is valid and
  links nothing), unit weights, the directed graph (``symmetrize=True`` uses
  W + W^T, Zhou et al.). Up to 512 samples it is built as a dense N x N
  matrix (equal distances ranked by index; ``n_neighbors`` is then a runtime
  value, so a grid search over it compiles nothing new). Above, or with
  ``knn_method='approx'``, it is sparse: :func:`sslx.graph.knn_graph` finds it
  (``O(N * n_neighbors)`` memory, never N x N) and
  :func:`sslx.graph.propagate` iterates on it. **This is the kernel to use for
  large N**: it fitted 100k points 2.2-2.9x (exact) or 12-19x
  (``knn_method='approx'``) faster than scikit-learn (BENCHMARKS.md).
* ``kernel='rbf'`` and callable kernels: scikit-learn's dense N x N affinity
  (``exp(-gamma |x_i - x_j|^2)`` over all pairs, or ``kernel(X, X)``, which
  may return a scipy sparse matrix; it is densified), iterated as dense
  matmuls: the same fixed point, iteration count and convergence warning as
  scikit-learn, ``O(N^2)`` memory.

Shapes are padded to a few size buckets (powers of two and 1.5x powers of
two, at least 16; the sparse kNN graph to a multiple of 256 samples, and it
compiles per ``n_neighbors``) so that refitting on a new number of samples (a
cross-validation fold, a grid search) reuses the compiled programs instead of
compiling new ones. ``predict_proba`` runs the queries in blocks of a fixed
32 rows (one program for every block), re-scores each query's kNN candidates
per pair and ranks equal distances by training index, so a row's
probabilities do not depend on the other rows of its batch.

Differences from scikit-learn: the iterations run in float32 on the JAX
default device (a GPU when there is one); neighbours at equal distance are
chosen by index, scikit-learn's by its tree's order (on data with duplicate
points, such as iris, the kNN results differ slightly); ``predict_proba`` with
the rbf kernel
shifts each row's distances by its smallest one (same ratios; a query far from
every training sample gets finite probabilities instead of 0/0).
"""

from __future__ import annotations

import functools
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jax import lax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sslx import graph as _graph
from sslx.graph import knn as _knn
from sslx.graph import propagation as _propagation

__all__ = ["LabelSpreading", "LabelPropagation"]

_KERNELS = ("knn", "rbf")
# Up to this many samples the exact kNN graph is built as a dense N x N matrix: one
# compiled program per size bucket for every n_neighbors (a grid search compiles
# nothing new). Above, an iteration's N^2 C dense work outgrows the sparse graph's
# N k C (digits, N = 1797, LabelPropagation: 8 ms vs well under 1 ms per iteration).
_DENSE_KNN_MAX_SAMPLES = 512


def _bucket(n: int, minimum: int = 16) -> int:
  """Smallest size >= n among 2^i and 3 * 2^(i-1) (at least `minimum`)."""
  size = minimum
  while size < n:
    size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
  return size


def _check_finite(name: str, x) -> None:
  """Rejects NaN/inf in a validated dense or scipy sparse 2-D array, naming the row."""
  if scipy.sparse.issparse(x):
    coo = x.tocoo()
    bad_rows = np.unique(coo.row[~np.isfinite(coo.data)])
  else:
    bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
  if bad_rows.size:
    raise ValueError(
        f"Input `{name}` must be finite, got NaN or infinite values in "
        f"{bad_rows.size} row(s), first at row {int(bad_rows[0])}.")


def _dense_float32(x) -> np.ndarray:
  if scipy.sparse.issparse(x):
    x = x.toarray()
  return np.asarray(x, np.float32)


def _pad_rows(a: np.ndarray, rows: int, value=0) -> np.ndarray:
  pad = [(0, rows - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
  return np.pad(a, pad, constant_values=value)


def _squared_distances(q, x):
  """|q_i - x_j|^2 [B, N], per pair (no matmul: a row's values do not depend
  on the other rows of its batch)."""
  diff = q[:, None, :] - x[None, :, :]
  return jnp.sum(diff * diff, axis=-1)


@jax.jit
def _rbf_affinity(x, num_valid, gamma):
  """scikit-learn's dense rbf kernel of the first `num_valid` rows, 0 elsewhere."""
  valid = jnp.arange(x.shape[0]) < num_valid
  w = jnp.exp(-gamma * _squared_distances(x, x))
  return jnp.where(valid[:, None] & valid[None, :], w, 0.0)


@jax.jit
def _knn_affinity(x, num_valid, n_neighbors):
  """scikit-learn's kNN connectivity graph of the first `num_valid` rows, dense.

  Row i has ones at the sample itself and its `n_neighbors - 1` nearest other
  samples (equal distances ranked by index), zeros elsewhere.
  """
  n = x.shape[0]
  rows = jnp.arange(n)
  valid = rows < num_valid
  d2 = jnp.where(rows[:, None] == rows[None, :], -1.0,
                 _squared_distances(x, x))   # the sample itself ranks first
  d2 = jnp.where(valid[None, :], d2, jnp.inf)
  order = jnp.argsort(d2, axis=1, stable=True)
  rank = jnp.zeros((n, n), jnp.int32).at[rows[:, None], order].set(
      rows[None, :])
  return ((rank < n_neighbors) & valid[:, None]).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("num_classes", "variant"))
def _dense_iterate(w, labels, alpha, max_iter, tol, *, num_classes, variant):
  """scikit-learn's iterations on a dense affinity W; returns (F, n_iter).

  Spreading: F <- alpha S F + (1 - alpha) Y with S = D^-1/2 W' D^-1/2, W' = W
  without its diagonal and D its column sums (scipy's normalised Laplacian).
  Propagation: F <- W F, rows renormalised, labeled rows clamped (scikit-
  learn's division of W by degrees cancels in the renormalisation).
  Stops when sum |F_t - F_{t-1}| < tol, checked before each step from
  F_0 = Y against zeros, as scikit-learn does.
  """
  n = w.shape[0]
  y = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)   # -1 -> zeros
  if variant == "spreading":
    w = jnp.where(jnp.eye(n, dtype=bool), 0.0, w)
    degree = w.sum(axis=0)
    d_isqrt = jnp.where(degree > 0, degree, 1.0) ** -0.5
    s = d_isqrt[:, None] * w * d_isqrt[None, :]

    def step(f):
      return alpha * (s @ f) + (1.0 - alpha) * y
  else:
    labeled = (labels >= 0)[:, None]

    def step(f):
      f = w @ f
      total = f.sum(axis=1, keepdims=True)
      return jnp.where(labeled, y, f / jnp.where(total > 0, total, 1.0))

  def cond(state):
    it, _, change = state
    return (it < max_iter) & (change >= tol)

  def body(state):
    it, f, _ = state
    f_new = step(f)
    return it + 1, f_new, jnp.sum(jnp.abs(f_new - f))

  it, f, _ = lax.while_loop(cond, body, (0, y, jnp.sum(jnp.abs(y))))
  return f, it


@functools.partial(jax.jit, static_argnames=("k_slots", "self_loop"))
def _knn_fit_graph(x, num_valid, num_others, *, k_slots, self_loop):
  """Padded kNN graph [Nb, k_slots (+1)] of the first `num_valid` rows.

  Slot j of row i holds its (j+1)-th nearest other sample for j < num_others
  (weight 1) and i itself with weight 0 otherwise; padded rows link nothing.
  With `self_loop`, slot 0 is the sample itself (weight 1), as in scikit-
  learn's kNN graph.
  """
  n = x.shape[0]
  chunk, bin_size, group = _knn._exact_knn_params(n, k_slots, x.shape[1])  # pylint: disable=protected-access
  _, idx = _knn._exact_knn(  # pylint: disable=protected-access
      x, x, num_valid, k=k_slots, metric="euclidean", exclude_self=True,
      block_size=min(512, n), chunk_size=chunk, bin_size=bin_size, group=group)
  rows = jnp.arange(n)[:, None]
  keep = (jnp.arange(k_slots)[None, :] < num_others) & (rows < num_valid)
  idx = jnp.where(keep, idx, rows)
  w = keep.astype(jnp.float32)
  if self_loop:
    idx = jnp.concatenate([rows.astype(idx.dtype), idx], axis=1)
    w = jnp.concatenate([(rows < num_valid).astype(jnp.float32), w], axis=1)
  return idx, w


_QUERY_BLOCK = 32      # query rows per block: every block runs the same program
_CANDIDATE_MARGIN = 16  # extra matmul candidates re-scored exactly per query


@functools.partial(jax.jit, static_argnames=("k_slots", "kernel"))
def _query_probabilities(q, x, num_valid, dist, n_neighbors, gamma, *,
                         k_slots, kernel):
  """Unnormalised class scores [Q, C] of queries q (Q a multiple of 32).

  Queries go through in blocks of a fixed 32 rows, the same program for every
  block, so a row's result does not depend on the batch it came in. kNN:
  the ``k_slots + 16`` best candidates by a matmul, re-scored exactly per
  pair and ranked with equal distances broken by training index; rbf: exact
  per-pair distances to every training row.
  """
  n = x.shape[0]
  valid = jnp.arange(n) < num_valid
  half_sq_norms = jnp.where(valid, 0.5 * jnp.sum(x * x, axis=1), jnp.inf)
  num_cand = min(k_slots + _CANDIDATE_MARGIN, n)

  def one_block(qb):
    if kernel == "knn":
      _, cand = lax.top_k(qb @ x.T - half_sq_norms, num_cand)
      cand = jnp.sort(cand, axis=1)          # by index, for the tie-break
      diff = x[cand] - qb[:, None, :]
      d2 = jnp.where(valid[cand], jnp.sum(diff * diff, axis=-1), jnp.inf)
      # lax.top_k ranks equal values by position: here, by training index.
      _, pos = lax.top_k(-d2, k_slots)
      idx = jnp.take_along_axis(cand, pos, axis=1)
      w = (jnp.arange(k_slots) < n_neighbors).astype(jnp.float32)
      return jnp.sum(w[None, :, None] * dist[idx], axis=1)
    d2 = jnp.where(valid[None, :], _squared_distances(qb, x), jnp.inf)
    w = jnp.exp(-gamma * (d2 - d2.min(axis=1, keepdims=True)))
    return jnp.sum(w[:, :, None] * dist[None, :, :], axis=1)

  blocks = q.reshape(-1, _QUERY_BLOCK, q.shape[1])
  return lax.map(one_block, blocks).reshape(q.shape[0], -1)


class _BaseLabelPropagation(ClassifierMixin, BaseEstimator):
  """Shared fit/predict; subclasses set `_variant` and `__init__`."""

  _variant = "spreading"

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.input_tags.sparse = True
    return tags

  def _check_params(self, n_samples: int) -> None:
    if not (callable(self.kernel) or self.kernel in _KERNELS):
      raise ValueError(
          f"`kernel` must be one of {_KERNELS} or a callable "
          f"kernel(X, Y) -> [n_X, n_Y] affinities, got {self.kernel!r}.")
    if isinstance(self.n_neighbors, bool) or not isinstance(
        self.n_neighbors, (int, np.integer)) or self.n_neighbors < 1:
      raise ValueError(
          f"`n_neighbors` must be an int >= 1 (the sample itself counts as "
          f"its first neighbour), got {self.n_neighbors!r}.")
    if self.kernel == "knn" and self.n_neighbors > n_samples:
      raise ValueError(
          f"`n_neighbors` must be <= the number of samples: got n_neighbors="
          f"{self.n_neighbors} for {n_samples} samples.")
    if isinstance(self.gamma, bool) or not (
        isinstance(self.gamma, (int, float, np.number)) and self.gamma >= 0):
      raise ValueError(f"`gamma` must be a number >= 0, got {self.gamma!r}.")
    if self._variant == "spreading" and not 0.0 < self.alpha < 1.0:
      raise ValueError(f"`alpha` must be in (0, 1), got {self.alpha!r}.")
    if isinstance(self.max_iter, bool) or not isinstance(
        self.max_iter, (int, np.integer)) or self.max_iter < 1:
      raise ValueError(f"`max_iter` must be an int >= 1, got {self.max_iter!r}.")
    if not self.tol >= 0:
      raise ValueError(f"`tol` must be >= 0, got {self.tol!r}.")
    if self.knn_method not in ("exact", "approx"):
      raise ValueError(
          f"`knn_method` must be 'exact' or 'approx', got {self.knn_method!r}.")
    if isinstance(self.recall, bool) or not isinstance(
        self.recall, (int, float, np.number)) or not 0.0 < self.recall <= 1.0:
      raise ValueError(f"`recall` must be a number in (0, 1], got {self.recall!r}.")
    if self.num_probes is not None and (isinstance(self.num_probes, bool) or not isinstance(
        self.num_probes, (int, np.integer)) or self.num_probes < 1):
      raise ValueError(f"`num_probes` must be None or an int >= 1, got {self.num_probes!r}.")

  def fit(self, X, y):
    """Fits the model transductively to ``X`` and partial labels ``y``.

    Args:
      X: ``[n_samples, n_features]`` array or scipy sparse matrix.
      y: ``[n_samples]`` class labels, ``-1`` for unlabeled samples.

    Returns:
      self, with ``transduction_`` (the label of every sample),
      ``label_distributions_`` ``[n_samples, n_classes]``, ``classes_``,
      ``n_iter_`` and, for ``kernel='knn'``, ``knn_recall_`` (the estimated
      recall of the neighbours: 1.0 for exact ones).
    """
    # scikit-learn's validation and messages (shapes, dtypes, y), then a
    # finiteness check that names the first bad row.
    x, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], reset=True,
                         ensure_all_finite=False)
    _check_finite("X", x)
    check_classification_targets(y)
    n = x.shape[0]
    self._check_params(n)
    unlabeled = y == -1
    if unlabeled.all():
      raise ValueError(
          "`y` has no labeled sample: all entries are -1; label at least one "
          "sample per class.")
    classes = np.unique(y[~unlabeled])
    n_classes = len(classes)
    sparse_knn = self.kernel == "knn" and (
        n > _DENSE_KNN_MAX_SAMPLES or self.knn_method == "approx")
    # Dense graphs: size buckets (<= 1.5x the rows). Sparse graphs (large N, where a
    # compilation is cheap next to the fit): a multiple of 256 rows, little waste.
    n_pad = -(-n // 256) * 256 if sparse_knn else _bucket(n)
    codes = np.full(n_pad, -1, np.int32)
    codes[:n][~unlabeled] = np.searchsorted(classes, y[~unlabeled])

    self.X_ = x
    self.classes_ = classes
    alpha = self.alpha if self._variant == "spreading" else 0.5
    if sparse_knn:
      self._x_pad = _pad_rows(_dense_float32(x), n_pad)
      idx, weights = self._knn_graph(n, n_pad)
      scores, n_iter = _propagation._propagate(  # pylint: disable=protected-access
          idx, weights, jnp.asarray(codes), jnp.float32(alpha),
          jnp.int32(self.max_iter), jnp.float32(self.tol),
          num_classes=n_classes, method=self._variant,
          normalize_by_class_size=False, symmetrize=bool(self.symmetrize))
    else:
      if callable(self.kernel):
        self._x_pad = None
        w = _pad_rows(_pad_rows(_dense_float32(self.kernel(x, x)), n_pad).T,
                      n_pad).T
      elif self.kernel == "knn":
        self._x_pad = _pad_rows(_dense_float32(x), n_pad)
        w = _knn_affinity(self._x_pad, n, int(self.n_neighbors))
        if self.symmetrize:   # as the sparse path: W + W^T without self-loops
          w = jnp.where(jnp.eye(n_pad, dtype=bool), 0.0, w)
      else:
        self._x_pad = _pad_rows(_dense_float32(x), n_pad)
        w = _rbf_affinity(self._x_pad, n, jnp.float32(self.gamma))
      if self.symmetrize:
        w = w + w.T
      scores, n_iter = _dense_iterate(
          jnp.asarray(w), jnp.asarray(codes), jnp.float32(alpha),
          jnp.int32(self.max_iter), jnp.float32(self.tol),
          num_classes=n_classes, variant=self._variant)
    dist = np.asarray(scores, np.float64)
    total = dist.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    dist = dist / total
    self._dist_pad = dist.astype(np.float32)
    self.label_distributions_ = dist[:n]
    self.transduction_ = classes[np.argmax(self.label_distributions_, axis=1)]
    self.n_iter_ = int(n_iter)
    if self.n_iter_ >= self.max_iter:
      warnings.warn(
          f"max_iter={self.max_iter} was reached without convergence.",
          category=ConvergenceWarning)
    return self

  def _knn_graph(self, n: int, n_pad: int):
    """The padded kNN graph: scikit-learn's (self + n_neighbors - 1 others)."""
    num_others = int(self.n_neighbors) - 1
    self_loop = self._variant == "propagation" and not self.symmetrize
    if self.knn_method == "exact" or num_others == 0:
      self.knn_recall_ = 1.0
      k_slots = max(num_others, 1)
      return _knn_fit_graph(jnp.asarray(self._x_pad), n, num_others,
                            k_slots=k_slots, self_loop=self_loop)
    # The PCA tree is built for the actual sample count (compiled per N).
    idx, _, self.knn_recall_ = _graph.knn_graph(
        self._x_pad[:n], k=num_others, metric="euclidean", method="approx",
        recall=self.recall, num_probes=self.num_probes, leaf_size=self.leaf_size,
        return_recall=True)
    rows = np.arange(n_pad, dtype=np.int32)[:, None]
    idx = np.concatenate([np.asarray(idx), rows[n:].repeat(num_others, 1)])
    weights = (rows < n).astype(np.float32).repeat(num_others, 1)
    if self_loop:
      idx = np.concatenate([rows, idx], axis=1)
      weights = np.concatenate([(rows < n).astype(np.float32), weights], 1)
    return jnp.asarray(idx), jnp.asarray(weights)

  def predict_proba(self, X):
    """Class probabilities of new samples from the training samples.

    As in scikit-learn: for ``kernel='knn'`` the label distributions of the
    ``n_neighbors`` nearest training samples are summed (equal distances
    ranked by training index); for ``'rbf'`` all training samples' are
    weighted by ``exp(-gamma * d^2)``; for a callable, by
    ``kernel(X_train, X).T``. Rows are then normalised (an all-zero row
    becomes uniform).

    Args:
      X: ``[n_queries, n_features]`` array or scipy sparse matrix.

    Returns:
      ``[n_queries, n_classes]`` probabilities.
    """
    check_is_fitted(self, "label_distributions_")
    x = validate_data(self, X, accept_sparse=["csr", "csc", "coo", "dok",
                                              "bsr", "lil", "dia"],
                      reset=False, ensure_all_finite=False)
    _check_finite("X", x)
    if callable(self.kernel):
      probs = np.asarray(safe_sparse_dot(
          self.kernel(self.X_, x).T, self.label_distributions_), np.float64)
    else:
      q = x.shape[0]
      q_pad = -(-_bucket(q) // _QUERY_BLOCK) * _QUERY_BLOCK
      n_pad = self._x_pad.shape[0]
      k = int(self.n_neighbors)
      probs = _query_probabilities(
          jnp.asarray(_pad_rows(_dense_float32(x), q_pad)),
          jnp.asarray(self._x_pad), self.X_.shape[0],
          jnp.asarray(self._dist_pad), k, jnp.float32(self.gamma),
          k_slots=min(max(16, 1 << (k - 1).bit_length()), n_pad),
          kernel=self.kernel)
      probs = np.asarray(probs, np.float64)[:q]
    total = probs.sum(axis=1, keepdims=True)
    uniform = np.full_like(probs, 1.0 / probs.shape[1])
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0),
                    uniform)

  def predict(self, X):
    """Most probable class of each new sample (see `predict_proba`)."""
    proba = self.predict_proba(X)   # first: raises NotFittedError if unfitted
    return self.classes_[np.argmax(proba, axis=1)]


_ARGS_DOC = """
  Args:
    kernel: ``'knn'`` (sparse kNN graph, unit weights: the fast choice for
      large N), ``'rbf'`` (scikit-learn's dense affinity
      ``exp(-gamma |x_i - x_j|^2)`` over all pairs, O(N^2) memory) or a
      callable ``kernel(X, Y) -> [n_X, n_Y]`` affinities (dense or scipy
      sparse; densified).
    gamma: rbf parameter (>= 0).
    n_neighbors: ``kernel='knn'``: as in scikit-learn, the sample itself is
      its own first neighbour, so each sample is linked to its
      ``n_neighbors - 1`` nearest other samples (1 links none); queries of
      ``predict`` use their ``n_neighbors`` nearest training samples.
{alpha}    max_iter: maximum number of iterations (>= 1); reaching it without
      converging warns with a ``ConvergenceWarning``, as scikit-learn does.
    tol: stop when the summed absolute change of the label distributions is
      below ``tol`` (scikit-learn's rule).
    n_jobs: accepted for compatibility; unused (JAX uses all cores).
    symmetrize: ``False`` (default) keeps scikit-learn's directed kNN graph
      and normalisation, so results match scikit-learn's; ``True`` uses the
      symmetrised graph W + W^T of Zhou et al. (for the rbf kernel, which is
      symmetric already, this only doubles every weight: same result).
    knn_method: ``'exact'`` or ``'approx'`` neighbours for ``kernel='knn'``
      (:func:`sslx.graph.knn_graph`; the approximate PCA-tree search is
      compiled per sample count).
    recall: approximate search: the target recall of the exact neighbours
      (default 0.95): the probe count is chosen for it on a sample of points
      (:func:`sslx.graph.knn_graph`); the estimate is ``knn_recall_``.
    num_probes: approximate search: tree leaves searched per leaf (None:
      chosen for ``recall``).
    leaf_size: approximate search: points per leaf.
"""


class LabelSpreading(_BaseLabelPropagation):
  r"""Label spreading (Zhou et al. 2004), scikit-learn's ``LabelSpreading``.

  Iterates :math:`F \leftarrow \alpha S F + (1 - \alpha) Y` with
  :math:`S = D^{-1/2} W D^{-1/2}` (W without self-loops, D its in-degrees,
  as scipy's normalised Laplacian) over scikit-learn's graph: by default the
  directed kNN graph for ``kernel='knn'`` (see
  :func:`sslx.graph.propagate`) and the dense affinity for ``'rbf'`` and
  callables.
  """

  _variant = "spreading"

  def __init__(self, kernel="rbf", *, gamma: float = 20,
               n_neighbors: int = 7, alpha: float = 0.2, max_iter: int = 30,
               tol: float = 1e-3, n_jobs: Optional[int] = None,
               symmetrize: bool = False, knn_method: str = "exact",
               recall: float = 0.95, num_probes: Optional[int] = None,
               leaf_size: int = 256):
    self.kernel = kernel
    self.gamma = gamma
    self.n_neighbors = n_neighbors
    self.alpha = alpha
    self.symmetrize = symmetrize
    self.max_iter = max_iter
    self.tol = tol
    self.n_jobs = n_jobs
    self.knn_method = knn_method
    self.recall = recall
    self.num_probes = num_probes
    self.leaf_size = leaf_size


class LabelPropagation(_BaseLabelPropagation):
  r"""Label propagation (Zhu and Ghahramani 2002), scikit-learn's ``LabelPropagation``.

  Iterates :math:`F \leftarrow D^{-1} W F` with rows renormalised and the
  labeled rows clamped to their labels, over scikit-learn's graph: by default
  the directed kNN graph with each sample as its own first neighbour for
  ``kernel='knn'`` (see :func:`sslx.graph.propagate`) and the dense affinity
  for ``'rbf'`` and callables.
  """

  _variant = "propagation"

  def __init__(self, kernel="rbf", *, gamma: float = 20,
               n_neighbors: int = 7, max_iter: int = 1000, tol: float = 1e-3,
               n_jobs: Optional[int] = None, symmetrize: bool = False,
               knn_method: str = "exact", recall: float = 0.95,
               num_probes: Optional[int] = None, leaf_size: int = 256):
    self.kernel = kernel
    self.gamma = gamma
    self.n_neighbors = n_neighbors
    self.symmetrize = symmetrize
    self.max_iter = max_iter
    self.tol = tol
    self.n_jobs = n_jobs
    self.knn_method = knn_method
    self.recall = recall
    self.num_probes = num_probes
    self.leaf_size = leaf_size


# One Args section for both classes (they differ only by `alpha`).
LabelSpreading.__doc__ += _ARGS_DOC.format(alpha="""\
    alpha: clamping factor in (0, 1): the weight of the neighbours' labels
      against the initial label.
""")
LabelPropagation.__doc__ += _ARGS_DOC.format(alpha="")
