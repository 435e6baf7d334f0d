"""Label propagation over a kNN graph, and the deep-LP targets built on it.

Pure JAX functions (jittable, no scikit-learn) for the manifold assumption:
spread the few known labels over a similarity graph of all points.

* :func:`propagate` -- label spreading (Zhou et al. 2004), hard-clamped label
  propagation (Zhu and Ghahramani 2002) or a conjugate-gradient solve of the
  spreading system (Iscen et al. 2019) over the symmetrised kNN graph (or,
  as scikit-learn, the directed one), as gather-based sparse products
  (O(N k C) per iteration).
* :func:`lp_pseudo_labels` -- the certainty- and class-weighted pseudo-labels
  of deep label propagation (Iscen, Tolias, Avrithis and Chum, "Label
  Propagation for Deep Semi-supervised Learning", CVPR 2019); the loss over
  them is :func:`sslx.losses.weighted_pseudo_label_loss`.
* :func:`batch_label_propagation` -- the same, over the embeddings of a
  single batch, entirely inside `jit`, returning stop-gradient targets that a
  training step adds as a graph loss term. Its graph comes from the same
  exact kNN code as :func:`sslx.graph.knn_graph`.

Conventions: labels are integers in ``[0, num_classes)`` and ``-1`` marks an
unlabeled point (scikit-learn's convention). Everything is computed in
float32. Input checks that need values (label range, classes without labels)
run only on concrete arrays, never under `jit`.

How the deep-LP pieces follow the official code (github.com/ahmetius/LP-DeepSSL,
``lp/db_semisuper.py`` and ``lp/diffusion.py``):

* graph: features are L2-normalised, the k nearest neighbours by inner
  product (cosine) are found (k = 50 there), the similarities are raised to
  the power gamma = 3 -- here ``weights = max(similarity, 0) ** gamma``, the
  clip only matters for negative cosines, which ReLU features never give --
  and the graph is symmetrised as W + W^T (an edge found from both ends
  counts twice), its diagonal removed and normalised as
  S = D^-1/2 W D^-1/2 (a zero degree -- an isolated point, whose row of W is
  zero anyway -- is treated as 1 here, 1/sqrt(0) -> 0 there: same S).
* solve: (I - alpha S) Z = Y with alpha = 0.99 by conjugate gradient, at
  most 20 iterations, one right-hand side per class, with Y[:, c] = 1/|L_c|
  on the labeled points of class c (``normalize_by_class_size=True``).
* pseudo-labels: negative scores clipped to 0, each row L1-normalised, the
  certainty omega_i = 1 - H(z_i) / log(C), divided by its maximum over the
  data set, labeled points keep their label with omega = 1; class weights
  zeta_c = (N / C) / #{i : pseudo_label_i = c}.
* loss (:func:`sslx.losses.weighted_pseudo_label_loss`):
  sum_i omega_i zeta_{y_i} CE(logits_i, y_i) / batch_size.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sslx.graph import _checks
from sslx.graph.knn import _exact_knn_graph

_PROPAGATE_METHODS = ("spreading", "propagation", "cg")

# ---------------------------------------------------------------------------
# Propagation over the symmetrised kNN graph.
# ---------------------------------------------------------------------------


def _gather_product(indices: jax.Array, weights: jax.Array,
                    f: jax.Array) -> jax.Array:
  """(W f)_i = sum_j w_ij f[idx_ij], one [N, C] gather per neighbour slot.

  k separate row gathers run several times faster on CPU than one
  [N, k, C] gather followed by a reduction.
  """
  k = indices.shape[1]
  if k <= 64:
    out = weights[:, 0, None] * f[indices[:, 0]]
    for j in range(1, k):
      out = out + weights[:, j, None] * f[indices[:, j]]
    return out
  return lax.fori_loop(
      0, k, lambda j, acc: acc + weights[:, j, None] * f[indices[:, j]],
      jnp.zeros_like(f))


def _transpose_product(indices: jax.Array, weights: jax.Array,
                       f: jax.Array) -> jax.Array:
  """(W^T f)_j = sum_{(i, s): idx_is = j} w_is f_i, as one scatter-add."""
  n, k = indices.shape
  contrib = (weights[:, :, None] * f[:, None, :]).reshape(n * k, -1)
  return jax.ops.segment_sum(contrib, indices.reshape(-1), n)


def _seeds(labels: jax.Array, num_classes: int,
           normalize_by_class_size: bool) -> jax.Array:
  """Y [N, C]: one-hot rows for labeled points, zeros for labels == -1."""
  y = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # -1 -> zeros
  if normalize_by_class_size:
    y = y / jnp.maximum(y.sum(axis=0, keepdims=True), 1.0)
  return y


@functools.partial(
    jax.jit,
    static_argnames=("num_classes", "method", "normalize_by_class_size",
                     "symmetrize"))
def _propagate(indices, weights, labels, alpha, num_iters, tol, *,
               num_classes, method, normalize_by_class_size, symmetrize):
  """Returns (scores [N, C], number of iterations run)."""
  n = indices.shape[0]
  y = _seeds(labels, num_classes, normalize_by_class_size)
  labeled = (labels >= 0)[:, None]
  if method != "propagation":
    # Self-loops are dropped, as in the normalised Laplacian of Zhou et al.
    # (propagation keeps them: a lazy walk, as scikit-learn's kNN graph).
    weights = jnp.where(indices == jnp.arange(n)[:, None], 0.0, weights)
  out_deg = weights.sum(axis=1)
  in_deg = jax.ops.segment_sum(weights.reshape(-1), indices.reshape(-1), n)

  def w_product(f):   # W F, W = A + A^T (symmetrised) or A (directed)
    wf = _gather_product(indices, weights, f)
    if symmetrize:
      wf = wf + _transpose_product(indices, weights, f)
    return wf

  def inverse(d, power):
    # Zero degree -> 1, as scipy's Laplacian: the row of a point nobody links
    # to (possible in a directed graph) still sums its own neighbours.
    return jnp.where(d > 0, d, 1.0) ** power

  if method == "propagation":
    # Row-normalised transitions D^-1 W (scikit-learn: out-degrees).
    inv_deg = inverse(out_deg + in_deg if symmetrize else out_deg, -1.0)

    def step(f):   # F <- D^-1 W F, rows renormalised, labeled rows -> Y.
      f = inv_deg[:, None] * w_product(f)
      total = f.sum(axis=1, keepdims=True)
      f = f / jnp.where(total > 0, total, 1.0)
      return jnp.where(labeled, y, f)
  else:
    # S = D^-1/2 W D^-1/2 (directed: in-degrees, as scipy's Laplacian).
    d_isqrt = inverse(out_deg + in_deg if symmetrize else in_deg, -0.5)

    def s_product(f):
      return d_isqrt[:, None] * w_product(d_isqrt[:, None] * f)

    def step(f):   # F <- alpha S F + (1 - alpha) Y
      return alpha * s_product(f) + (1.0 - alpha) * y

  if method != "cg":
    def cond(state):
      it, _, change = state
      return (it < num_iters) & (change >= tol)

    def body(state):
      it, f, _ = state
      f_new = step(f)
      return it + 1, f_new, jnp.sum(jnp.abs(f_new - f))

    it, f, _ = lax.while_loop(cond, body, (0, y, jnp.inf))
    return f, it

  # Conjugate gradient on (I - alpha S) Z = Y, one system per class column
  # (per-column step sizes, like one scipy.sparse.linalg.cg call per class).
  def a_product(z):
    return z - alpha * s_product(z)

  def col_dot(a, b):
    return jnp.sum(a * b, axis=0)

  b_norm = jnp.sqrt(col_dot(y, y))
  z0 = jnp.zeros_like(y)
  rs0 = col_dot(y, y)

  def cg_cond(state):
    it, _, _, _, rs = state
    return (it < num_iters) & jnp.any(jnp.sqrt(rs) > tol * b_norm)

  def cg_body(state):
    it, z, r, p, rs = state
    ap = a_product(p)
    pap = col_dot(p, ap)
    step_size = jnp.where(pap > 0, rs / jnp.where(pap > 0, pap, 1.0), 0.0)
    z = z + step_size * p
    r = r - step_size * ap
    rs_new = col_dot(r, r)
    beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
    return it + 1, z, r, r + beta * p, rs_new

  it, z, _, _, _ = lax.while_loop(cg_cond, cg_body, (0, z0, y, y, rs0))
  return (1.0 - alpha) * z, it


def propagate(
    indices: chex.Array,
    weights: chex.Array,
    labels: chex.Array,
    *,
    num_classes: int,
    alpha: float = 0.99,
    num_iters: int = 20,
    tol: Optional[float] = None,
    method: str = "spreading",
    normalize_by_class_size: bool = False,
    symmetrize: bool = True,
) -> jax.Array:
  r"""Spreads the known labels over a kNN graph; returns class scores.

  The graph is the directed kNN graph ``i -> indices[i, j]`` with weights
  ``weights[i, j]``, symmetrised as :math:`W = A + A^\top` (an edge found from
  both ends counts twice, as in Iscen et al.), self-loops dropped, and
  normalised as :math:`S = D^{-1/2} W D^{-1/2}` with :math:`D = \mathrm{diag}(W
  \mathbf{1})` (a zero degree counts as 1, as in scipy's Laplacian). Products with W are gathers and one
  scatter-add, ``O(N k C)`` per iteration. With seeds :math:`Y` (one-hot rows
  of the labeled points, zero rows for ``labels == -1``):

  * ``'spreading'`` (Zhou et al. 2004, scikit-learn's ``LabelSpreading``):
    :math:`F \leftarrow \alpha S F + (1 - \alpha) Y` from :math:`F = Y`, which
    converges to :math:`F^* = (1 - \alpha)(I - \alpha S)^{-1} Y`;
  * ``'cg'`` (Iscen et al. 2019): conjugate gradient on
    :math:`(I - \alpha S) Z = Y` from :math:`Z = 0`, one system per class,
    returning :math:`(1 - \alpha) Z` (the same fixed point, in fewer
    iterations for alpha near 1);
  * ``'propagation'`` (Zhu and Ghahramani 2002, scikit-learn's
    ``LabelPropagation``): :math:`F \leftarrow D^{-1} W F`, rows renormalised
    to sum 1 (zero rows stay zero) and labeled rows clamped to :math:`Y`
    after every step, as scikit-learn does; converges to the harmonic
    solution :math:`F_u = (D_{uu} - W_{uu})^{-1} W_{ul} Y_l` when every point
    is connected to a label. Self-loops in ``indices`` are kept here (a lazy
    walk: same fixed point, as in scikit-learn's kNN graph, where each point
    is one of its own neighbours) and dropped by the other methods.
    ``alpha`` is unused.

  Stopping: after ``num_iters`` iterations, or earlier when the total absolute
  change :math:`\sum |F_{t+1} - F_t|` drops below ``tol`` (scikit-learn's
  rule; default 1e-3) for the iterations, or when every class residual
  :math:`\|r_c\| \le \mathrm{tol} \|y_c\|` (scipy's ``cg`` rule; default 1e-6)
  for CG.

  Example::

    >>> idx, sim = knn_graph(features, k=50)
    >>> scores = propagate(idx, jnp.maximum(sim, 0.) ** 3, labels,
    ...                    num_classes=10, method='cg',
    ...                    normalize_by_class_size=True)
    >>> pseudo, omega, zeta = lp_pseudo_labels(scores, labels)

  Args:
    indices: ``[N, k]`` int neighbour ids in ``[0, N)`` (from
      :func:`knn_graph`).
    weights: ``[N, k]`` non-negative edge weights (e.g. ``sim ** 3`` for
      cosine similarities, ``exp(-gamma d^2)`` for an rbf kernel, ones for a
      connectivity graph).
    labels: ``[N]`` int in ``[-1, num_classes)``, -1 for unlabeled; every class
      needs a labeled point (checked on concrete values).
    num_classes: number of classes C >= 1.
    alpha: spreading/CG parameter in (0, 1).
    num_iters: maximum number of iterations.
    tol: stopping tolerance (see above); 0 runs all ``num_iters``.
    method: ``'spreading'``, ``'propagation'`` or ``'cg'``.
    normalize_by_class_size: divide the seeds of class c by its number of
      labeled points (Iscen et al.), so classes weigh the same.
    symmetrize: use :math:`W = A + A^\top` (default). ``False`` keeps the
      directed graph :math:`W = A` with scikit-learn's normalisations: D holds
      in-degrees (column sums) for spreading and CG, as scipy's normalised
      Laplacian of a directed graph does, and out-degrees (row sums) for
      propagation; the products then need no scatter.

  Returns:
    ``[N, num_classes]`` float32 scores (not normalised; rows of points the
    labels cannot reach are zero).
  """
  scores, _ = _propagate_with_iters(
      indices, weights, labels, num_classes=num_classes, alpha=alpha,
      num_iters=num_iters, tol=tol, method=method,
      normalize_by_class_size=normalize_by_class_size, symmetrize=symmetrize)
  return scores


def _propagate_with_iters(indices, weights, labels, *, num_classes, alpha,
                          num_iters, tol, method, normalize_by_class_size,
                          symmetrize=True, batch_mode=False):
  """`propagate` plus the number of iterations run (for the estimators)."""
  if method not in _PROPAGATE_METHODS:
    raise ValueError(
        f"`method` must be one of {_PROPAGATE_METHODS}, got {method!r}.")
  num_classes = _checks.check_int("num_classes", num_classes, 1)
  indices, weights = _checks.check_graph(indices, weights)
  labels = _checks.check_labels(labels, indices.shape[0], num_classes,
                         require_labeled=not batch_mode,
                         require_all_classes=not batch_mode)
  if not _checks.is_traced(alpha) and method != "propagation":
    if not 0.0 < float(alpha) < 1.0:
      raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
  num_iters = _checks.check_int("num_iters", num_iters, 0)
  if tol is None:
    tol = 1e-6 if method == "cg" else 1e-3
  if not _checks.is_traced(tol) and not float(tol) >= 0.0:
    raise ValueError(f"`tol` must be >= 0, got {tol}.")
  return _propagate(indices, weights, labels, jnp.float32(alpha),
                    jnp.int32(num_iters), jnp.float32(tol),
                    num_classes=num_classes, method=method,
                    normalize_by_class_size=normalize_by_class_size,
                    symmetrize=bool(symmetrize))


# ---------------------------------------------------------------------------
# Deep label propagation (Iscen et al. 2019): pseudo-labels, weights, loss.
# ---------------------------------------------------------------------------


def lp_pseudo_labels(
    scores: chex.Array,
    labels: chex.Array,
) -> Tuple[jax.Array, jax.Array, jax.Array]:
  r"""Pseudo-labels, certainty weights and class weights from LP scores.

  Following Iscen et al. (2019), eq. 10-11 and their code: with
  :math:`z_i = \max(F_i, 0) / \|\max(F_i, 0)\|_1` (a uniform row when all
  scores are <= 0),

  * pseudo-label :math:`\hat y_i = \arg\max_c z_{ic}`;
  * certainty :math:`\omega_i = 1 - H(z_i) / \log C` with the entropy
    :math:`H(z) = -\sum_c z_c \log z_c`, then divided by its maximum over all
    points (so the most certain point has weight 1);
  * labeled points (``labels >= 0``) keep their label with :math:`\omega_i=1`;
  * class weights :math:`\zeta_c = (N / C) / |\{i : \hat y_i = c\}|` over all
    N points (0 for a class no point is assigned to).

  Example::

    >>> pseudo, omega, zeta = lp_pseudo_labels(scores, labels)
    >>> loss = weighted_pseudo_label_loss(logits[batch], pseudo[batch],
    ...                                   omega[batch], zeta)

  Args:
    scores: ``[N, C]`` propagated scores (:func:`propagate`), C >= 2.
    labels: ``[N]`` int in ``[-1, C)``, -1 for unlabeled.

  Returns:
    ``(pseudo_labels [N] int32, certainty_weights [N] float32,
    class_weights [C] float32)``.
  """
  if jnp.ndim(scores) != 2:
    raise ValueError(
        f"`scores` must have rank 2 ([num_points, num_classes]), got shape "
        f"{tuple(jnp.shape(scores))}.")
  n, num_classes = jnp.shape(scores)
  if num_classes < 2:
    raise ValueError(
        f"`scores` needs at least 2 classes (columns), got {num_classes}.")
  labels = _checks.check_labels(labels, n, num_classes, require_labeled=False,
                         require_all_classes=False)
  return _lp_pseudo_labels(jnp.asarray(scores, jnp.float32), labels)


@jax.jit
def _lp_pseudo_labels(scores, labels):
  n, num_classes = scores.shape
  p = jnp.maximum(scores, 0.0)
  total = p.sum(axis=1, keepdims=True)
  p = jnp.where(total > 0, p / jnp.where(total > 0, total, 1.0),
                1.0 / num_classes)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)),
                               0.0), axis=1)
  omega = 1.0 - entropy / jnp.log(float(num_classes))
  omega = jnp.maximum(omega, 0.0)
  omega = omega / jnp.maximum(omega.max(), 1e-12)
  labeled = labels >= 0
  pseudo = jnp.where(labeled, labels, jnp.argmax(p, axis=1)).astype(jnp.int32)
  omega = jnp.where(labeled, 1.0, omega)
  return pseudo, omega, class_weights(pseudo, num_classes)


def class_weights(pseudo: jax.Array, num_classes: int,
                  counted: Optional[jax.Array] = None) -> jax.Array:
  """Iscen et al.'s class weights over the `counted` points (all when None):
  ``zeta_c = (N / C) / |{i : pseudo_i = c}|``, 0 for a class no counted point has."""
  ones = jnp.ones(pseudo.shape, jnp.float32)
  counted = ones if counted is None else jnp.asarray(counted, jnp.float32)
  counts = jnp.zeros((num_classes,), jnp.float32).at[pseudo].add(counted)
  n = jnp.sum(counted)
  return jnp.where(counts > 0, (n / num_classes) / jnp.where(counts > 0, counts, 1.0), 0.0)


# ---------------------------------------------------------------------------
# In-batch deep label propagation.
# ---------------------------------------------------------------------------


class GraphTargets(NamedTuple):
  """Stop-gradient targets of :func:`batch_label_propagation`."""
  pseudo_labels: jax.Array       # [B] int32
  certainty_weights: jax.Array   # [B] float32, omega
  class_weights: jax.Array       # [C] float32, zeta
  probabilities: jax.Array       # [B, C] L1-normalised non-negative scores


def batch_label_propagation(
    embeddings: chex.Array,
    labels: chex.Array,
    *,
    num_classes: int,
    k: int = 10,
    alpha: float = 0.99,
    gamma: float = 3.0,
    num_iters: int = 20,
    method: str = "cg",
) -> GraphTargets:
  r"""Deep label propagation over one batch, entirely inside `jit`.

  Builds the kNN graph of the batch's embeddings (cosine similarity, exact,
  the same code as :func:`sslx.graph.knn_graph`), weights its edges by
  ``max(sim, 0) ** gamma``, propagates the batch's labels (``-1`` for unlabeled) with :func:`propagate`
  (``normalize_by_class_size=True``) and turns the scores into
  :func:`lp_pseudo_labels`. The targets are fixed, as in Iscen et al.: the
  embeddings go through ``stop_gradient``, so a method adds

  >>> t = batch_label_propagation(emb, labels, num_classes=10, k=10)
  >>> loss_graph = weighted_pseudo_label_loss(logits, t.pseudo_labels,
  ...                                         t.certainty_weights,
  ...                                         t.class_weights)

  as a graph loss term whose gradient flows through ``logits`` only. A class
  with no labeled point in the batch simply receives no scores.

  Args:
    embeddings: ``[B, D]`` features of labeled and unlabeled examples.
    labels: ``[B]`` int in ``[-1, num_classes)``.
    num_classes: number of classes C >= 2.
    k: neighbours per example, ``1 <= k < B``.
    alpha: propagation parameter in (0, 1).
    gamma: similarity exponent (Iscen et al. use 3).
    num_iters: propagation (CG) iterations.
    method: ``'cg'``, ``'spreading'`` or ``'propagation'``.

  Returns:
    :class:`GraphTargets`, all stop-gradient.
  """
  if jnp.ndim(embeddings) != 2:
    raise ValueError(
        f"`embeddings` must have rank 2 ([batch, features]), got shape "
        f"{tuple(jnp.shape(embeddings))}.")
  b = jnp.shape(embeddings)[0]
  k = _checks.check_int("k", k, 1, b - 1, high_doc=" (k must be < batch size)")
  num_classes = _checks.check_int("num_classes", num_classes, 2)
  x = lax.stop_gradient(jnp.asarray(embeddings, jnp.float32))
  if not _checks.is_traced(x) and not np.isfinite(np.asarray(x)).all():
    raise ValueError("`embeddings` must be finite, got NaN or infinite values.")
  idx, sim = _exact_knn_graph(x, k=k, metric="cosine")
  weights = jnp.maximum(sim, 0.0) ** gamma
  scores, _ = _propagate_with_iters(
      idx, weights, labels, num_classes=num_classes, alpha=alpha,
      num_iters=num_iters, tol=0.0 if method != "cg" else 1e-6, method=method,
      normalize_by_class_size=True, batch_mode=True)
  pseudo, omega, zeta = _lp_pseudo_labels(scores, jnp.asarray(labels,
                                                              jnp.int32))
  p = jnp.maximum(scores, 0.0)
  total = p.sum(axis=1, keepdims=True)
  p = jnp.where(total > 0, p / jnp.where(total > 0, total, 1.0),
                1.0 / num_classes)
  return GraphTargets(*(lax.stop_gradient(v) for v in (pseudo, omega, zeta, p)))
