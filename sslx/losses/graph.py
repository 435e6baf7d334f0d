"""Graph-based semi-supervised learning: kNN graphs and label propagation.

Pure JAX functions (jittable, no scikit-learn) for the manifold assumption:
spread the few known labels over a similarity graph of all points.

* :func:`knn_graph` -- k nearest neighbours of every point (self excluded),
  exact (blocked matmul, never N x N in memory) or approximate (a balanced
  PCA-tree partition searched leaf by leaf).
* :func:`knn_search` -- k nearest database points of new query points.
* :func:`propagate` -- label spreading (Zhou et al. 2004), hard-clamped label
  propagation (Zhu and Ghahramani 2002) or a conjugate-gradient solve of the
  spreading system (Iscen et al. 2019) over the symmetrised kNN graph (or,
  as scikit-learn, the directed one), as gather-based sparse products
  (O(N k C) per iteration).
* :func:`lp_pseudo_labels` and :func:`weighted_pseudo_label_loss` -- the
  certainty- and class-weighted pseudo-labels of deep label propagation
  (Iscen, Tolias, Avrithis and Chum, "Label Propagation for Deep
  Semi-supervised Learning", CVPR 2019).
* :func:`batch_label_propagation` -- the same, over the embeddings of a
  single batch, entirely inside `jit`, returning stop-gradient targets that a
  training step adds as a graph loss term.

Conventions: labels are integers in ``[0, num_classes)`` and ``-1`` marks an
unlabeled point (scikit-learn's convention). Everything is computed in
float32. Input checks that need values (NaN features, label range, classes
without labels) run only on concrete arrays, never under `jit`.

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
* loss: sum_i omega_i zeta_{y_i} CE(logits_i, y_i) / batch_size.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_METRICS = ("cosine", "inner_product", "euclidean")
_KNN_METHODS = ("exact", "approx")
_PROPAGATE_METHODS = ("spreading", "propagation", "cg")

# ---------------------------------------------------------------------------
# Input checks (private).
# ---------------------------------------------------------------------------


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _check_int(name: str, value, low: int, high: Optional[int] = None,
               high_doc: str = "") -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"`{name}` must be an int, got {value!r}.")
  value = int(value)
  if value < low or (high is not None and value > high):
    upper = f", {high}]" if high is not None else ", inf)"
    raise ValueError(
        f"`{name}` must be in [{low}{upper}{high_doc}, got {value}.")
  return value


def _check_features(name: str, x) -> jax.Array:
  """Rank-2 float array; NaN/inf rejected when the values are known."""
  if jnp.ndim(x) != 2:
    raise ValueError(
        f"`{name}` must have rank 2 ([num_points, num_features]), got shape "
        f"{tuple(jnp.shape(x))}.")
  dtype = jnp.result_type(x)
  if not (jnp.issubdtype(dtype, jnp.floating)
          or jnp.issubdtype(dtype, jnp.integer)):
    raise ValueError(f"`{name}` must be a numeric array, got dtype {dtype}.")
  if not _is_traced(x):
    finite = np.isfinite(np.asarray(x)).all(axis=1)
    if not finite.all():
      bad = np.flatnonzero(~finite)
      raise ValueError(
          f"`{name}` must be finite, got NaN or infinite values in "
          f"{bad.size} row(s), first at row {int(bad[0])}.")
  return jnp.asarray(x, jnp.float32)


def _check_labels(labels, num_points: int, num_classes: int, *,
                  require_labeled: bool, require_all_classes: bool,
                  name: str = "labels", points: str = "points") -> jax.Array:
  """Labels [N] int in [-1, C); value checks only on concrete arrays."""
  if jnp.ndim(labels) != 1:
    raise ValueError(
        f"`{name}` must have rank 1 ([num_{points}]), got shape "
        f"{tuple(jnp.shape(labels))}.")
  if jnp.shape(labels)[0] != num_points:
    raise ValueError(
        f"`{name}` must have one entry per {points[:-1]}: got "
        f"{jnp.shape(labels)[0]} labels for {num_points} {points}.")
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(
        f"`{name}` must be integers (-1 for unlabeled), got dtype "
        f"{jnp.result_type(labels)}.")
  if not _is_traced(labels):
    values = np.asarray(labels)
    bad = (values < -1) | (values >= num_classes)
    if bad.any():
      raise ValueError(
          f"`{name}` must be in [-1, {num_classes}) (-1 for unlabeled, "
          f"num_classes={num_classes}), got {int(values[bad][0])} at index "
          f"{int(np.flatnonzero(bad)[0])}.")
    if require_labeled and not (values >= 0).any():
      raise ValueError(
          f"`{name}` has no labeled point: all entries are -1; at least one "
          f"point per class needs its label.")
    if require_all_classes:
      missing = np.setdiff1d(np.arange(num_classes), values[values >= 0])
      if missing.size:
        raise ValueError(
            f"`{name}` has no labeled point of class(es) "
            f"{missing.tolist()} (num_classes={num_classes}); every class "
            f"needs at least one labeled point to be propagated.")
  return jnp.asarray(labels, jnp.int32)


def _check_graph(indices, weights) -> Tuple[jax.Array, jax.Array]:
  if jnp.ndim(indices) != 2:
    raise ValueError(
        f"`indices` must have rank 2 ([num_points, k]), got shape "
        f"{tuple(jnp.shape(indices))}.")
  if not jnp.issubdtype(jnp.result_type(indices), jnp.integer):
    raise ValueError(
        f"`indices` must be integers, got dtype {jnp.result_type(indices)}.")
  if jnp.shape(weights) != jnp.shape(indices):
    raise ValueError(
        f"`weights` must have the shape of `indices` {tuple(jnp.shape(indices))}"
        f", got {tuple(jnp.shape(weights))}.")
  n = jnp.shape(indices)[0]
  if not _is_traced(indices):
    values = np.asarray(indices)
    bad = (values < 0) | (values >= n)
    if bad.any():
      raise ValueError(
          f"`indices` must be in [0, {n}) (rows of the graph), got "
          f"{int(values[bad][0])}.")
  if not _is_traced(weights):
    w = np.asarray(weights)
    if not np.isfinite(w).all() or (w < 0).any():
      raise ValueError(
          "`weights` must be finite and non-negative (edge weights).")
  return (jnp.asarray(indices, jnp.int32), jnp.asarray(weights, jnp.float32))


# ---------------------------------------------------------------------------
# Exact k nearest neighbours.
# ---------------------------------------------------------------------------
#
# Scores: cosine -> <q, x> on L2-normalised rows; inner_product -> <q, x>;
# euclidean -> <q, x> - |x|^2 / 2, which ranks like -|q - x|^2 / 2. The
# per-column term (and -inf for padding columns) is a bias added after the
# matmul, so the matmul keeps the data's feature count.
#
# Selecting the top k of each [B, N] score row with lax.top_k costs about as
# much as the matmul itself on CPU, so the search runs in two passes (the
# point itself is not masked in pass 1; pass 2 drops it from the k + 1 best):
#   1. matmul + max over bins of `bin_size` database points, one [block,
#      chunk] tile at a time (the reduction is fused with the masking and the
#      tile stays in cache): [B, N / bin_size] bin maxima. A bin is strided --
#      points j, j + chunk/m, j + 2 chunk/m, ... of a chunk -- so the max runs
#      over whole SIMD vectors;
#   2. the k best bins per query -- found hierarchically: the k best groups of
#      `group` bins, then the k best bins inside those -- and the exact scores
#      of the k * bin_size points inside them, then a final top k.
# This is exact: the k-th best bin maximum t is attained by k distinct points,
# so the k-th best score is >= t, and every point scoring above t lies in a
# bin whose maximum exceeds t, i.e. in one of the k selected bins (the same
# argument selects the groups). Only exact ties can be resolved differently
# from a full sort.


def _normalize_rows(x: jax.Array) -> jax.Array:
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, 1e-30)


def _column_bias(x: jax.Array, metric: str, valid: jax.Array) -> jax.Array:
  """Per-database-point score term: -|x|^2/2 (euclidean), -inf on padding."""
  if metric == "euclidean":
    bias = -0.5 * jnp.sum(x * x, axis=-1)
  else:
    bias = jnp.zeros(x.shape[:1], x.dtype)
  return jnp.where(valid, bias, -jnp.inf)


def _strided_bins(x: jax.Array, chunk: int, m: int) -> jax.Array:
  """[n, d] -> [n / m, d, m]: bin b of chunk c holds points
  c * chunk + b + i * chunk / m (i < m), feature-major for `_bin_scores`."""
  n, dim = x.shape
  per = chunk // m
  x = x.reshape(n // chunk, m, per, dim)
  return jnp.transpose(x, (0, 2, 3, 1)).reshape(n // m, dim, m)


def _bin_members(bins: jax.Array, chunk: int, m: int) -> jax.Array:
  """Point ids [..., m] of the strided bins `bins` (see `_strided_bins`)."""
  per = chunk // m
  start = (bins // per) * chunk + bins % per
  return start[..., None] + per * jnp.arange(m)


def _bin_max(s: jax.Array, m: int) -> jax.Array:
  """[B, chunk] scores -> [B, chunk / m] maxima of the strided bins."""
  b, c = s.shape
  return s.reshape(b, m, c // m).max(axis=1)


def _bin_scores(q: jax.Array, xg: jax.Array, metric: str) -> jax.Array:
  """Exact similarities of q [B, d] to gathered bins xg [B, k, d, m] -> [B, k*m].

  Bins are stored feature-major ([d, m]) so the reduction over features is a
  vertical (SIMD-friendly) sum.
  """
  if metric == "euclidean":
    diff = xg - q[:, None, :, None]
    s = -jnp.sum(diff * diff, axis=2)
  else:
    s = jnp.sum(xg * q[:, None, :, None], axis=2)
  return s.reshape(q.shape[0], -1)


def _best_bins(bin_max: jax.Array, k: int, group: int) -> jax.Array:
  """Indices [B, k] of the k largest bin maxima, via groups of `group` bins."""
  b, nb = bin_max.shape
  if group == 1:
    return lax.top_k(bin_max, k)[1]
  grouped = bin_max.reshape(b, nb // group, group)
  _, best_groups = lax.top_k(grouped.max(axis=-1), k)           # [B, k]
  inside = jnp.take_along_axis(grouped, best_groups[:, :, None], axis=1)
  _, j = lax.top_k(inside.reshape(b, k * group), k)
  return jnp.take_along_axis(best_groups, j // group, axis=1) * group + j % group


def _round_up(a: int, b: int) -> int:
  return -(-a // b) * b


@functools.partial(
    jax.jit,
    static_argnames=("k", "metric", "exclude_self", "block_size", "chunk_size",
                     "bin_size", "group"))
def _exact_knn(queries, database, *, k, metric, exclude_self, block_size,
               chunk_size, bin_size, group):
  """Exact top-k (values, indices) of every query row; see the note above."""
  num_q, dim = queries.shape
  num_db = database.shape[0]
  if metric == "cosine":
    queries = _normalize_rows(queries)
    database = _normalize_rows(database)
  m = bin_size
  nc = -(-num_db // chunk_size)
  db_pad = nc * chunk_size
  nb = -(-num_q // block_size)
  q_pad = nb * block_size
  db = jnp.pad(database, ((0, db_pad - num_db), (0, 0)))
  bias = _column_bias(db, metric, jnp.arange(db_pad) < num_db)
  qs = jnp.pad(queries, ((0, q_pad - num_q), (0, 0)))
  db_bins = _strided_bins(db, chunk_size, m)

  def query_block(b):
    q = lax.dynamic_slice_in_dim(qs, b * block_size, block_size)
    rows = b * block_size + jnp.arange(block_size)

    def chunk(_, c):
      x = lax.dynamic_slice_in_dim(db, c * chunk_size, chunk_size)
      s = q @ x.T + lax.dynamic_slice_in_dim(bias, c * chunk_size,
                                             chunk_size)[None, :]
      return None, _bin_max(s, m)

    _, bin_max = lax.scan(chunk, None, jnp.arange(nc))
    bin_max = jnp.moveaxis(bin_max, 0, 1).reshape(block_size, db_pad // m)
    # The point itself is not masked in pass 1 (no per-element compare): the
    # k best others are among the k + 1 best points, in the k + 1 best bins.
    kk = k + 1 if exclude_self else k
    best = _best_bins(bin_max, kk, group)                           # [B, kk]
    cand = _bin_members(best, chunk_size, m).reshape(block_size, kk * m)
    s = _bin_scores(q, db_bins[best], metric)
    invalid = cand >= num_db
    if exclude_self:
      invalid = invalid | (cand == rows[:, None])
    vals, pos = lax.top_k(jnp.where(invalid, -jnp.inf, s), k)
    return vals, jnp.take_along_axis(cand, pos, axis=1)

  vals, idx = lax.map(query_block, jnp.arange(nb))
  return (vals.reshape(q_pad, k)[:num_q], idx.reshape(q_pad, k)[:num_q])


def _selection_params(num_cols: int, k: int, bin_size: int = 16,
                      group: int = 16):
  """Bin and group sizes leaving at least 2k groups of candidates."""
  while bin_size * group > 1 and num_cols // (bin_size * group) < 2 * k:
    if group > 1:
      group //= 2
    else:
      bin_size //= 2
  return bin_size, group


def _exact_knn_params(num_db: int, k: int):
  """Chunk, bin and group sizes for `_exact_knn` (static, from the shapes)."""
  chunk = min(2048, _round_up(num_db, 256))
  bin_size, group = _selection_params(_round_up(num_db, chunk), k)
  return chunk, bin_size, group


# ---------------------------------------------------------------------------
# Approximate k nearest neighbours: balanced PCA tree + leaf-to-leaf search.
# ---------------------------------------------------------------------------
#
# The points are ordered by a balanced binary tree: at each of L levels every
# segment of the current order is split at the median of its projection on
# its principal direction (a few power iterations). The 2^L leaves are
# contiguous tiles of equal size, compact in space. Every leaf then searches,
# as one dense matmul, the `num_probes` leaves whose centroids are closest to
# its own (its own included), with the same two-pass selection as the exact
# search. Cost O(N * num_probes * leaf_size * d): the fraction of the data
# searched is num_probes / num_leaves.


@functools.partial(jax.jit, static_argnames=("levels", "tile", "power_iters"))
def _pca_tree_order(x, seed, *, levels, tile, power_iters=3):
  """Permutation [2^levels * tile] of point ids (>= N marks padding)."""
  n, dim = x.shape
  num_leaves = 2 ** levels
  n_pad = num_leaves * tile
  valid = jnp.arange(n_pad) < n
  x_pad = jnp.pad(x, ((0, n_pad - n), (0, 0)))

  def level(l, perm):
    seg_size = n_pad // (2 ** l)
    pos_seg = jnp.arange(n_pad) // seg_size
    xs = x_pad[perm]                       # padding rows are zero
    w = valid[perm]
    count = jax.ops.segment_sum(w.astype(x.dtype), pos_seg, num_leaves,
                                indices_are_sorted=True)
    mean = jax.ops.segment_sum(xs, pos_seg, num_leaves,
                               indices_are_sorted=True) / jnp.maximum(
                                   count, 1.0)[:, None]

    def project(v):   # (x_i - mean_s) . v_s, 0 on padding; no centred copy
      p = (jnp.sum(xs * v[pos_seg], axis=1)
           - jnp.sum(mean * v, axis=1)[pos_seg])
      return jnp.where(w, p, 0.0)

    # Start the power iteration from the difference of two points of the
    # segment, picked by an integer hash of (seed, level, segment): a cheap
    # data-dependent direction (jax.random would add seconds of compilation).
    segs = jnp.arange(num_leaves, dtype=jnp.uint32)
    h = (segs * jnp.uint32(2654435761) + seed
         + jnp.uint32(l) * jnp.uint32(40503))
    h = (h ^ (h >> 15)) * jnp.uint32(2246822519)
    off = (h % jnp.uint32(seg_size)).astype(jnp.int32)
    off2 = ((h >> 7) % jnp.uint32(seg_size)).astype(jnp.int32)
    start = jnp.minimum(jnp.arange(num_leaves) * seg_size, n_pad - 1)
    direction = (xs[jnp.minimum(start + off, n_pad - 1)]
                 - xs[jnp.minimum(start + off2, n_pad - 1)])

    def power(_, v):
      p = project(v)
      v = (jax.ops.segment_sum(xs * p[:, None], pos_seg, num_leaves,
                               indices_are_sorted=True)
           - mean * jax.ops.segment_sum(p, pos_seg, num_leaves,
                                        indices_are_sorted=True)[:, None])
      return v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), 1e-30)

    direction = lax.fori_loop(0, power_iters, power, direction)
    proj = project(direction)
    proj = jnp.where(valid[perm], proj, jnp.inf)   # padding sorts last
    _, _, perm = lax.sort((pos_seg, proj, perm), num_keys=2)
    return perm

  return lax.fori_loop(0, levels, level, jnp.arange(n_pad))


@functools.partial(
    jax.jit,
    static_argnames=("k", "metric", "tile", "num_probes", "bin_size", "group"))
def _leaf_knn(x, perm, *, k, metric, tile, num_probes, bin_size, group):
  """kNN of every point among the points of its `num_probes` nearest leaves.

  Per leaf, the [tile, num_probes * tile] score tile is kept, so the two-pass
  selection reads the candidate scores back from it instead of re-scoring.
  """
  n, dim = x.shape
  n_pad = perm.shape[0]
  num_leaves = n_pad // tile
  num_cand = num_probes * tile
  m = bin_size
  valid = perm < n
  if metric == "cosine":
    x = _normalize_rows(x)
  xs = jnp.where(valid[:, None], jnp.pad(x, ((0, n_pad - n), (0, 0)))[perm],
                 0.0)
  leaves = xs.reshape(num_leaves, tile, dim)
  leaf_bias = _column_bias(xs, metric, valid).reshape(num_leaves, tile)

  counts = valid.reshape(num_leaves, tile).sum(axis=1)
  centroids = leaves.sum(axis=1) / jnp.maximum(counts, 1)[:, None]
  if metric == "cosine":
    centroids = _normalize_rows(centroids)
  c_bias = _column_bias(centroids, metric, counts > 0)
  leaf_valid = valid.reshape(num_leaves, tile)
  stride = max(1, tile // 64)
  nearest = max(1, num_probes // 8)

  def probe_list(a):
    # Leaves nearest to A's centroid, except that the `nearest` leaves
    # closest to any (sampled) point of A come first: a leaf that straddles
    # two clusters then probes both, and its minority points are not left
    # to link only among themselves.
    own = centroids[a] @ centroids.T + c_bias
    q = leaves[a][::stride]
    _, top = lax.top_k(q @ centroids.T + c_bias[None, :], nearest)
    # Priority of leaf B: best rank of B among the points' nearest leaves.
    rank_prio = jnp.where(leaf_valid[a][::stride][:, None],
                          (nearest - jnp.arange(nearest))[None, :], 0)
    prio = jnp.zeros((num_leaves,), jnp.int32).at[top].max(rank_prio)
    finite = jnp.isfinite(own)
    lo = jnp.min(jnp.where(finite, own, jnp.inf))
    hi = jnp.max(jnp.where(finite, own, -jnp.inf))
    key = (own - lo) / jnp.maximum(hi - lo, 1e-30) + 2.0 * prio
    return lax.top_k(key, num_probes)[1]

  probes = lax.map(probe_list, jnp.arange(num_leaves))      # [leaves, P]

  def leaf(t):
    rows = t * tile + jnp.arange(tile)
    cols = (probes[t][:, None] * tile + jnp.arange(tile)).reshape(num_cand)
    s = (leaves[t] @ leaves[probes[t]].reshape(num_cand, dim).T
         + leaf_bias[probes[t]].reshape(1, num_cand))
    s = jnp.where(cols[None, :] == rows[:, None], -jnp.inf, s)
    s = s.reshape(tile, num_cand // m, m)                     # contiguous bins
    best = _best_bins(s.max(axis=-1), k, group)               # [tile, k]
    cand_s = jnp.take_along_axis(s, best[:, :, None], axis=1).reshape(
        tile, k * m)
    cand_c = (best[:, :, None] * m + jnp.arange(m)).reshape(tile, k * m)
    vals, pos = lax.top_k(cand_s, k)
    found = cols[jnp.take_along_axis(cand_c, pos, axis=1)]
    if metric == "euclidean":   # exact -|q - x|^2 of the k found (k d work)
      diff = xs[found] - leaves[t][:, None, :]
      vals, order = lax.top_k(-jnp.sum(diff * diff, axis=-1), k)
      found = jnp.take_along_axis(found, order, axis=1)
    return vals, found

  vals, idx = lax.map(leaf, jnp.arange(num_leaves))
  vals = vals.reshape(n_pad, k)
  idx = perm[idx.reshape(n_pad, k)]
  # Back to the original order (padding rows are dropped).
  out_v = jnp.zeros((n, k), jnp.float32).at[perm].set(vals, mode="drop")
  out_i = jnp.zeros((n, k), jnp.int32).at[perm].set(idx, mode="drop")
  return out_v, out_i


def _tree_shape(n: int, leaf_size: int, multiple: int):
  levels = max(0, math.ceil(math.log2(max(n / leaf_size, 1.0))))
  tile = _round_up(-(-n // (2 ** levels)), multiple)
  return levels, tile


# ---------------------------------------------------------------------------
# Public kNN API.
# ---------------------------------------------------------------------------


def knn_graph(
    features: chex.Array,
    *,
    k: int,
    metric: str = "cosine",
    block_size: int = 512,
    method: str = "exact",
    leaf_size: int = 256,
    num_probes: int = 32,
    seed: int = 0,
) -> Tuple[jax.Array, jax.Array]:
  r"""k nearest neighbours of every point, the point itself excluded.

  Returns ``(indices, similarities)``, both ``[num_points, k]`` and sorted by
  decreasing similarity, where the similarity of ``x`` and ``y`` is

  * ``'cosine'``: :math:`\langle x, y\rangle / (\|x\| \|y\|)`;
  * ``'inner_product'``: :math:`\langle x, y\rangle`;
  * ``'euclidean'``: :math:`-\|x - y\|^2` (the negative squared distance).

  ``method='exact'`` scans all points block by block: a ``[block_size, d] x
  [d, chunk]`` matmul whose output is reduced to per-bin maxima in the same
  fused loop, then an exact re-scoring of the few candidate bins (see the
  module source for why this is exact). Memory is ``O(N (k + d) +
  block_size * N / 16)``, never ``N x N``; time is the ``2 N^2 d`` flops of
  the matmul.

  ``method='approx'`` orders the points by a balanced PCA tree (every segment
  split at the median of its projection on its principal direction) with
  ``2^L`` leaves of about ``leaf_size`` points, and searches, for every leaf,
  the points of ``num_probes`` leaves, as one dense matmul per leaf. The
  probed leaves are those nearest to the leaf's centroid, except that the
  ``num_probes // 8`` leaves nearest to each of its (sampled) points come
  first, so a leaf straddling two clusters probes both. It reads
  ``num_probes / num_leaves`` of the data per point: time
  ``O(N * num_probes * leaf_size * d)``, memory ``O(N (k + d))``; recall grows
  with ``num_probes`` (``num_probes >= num_leaves`` is exact). It suits data
  whose neighbours are near in a few principal directions (embeddings,
  clusters); on isotropic noise recall needs a large fraction of leaves.

  Example::

    >>> x = jax.random.normal(jax.random.PRNGKey(0), (1000, 16))
    >>> idx, sim = knn_graph(x, k=10)            # [1000, 10] each
    >>> w = jnp.maximum(sim, 0.) ** 3             # Iscen et al. weights

  Args:
    features: ``[num_points, num_features]`` finite array.
    k: number of neighbours, ``1 <= k < num_points``.
    metric: ``'cosine'``, ``'inner_product'`` or ``'euclidean'``.
    block_size: query rows per matmul block (memory ``block_size * N / 4``
      bytes for the bin maxima).
    method: ``'exact'`` or ``'approx'``.
    leaf_size: approximate search: points per leaf (rounded to a power-of-two
      number of leaves).
    num_probes: approximate search: leaves searched per leaf.
    seed: approximate search: seed of the (hashed) start points of the power
      iterations.

  Returns:
    ``(indices [num_points, k] int32, similarities [num_points, k] float32)``.
  """
  if metric not in _METRICS:
    raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
  if method not in _KNN_METHODS:
    raise ValueError(f"`method` must be one of {_KNN_METHODS}, got {method!r}.")
  x = _check_features("features", features)
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"`features` needs at least 2 points, got {n}.")
  k = _check_int("k", k, 1, n - 1, high_doc=" (k must be < num_points)")
  block_size = _check_int("block_size", block_size, 1)
  if method == "exact":
    chunk, bin_size, group = _exact_knn_params(n, k)
    block_size = min(block_size, _round_up(n, 8))
    vals, idx = _exact_knn(x, x, k=k, metric=metric, exclude_self=True,
                           block_size=block_size, chunk_size=chunk,
                           bin_size=bin_size, group=group)
    return idx, vals
  leaf_size = _check_int("leaf_size", leaf_size, 2 * k)
  num_probes = _check_int("num_probes", num_probes, 1)
  seed = _check_int("seed", seed, 0, 2 ** 32 - 1)
  levels, tile = _tree_shape(n, leaf_size, 8)
  num_probes = min(num_probes, 2 ** levels)
  bin_size, group = _selection_params(num_probes * tile, k, 8, 16)
  while (num_probes * tile // bin_size) % group:
    group //= 2
  perm = _pca_tree_order(_normalize_rows(x) if metric == "cosine" else x,
                         jnp.uint32(seed), levels=levels, tile=tile)
  vals, idx = _leaf_knn(x, perm, k=k, metric=metric, tile=tile,
                        num_probes=num_probes, bin_size=bin_size, group=group)
  return idx, vals


def knn_search(
    queries: chex.Array,
    database: chex.Array,
    *,
    k: int,
    metric: str = "cosine",
    block_size: int = 512,
) -> Tuple[jax.Array, jax.Array]:
  """Exact k nearest ``database`` rows of every query row.

  Same similarities and algorithm as :func:`knn_graph` (``method='exact'``),
  but queries and database are different sets, so nothing is excluded.

  Args:
    queries: ``[num_queries, num_features]``.
    database: ``[num_points, num_features]``.
    k: ``1 <= k <= num_points``.
    metric: ``'cosine'``, ``'inner_product'`` or ``'euclidean'``.
    block_size: query rows per matmul block.

  Returns:
    ``(indices [num_queries, k] int32, similarities [num_queries, k])``.
  """
  if metric not in _METRICS:
    raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
  q = _check_features("queries", queries)
  db = _check_features("database", database)
  if q.shape[1] != db.shape[1]:
    raise ValueError(
        f"`queries` and `database` must have the same number of features, got "
        f"{q.shape[1]} and {db.shape[1]}.")
  k = _check_int("k", k, 1, db.shape[0], high_doc=" (k <= num database points)")
  chunk, bin_size, group = _exact_knn_params(db.shape[0], k)
  block_size = min(_check_int("block_size", block_size, 1),
                   _round_up(q.shape[0], 8))
  vals, idx = _exact_knn(q, db, k=k, metric=metric, exclude_self=False,
                         block_size=block_size, chunk_size=chunk,
                         bin_size=bin_size, group=group)
  return idx, vals


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
  num_classes = _check_int("num_classes", num_classes, 1)
  indices, weights = _check_graph(indices, weights)
  labels = _check_labels(labels, indices.shape[0], num_classes,
                         require_labeled=not batch_mode,
                         require_all_classes=not batch_mode)
  if not _is_traced(alpha) and method != "propagation":
    if not 0.0 < float(alpha) < 1.0:
      raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
  num_iters = _check_int("num_iters", num_iters, 0)
  if tol is None:
    tol = 1e-6 if method == "cg" else 1e-3
  if not _is_traced(tol) and not float(tol) >= 0.0:
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
  labels = _check_labels(labels, n, num_classes, require_labeled=False,
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
  counts = jnp.zeros((num_classes,), jnp.float32).at[pseudo].add(1.0)
  zeta = jnp.where(counts > 0,
                   (n / num_classes) / jnp.where(counts > 0, counts, 1.0), 0.0)
  return pseudo, omega, zeta


def weighted_pseudo_label_loss(
    logits: chex.Array,
    pseudo_labels: chex.Array,
    sample_weights: chex.Array,
    class_weights: chex.Array,
) -> jax.Array:
  r"""Certainty- and class-weighted cross-entropy on pseudo-labels.

  .. math::
    L = \frac{1}{B} \sum_{i=1}^{B} \omega_i \, \zeta_{\hat y_i} \,
        \bigl(-\log \mathrm{softmax}(\mathrm{logits}_i)_{\hat y_i}\bigr)

  (Iscen et al. 2019, eq. 9; averaged over the whole batch as in their code).
  Entries with ``pseudo_labels == -1`` contribute zero but still count in B.

  Example::

    >>> loss = weighted_pseudo_label_loss(logits, pseudo, omega, zeta)

  Args:
    logits: ``[B, C]`` unnormalised predictions.
    pseudo_labels: ``[B]`` int in ``[-1, C)``.
    sample_weights: ``[B]`` per-example weights :math:`\omega`.
    class_weights: ``[C]`` per-class weights :math:`\zeta`.

  Returns:
    Scalar float32 loss, differentiable in ``logits``.
  """
  if jnp.ndim(logits) != 2:
    raise ValueError(
        f"`logits` must have rank 2 ([batch, num_classes]), got shape "
        f"{tuple(jnp.shape(logits))}.")
  b, num_classes = jnp.shape(logits)
  labels = _check_labels(pseudo_labels, b, num_classes, require_labeled=False,
                         require_all_classes=False, name="pseudo_labels",
                         points="examples")
  if jnp.shape(sample_weights) != (b,):
    raise ValueError(
        f"`sample_weights` must have shape [batch] = ({b},), got "
        f"{tuple(jnp.shape(sample_weights))}.")
  if jnp.shape(class_weights) != (num_classes,):
    raise ValueError(
        f"`class_weights` must have shape [num_classes] = ({num_classes},), "
        f"got {tuple(jnp.shape(class_weights))}.")
  logits = jnp.asarray(logits, jnp.float32)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0)
  nll = -jnp.take_along_axis(log_p, safe[:, None], axis=1)[:, 0]
  w = (jnp.asarray(sample_weights, jnp.float32)
       * jnp.asarray(class_weights, jnp.float32)[safe])
  return jnp.sum(jnp.where(valid, w * nll, 0.0)) / b


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
  dense ``[B, B]``), weights its edges by ``max(sim, 0) ** gamma``, propagates
  the batch's labels (``-1`` for unlabeled) with :func:`propagate`
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
  k = _check_int("k", k, 1, b - 1, high_doc=" (k must be < batch size)")
  num_classes = _check_int("num_classes", num_classes, 2)
  x = lax.stop_gradient(jnp.asarray(embeddings, jnp.float32))
  if not _is_traced(x) and not np.isfinite(np.asarray(x)).all():
    raise ValueError("`embeddings` must be finite, got NaN or infinite values.")
  x = _normalize_rows(x)
  sims = x @ x.T
  sims = jnp.where(jnp.eye(b, dtype=bool), -jnp.inf, sims)
  sim, idx = lax.top_k(sims, k)
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
