"""k nearest neighbours: exact (blocked matmul) and approximate (balanced PCA tree).

Pure JAX functions (jittable, no scikit-learn):

* :func:`knn_graph` -- k nearest neighbours of every point (self excluded),
  exact (blocked matmul, never N x N in memory) or approximate (a balanced
  PCA-tree partition searched leaf by leaf).
* :func:`knn_search` -- k nearest database points of new query points.

Everything is computed in float32. Input checks that need values (NaN
features) run only on concrete arrays, never under `jit`.
"""

from __future__ import annotations

import functools
import math
from typing import Tuple

import chex
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from sslx.graph import _checks

_METRICS = ("cosine", "inner_product", "euclidean")
_KNN_METHODS = ("exact", "approx")

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
#      of the k * bin_size points inside them, then a final top k. With bins of
#      one point (up to 32k points, see `_exact_knn_params`) pass 1's scores are
#      already the points' scores: they are read back, nothing is re-scored.
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
def _exact_knn(queries, database, num_valid=None, *, k, metric, exclude_self,
               block_size, chunk_size, bin_size, group):
  """Exact top-k (values, indices) of every query row; see the note above.

  `num_valid` (optional, may be traced): only the first `num_valid` database
  rows are searched, so callers can pad to a few fixed shapes (one compiled
  program per shape bucket).
  """
  num_q, dim = queries.shape
  num_db = database.shape[0]
  if num_valid is None:
    num_valid = num_db
  if metric == "cosine":
    queries = _normalize_rows(queries)
    database = _normalize_rows(database)
  m = bin_size
  nc = -(-num_db // chunk_size)
  db_pad = nc * chunk_size
  nb = -(-num_q // block_size)
  q_pad = nb * block_size
  db = jnp.pad(database, ((0, db_pad - num_db), (0, 0)))
  bias = _column_bias(db, metric, jnp.arange(db_pad) < num_valid)
  qs = jnp.pad(queries, ((0, q_pad - num_q), (0, 0)))
  db_bins = _strided_bins(db, chunk_size, m) if m > 1 else None   # pass 2's layout

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
    if m == 1:
      # Bins of one point: pass 1's scores are the points' scores (and `best` their
      # ids), so nothing is recomputed; euclidean turns <q, x> - |x|^2 / 2 into
      # -|q - x|^2 as pass 2 would (clipped at 0 against rounding).
      cand = best
      s = jnp.take_along_axis(bin_max, best, axis=1)
      if metric == "euclidean":
        s = jnp.minimum(2.0 * s - jnp.sum(q * q, axis=-1, keepdims=True), 0.0)
    else:
      cand = _bin_members(best, chunk_size, m).reshape(block_size, kk * m)
      s = _bin_scores(q, db_bins[best], metric)
    invalid = cand >= num_valid
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


_ONE_CHUNK_MAX = 32768


def _exact_knn_params(num_db: int, k: int, dim: int):
  """Chunk, bin and group sizes for `_exact_knn` (static, from the shapes).

  Up to `_ONE_CHUNK_MAX` database points, every query block's whole score row is one
  matmul tile, searched with bins of one point (its scores and ids are the points', so
  pass 2 recomputes nothing) in groups of 32: measured on 2 cores, warm, k = 10, this
  beat the binned chunks at every d (10k x 256 0.27 vs 0.47 s, 10k x 784 0.66 vs
  0.79 s, 10k x 64 0.13 vs 0.18 s, 30k x 128 1.5 vs 1.8 s; at 100k x 64 they tie).
  Above it, pass 2 gathers ``k * bin_size`` points of ``dim`` floats per query and
  pass 1 reduces and ranks ``num_db / bin_size`` bin maxima; the bin size balancing
  the two is about ``sqrt(num_db / (k * dim))``: 8-16 at 50k-100k x 64.
  """
  if num_db <= _ONE_CHUNK_MAX:
    chunk = _round_up(num_db, 256)
    return (chunk,) + _selection_params(chunk, k, 1, 32)
  chunk = 2048
  balance = math.sqrt(1.5 * num_db / (max(k, 1) * max(dim, 1)))
  bin_size = 2 ** max(0, min(4, int(math.floor(math.log2(max(balance, 1.0))))))
  bin_size, group = _selection_params(_round_up(num_db, chunk), k, bin_size,
                                      256 // bin_size)
  return chunk, bin_size, group


def _exact_knn_graph(x: jax.Array, *, k: int, metric: str,
                     block_size: int = 512) -> Tuple[jax.Array, jax.Array]:
  """Exact kNN graph of float32 rows `x` [N, d], self excluded, unchecked.

  The one code path behind :func:`knn_graph` (``method='exact'``) and
  :func:`sslx.graph.batch_label_propagation`. Returns ``(indices, scores)``.
  """
  n = x.shape[0]
  chunk, bin_size, group = _exact_knn_params(n, k, x.shape[1])
  vals, idx = _exact_knn(x, x, k=k, metric=metric, exclude_self=True,
                         block_size=min(block_size, _round_up(n, 8)),
                         chunk_size=chunk, bin_size=bin_size, group=group)
  return idx, vals


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
  """Permutation [2^levels * tile] of point ids (>= N marks padding).

  Every level works on the points as ``[2^levels, tile, d]`` final leaves: a segment
  of level ``l`` is a run of ``2^(levels - l)`` consecutive leaves, so its sums are
  per-leaf sums (static reshapes) summed over few leaves, and projections are batched
  matvecs; 1.6x faster at 100k x 64 than per-point segment sums over N rows, with
  one traced level (a Python loop over levels compiled ~3x longer).
  """
  n, dim = x.shape
  num_leaves = 2 ** levels
  n_pad = num_leaves * tile
  valid = jnp.arange(n_pad) < n
  x_pad = jnp.pad(x, ((0, n_pad - n), (0, 0)))
  leaf_ids = jnp.arange(num_leaves)

  def level(l, perm):
    seg_size = n_pad // (2 ** l)
    seg_of_leaf = leaf_ids // (num_leaves // (2 ** l))   # segment slots: num_leaves
    xs = x_pad[perm].reshape(num_leaves, tile, dim)      # padding rows are zero
    w = valid[perm].reshape(num_leaves, tile)

    def seg_sum(a):   # per-leaf values [num_leaves, ...] -> per-segment sums
      return jax.ops.segment_sum(a, seg_of_leaf, num_leaves, indices_are_sorted=True)

    count = seg_sum(w.sum(axis=1).astype(x.dtype))
    mean = seg_sum(xs.sum(axis=1)) / jnp.maximum(count, 1.0)[:, None]

    def project(v):   # (x_i - mean_s) . v_s, 0 on padding; no centred copy
      p = (jnp.einsum("ltd,ld->lt", xs, v[seg_of_leaf])
           - jnp.sum(mean * v, axis=1)[seg_of_leaf][:, None])
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
    flat = xs.reshape(n_pad, dim)
    direction = (flat[jnp.minimum(start + off, n_pad - 1)]
                 - flat[jnp.minimum(start + off2, n_pad - 1)])

    def power(_, v):
      p = project(v)
      v = (seg_sum(jnp.einsum("ltd,lt->ld", xs, p))
           - mean * seg_sum(p.sum(axis=1))[:, None])
      return v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), 1e-30)

    direction = lax.fori_loop(0, power_iters, power, direction)
    proj = jnp.where(w, project(direction), jnp.inf).reshape(n_pad)  # padding last
    pos_seg = jnp.arange(n_pad) // seg_size
    _, _, perm = lax.sort((pos_seg, proj, perm), num_keys=2)
    return perm

  return lax.fori_loop(0, levels, level, jnp.arange(n_pad))


# Leaves nearest to each (sampled) point of a leaf that are probed first.
_POINT_NEAREST = 4


def _probe_keys(leaves, leaf_valid, metric):
  """``key(a) -> [num_leaves]``: the order in which leaf ``a`` probes the leaves.

  Leaves nearest to A's centroid, except that the `_POINT_NEAREST` leaves closest to
  any (sampled) point of A come first: a leaf that straddles two clusters then probes
  both, and its minority points are not left to link only among themselves. The
  order does not depend on the number of probes, so the probes of P leaves are the
  first P of one ranking: the recall of every P can be read off one ranking
  (:func:`_sample_recall_curve`).
  """
  num_leaves, tile, _ = leaves.shape
  counts = leaf_valid.sum(axis=1)
  centroids = leaves.sum(axis=1) / jnp.maximum(counts, 1)[:, None]
  if metric == "cosine":
    centroids = _normalize_rows(centroids)
  c_bias = _column_bias(centroids, metric, counts > 0)
  stride = max(1, tile // 64)
  nearest = min(_POINT_NEAREST, num_leaves)

  def key(a):
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
    return (own - lo) / jnp.maximum(hi - lo, 1e-30) + 2.0 * prio
  return key


def _sorted_leaves(x, perm, metric, tile):
  """Points in tree order, as ``[num_leaves, tile, d]`` leaves (+ validity)."""
  n, dim = x.shape
  n_pad = perm.shape[0]
  valid = perm < n
  if metric == "cosine":
    x = _normalize_rows(x)
  xs = jnp.where(valid[:, None], jnp.pad(x, ((0, n_pad - n), (0, 0)))[perm], 0.0)
  return xs, valid


@functools.partial(jax.jit, static_argnames=("metric", "tile"))
def _probe_ranks(x, perm, query_leaves, *, metric, tile):
  """``[len(query_leaves), num_leaves]``: the position of leaf B in leaf A's probe order."""
  xs, valid = _sorted_leaves(x, perm, metric, tile)
  num_leaves = perm.shape[0] // tile
  leaves = xs.reshape(num_leaves, tile, -1)
  key = _probe_keys(leaves, valid.reshape(num_leaves, tile), metric)

  def ranks(a):
    order = jnp.argsort(-key(a), stable=True)
    return jnp.zeros((num_leaves,), jnp.int32).at[order].set(
        jnp.arange(num_leaves, dtype=jnp.int32))
  return lax.map(ranks, query_leaves)


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
  xs, valid = _sorted_leaves(x, perm, metric, tile)
  leaves = xs.reshape(num_leaves, tile, dim)
  leaf_bias = _column_bias(xs, metric, valid).reshape(num_leaves, tile)

  probe_key = _probe_keys(leaves, valid.reshape(num_leaves, tile), metric)
  probes = lax.map(lambda a: lax.top_k(probe_key(a), num_probes)[1],
                   jnp.arange(num_leaves))                    # [leaves, P]

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
# High-dimensional data: candidates in a PCA projection, re-ranked in full.
# ---------------------------------------------------------------------------
#
# At d in the hundreds (pixels, wide embeddings) every matmul of the searches
# above costs d flops per pair, and a tree over d dimensions separates poorly.
# Projecting on the top r principal directions (r = 64 by default) shrinks the
# pair cost d / r times while keeping most of each distance (a projection only
# shortens distances, and pixel data lies near a low-dimensional subspace): the
# k' = c k nearest points in the projection are the candidates, and their exact
# full-d scores pick the k best. A true neighbour is then found iff it is among
# its point's k' projected nearest, so one exact projected search of the recall
# sample gives the recall of every c at once (as the probe curve above does for
# the tree).

_PROJECT_DIM = 64
_CANDIDATE_FACTORS = (1, 1.5, 2, 3, 4, 6, 8)
_PROJECTED_EXACT_UP_TO = 2 ** 15   # points; the tree's order and sample cost more below
# Below this many flops of exact search (2 N^2 d), the default for wide data is the exact
# search: the projection's fixed costs (PCA, the sample's two exact searches, re-ranking)
# exceed it. Warm, idle 2 cores: 2.5k-10k notMNIST pixels and 256-d learned features,
# exact 0.05-0.53 s vs projected 0.15-0.58 s below it; 10k x 784 (1.6e11) projected 0.71 s
# vs exact 0.93 s above it.
_PROJECT_ABOVE_FLOPS = 1e11


def _orthonormalize(y):
  """Columns of ``y`` [d, w] made orthonormal through the eigenvectors of the small
  Gram matrix, twice (the second pass restores the orthogonality float32 loses on
  ill-conditioned ``y``, as in CholeskyQR2; XLA:CPU's QR is ~10x slower here)."""
  for _ in range(2):
    vals, vecs = jnp.linalg.eigh(y.T @ y)
    vals = jnp.maximum(vals, 1e-12 * jnp.max(vals))
    y = y @ (vecs / jnp.sqrt(vals))
  return y


@functools.partial(jax.jit, static_argnames=("dim", "center", "iters", "fit_rows"))
def _pca_projection(x, *, dim, center, iters=2, fit_rows=4096):
  """``x`` [N, d] on its top ``dim`` principal directions -> [N, dim].

  The directions come from at most ``fit_rows`` evenly strided rows, by randomised
  subspace iteration (Halko et al. 2011: ``dim + 8`` columns, ``iters`` power steps,
  re-orthonormalised between them; no d x d matrix). Uncentred for inner products (a
  shift changes them), centred otherwise (a shift does not change distances).
  The candidates' recall is measured on a sample afterwards, so an inexact basis
  costs candidates, never silent recall.
  """
  n, d = x.shape
  if center:
    x = x - jnp.mean(x, axis=0, keepdims=True)
  fit = x[::max(1, n // fit_rows)]
  width = min(dim + 8, d)
  # A fixed dense start (jax.random would add compilation to every cold fit).
  omega = jnp.cos(jnp.arange(d * width, dtype=jnp.float32).reshape(d, width) * 0.7548776662
                  + jnp.arange(width, dtype=jnp.float32) * 1.3247179572)
  q = lax.fori_loop(0, iters + 1, lambda _, q: _orthonormalize(fit.T @ (fit @ q)), omega)
  b = fit @ q                                         # [rows, width]
  _, vecs = jnp.linalg.eigh(b.T @ b)                  # ascending eigenvalues
  return x @ _orthonormalize(q @ vecs[:, ::-1][:, :dim])


@functools.partial(jax.jit, static_argnames=("metric", "block_size"))
def _rerank(x, candidates, *, metric, block_size):
  """Full-dimensional scores of each point's candidates, sorted: (vals, idx) [N, k'].

  Rows of ``candidates`` may repeat an id only if the caller's search returned it
  twice (it does not); ``x`` is L2-normalised beforehand for cosine.
  """
  n, d = x.shape
  kc = candidates.shape[1]
  nb = -(-n // block_size)
  rows = jnp.pad(jnp.arange(n), (0, nb * block_size - n))
  cand = jnp.pad(candidates, ((0, nb * block_size - n), (0, 0)))

  def block(b):
    r = lax.dynamic_slice_in_dim(rows, b * block_size, block_size)
    c = lax.dynamic_slice_in_dim(cand, b * block_size, block_size)
    q = x[r]                                          # [B, d]
    xc = x[c]                                         # [B, k', d]
    if metric == "euclidean":
      diff = xc - q[:, None, :]
      s = -jnp.sum(diff * diff, axis=-1)
    else:
      s = jnp.einsum("bd,bkd->bk", q, xc)
    vals, pos = lax.top_k(s, kc)
    return vals, jnp.take_along_axis(c, pos, axis=1)

  vals, idx = lax.map(block, jnp.arange(nb))
  return vals.reshape(-1, kc)[:n], idx.reshape(-1, kc)[:n]


def _sample_neighbours(x, sample, *, k, metric):
  """Exact k other neighbours (ids [S, k], scores [S, k]) of the sampled points (k capped
  at N - 1); a point's own entry is dropped (or, where a duplicate displaced it, the last
  neighbour)."""
  n = x.shape[0]
  kk = min(k + 1, n)
  chunk, bin_size, group = _exact_knn_params(n, kk, x.shape[1])
  vals, idx = _exact_knn(x[sample], x, k=kk, metric=metric, exclude_self=False,
                         block_size=min(512, _round_up(len(sample), 8)), chunk_size=chunk,
                         bin_size=bin_size, group=group)
  vals, idx = np.asarray(vals), np.asarray(idx)
  is_self = idx == sample[:, None]
  is_self[~is_self.any(axis=1), -1] = True
  keep = ~is_self
  return (idx[keep].reshape(len(sample), kk - 1)[:, :k],
          vals[keep].reshape(len(sample), kk - 1)[:, :k])


def _projected_rank_curve(y, true_idx, sample, *, metric, max_candidates):
  """``curve[j]``: fraction of the sample's true neighbours among its j nearest in the
  projection ``y`` (self excluded), for j = 0 .. max_candidates."""
  others, _ = _sample_neighbours(y, sample, k=max_candidates, metric=metric)
  kk = others.shape[1] + 1                                      # projected order, [S, kk-1]
  # Position of each true neighbour in its point's projected list (kk-1 if absent).
  match = others[:, None, :] == true_idx[:, :, None]           # [S, k, kk-1]
  pos = np.where(match.any(axis=2), match.argmax(axis=2), kk - 1)
  counts = np.bincount(pos.ravel() + 1, minlength=kk + 1)
  return np.cumsum(counts)[:kk] / pos.size


def _projected_knn(x, *, k, metric, recall, dim, recall_sample, seed, leaf_size,
                   block_size):
  """Approximate kNN graph of high-dimensional ``x`` via a ``dim``-d projection.

  Returns ``(idx, vals, estimated recall)`` or None when ``c = 8`` candidates per
  neighbour do not reach ``recall`` on the sample (the caller then uses the tree).
  The estimate is measured on the result itself: the fraction of the sample's
  neighbours scoring at least its exact k-th score (so ties count as found).
  """
  n = x.shape[0]
  if metric == "cosine":     # cosine ranks as euclidean on the unit sphere
    x = _normalize_rows(x)
  search_metric = "inner_product" if metric == "inner_product" else "euclidean"
  y = _pca_projection(x, dim=dim, center=(search_metric == "euclidean"))
  rng = np.random.RandomState(seed)
  sample = np.sort(rng.choice(n, min(recall_sample, n), replace=False))
  true_idx, true_vals = _sample_neighbours(x, sample, k=k, metric=metric)
  max_cand = min(n - 1, int(_CANDIDATE_FACTORS[-1] * k))
  curve = _projected_rank_curve(y, true_idx, sample, metric=search_metric,
                                max_candidates=max_cand)
  options = sorted({min(n - 1, math.ceil(c * k)) for c in _CANDIDATE_FACTORS})
  chosen = next((kc for kc in options if curve[kc] >= recall), None)
  if chosen is None:
    return None
  # The candidates: exact in the projection up to 2^15 points, the tree above (which
  # itself searches exactly when it would read more than a quarter of the data).
  if n <= _PROJECTED_EXACT_UP_TO:
    cand, _ = _exact_knn_graph(y, k=chosen, metric=search_metric, block_size=block_size)
  else:
    tight = 1.0 - (1.0 - recall) / 4
    cand, _, _ = _tree_knn(y, k=chosen, metric=search_metric, recall=tight,
                           num_probes=None, leaf_size=max(leaf_size, 2 * chosen), seed=seed,
                           recall_sample=recall_sample, block_size=block_size)
  vals, idx = _rerank(x, cand, metric=metric, block_size=min(256, _round_up(n, 8)))
  vals, idx = vals[:, :k], idx[:, :k]
  kth = true_vals[:, -1:]
  got = np.asarray(vals)[sample]
  estimate = float(np.mean(got >= kth - 1e-5 * np.maximum(np.abs(kth), 1.0)))
  return idx, vals, estimate


def _tree_knn(x, *, k, metric, recall, num_probes, leaf_size, seed, recall_sample,
              block_size, need_recall=False):
  """The PCA-tree search of :func:`knn_graph` -> ``(idx, vals, estimated recall)``
  (the estimate is None unless sampled); falls back to the exact search when the
  recall target needs more than a quarter of the leaves."""
  n = x.shape[0]
  levels, tile = _tree_shape(n, leaf_size, 8)
  num_leaves = 2 ** levels
  perm = _pca_tree_order(_normalize_rows(x) if metric == "cosine" else x,
                         jnp.uint32(seed), levels=levels, tile=tile)
  curve = None
  if num_probes is None or need_recall:
    curve = _sample_recall_curve(x, perm, k=k, metric=metric, tile=tile,
                                 sample_size=recall_sample, seed=seed)
  if num_probes is None:
    num_probes = next(p for p in _probe_buckets(num_leaves) if curve[p] >= recall
                      or p == num_leaves)
    if 4 * num_probes > num_leaves:
      idx, vals = _exact_knn_graph(x, k=k, metric=metric, block_size=block_size)
      return idx, vals, 1.0
  num_probes = min(num_probes, num_leaves)
  bin_size, group = _selection_params(num_probes * tile, k, 8, 16)
  while (num_probes * tile // bin_size) % group:
    group //= 2
  vals, idx = _leaf_knn(x, perm, k=k, metric=metric, tile=tile,
                        num_probes=num_probes, bin_size=bin_size, group=group)
  return idx, vals, None if curve is None else float(curve[num_probes])


# ---------------------------------------------------------------------------
# Public kNN API.
# ---------------------------------------------------------------------------


def _probe_buckets(num_leaves: int) -> list[int]:
  """Probe counts the recall target chooses among (1, 2, 3, 4, 6, 8, 12, ...): a few
  compiled programs, each at most 1.5x the probes needed."""
  out, p = [], 1
  while p < num_leaves:
    out += [p] + ([p * 3 // 2] if p >= 2 and p * 3 // 2 < num_leaves else [])
    p *= 2
  return sorted(set(out)) + [num_leaves]


def _sample_recall_curve(x, perm, *, k, metric, tile, sample_size, seed):
  """``curve[P]``: the recall of the approximate search with ``P`` probes, measured on a
  sample of points against their exact neighbours (``curve[0] = 0``).

  A point's approximate neighbours are the exact top k of its candidates (the points of
  the leaves its leaf probes), so a true neighbour is found iff its leaf is among the
  probes: with probe orders nested in P, one exact search of the sample and one ranking
  of the leaves give the recall of every P at once.
  """
  n = x.shape[0]
  n_pad = perm.shape[0]
  num_leaves = n_pad // tile
  rng = np.random.RandomState(seed)
  sample = np.sort(rng.choice(n, min(sample_size, n), replace=False))
  others, _ = _sample_neighbours(x, sample, k=k, metric=metric)
  position = np.empty(n_pad, np.int64)
  position[np.asarray(perm)] = np.arange(n_pad)
  leaf_of = position[:n] // tile
  query_leaves, inverse = np.unique(leaf_of[sample], return_inverse=True)
  padded = np.zeros(len(sample), np.int32)   # one compiled shape per sample size
  padded[:len(query_leaves)] = query_leaves
  ranks = np.asarray(_probe_ranks(x, perm, jnp.asarray(padded), metric=metric, tile=tile))
  needed = ranks[inverse[:, None], leaf_of[others]] + 1          # probes needed, [S, k]
  counts = np.bincount(needed.ravel(), minlength=num_leaves + 1)
  return np.cumsum(counts) / needed.size


def knn_graph(
    features: chex.Array,
    *,
    k: int,
    metric: str = "cosine",
    block_size: int = 512,
    method: str = "exact",
    recall: float = 0.95,
    num_probes: int | None = None,
    leaf_size: int = 256,
    seed: int = 0,
    recall_sample: int = 1000,
    project_dim: int | None = None,
    return_recall: bool = False,
):
  r"""k nearest neighbours of every point, the point itself excluded.

  Returns ``(indices, similarities)``, both ``[num_points, k]`` and sorted by
  decreasing similarity, where the similarity of ``x`` and ``y`` is

  * ``'cosine'``: :math:`\langle x, y\rangle / (\|x\| \|y\|)`;
  * ``'inner_product'``: :math:`\langle x, y\rangle`;
  * ``'euclidean'``: :math:`-\|x - y\|^2` (the negative squared distance).

  ``method='exact'`` scans all points block by block: a ``[block_size, d] x
  [d, chunk]`` matmul whose output is reduced to per-bin maxima in the same
  fused loop, then an exact re-scoring of the few candidate bins (see the
  module source for why this is exact; up to 2048 points a bin is one point,
  i.e. a plain top k of each score row). Memory is ``O(N (k + d) +
  block_size * N / 16)`` (``block_size * N`` up to 2048 points), never
  ``N x N``; time is the ``2 N^2 d`` flops of the matmul.

  ``method='approx'`` orders the points by a balanced PCA tree (every segment
  split at the median of its projection on its principal direction) with
  ``2^L`` leaves of about ``leaf_size`` points, and searches, for every leaf,
  the points of ``P`` leaves, as one dense matmul per leaf. The probed leaves
  are those nearest to the leaf's centroid, except that the 4 leaves nearest
  to each of its (sampled) points come first, so a leaf straddling two
  clusters probes both. It reads ``P / num_leaves`` of the data per point:
  time ``O(N * P * leaf_size * d)``, memory ``O(N (k + d))``.

  **Recall by default.** ``P`` is chosen for a target ``recall`` (default
  0.95) of the exact k neighbours: the exact neighbours of ``recall_sample``
  random points (one ``recall_sample x N`` exact search) and the probe order
  of their leaves give the recall of *every* ``P`` at once (a true neighbour
  is found iff its leaf is probed), and the smallest ``P`` of
  1, 2, 3, 4, 6, 8, 12, 16, 24, ... whose sampled recall reaches the target
  is used. When that is more than a quarter of the leaves, the exact search
  (cheaper then) is run instead. The sampled recall is an estimate (its
  standard error is about ``sqrt(r (1 - r) / (recall_sample * k))`` or more,
  neighbours of one point being correlated); ``return_recall=True`` returns
  it. Passing ``num_probes`` fixes ``P`` instead (no sample is searched
  unless ``return_recall``). Isotropic data needs a large fraction of the
  leaves (make_blobs 1M x 64: about 10%), clustered data and embeddings few.

  **Wide data** (``d > 128``, or ``project_dim`` set): the points are projected
  on their top ``project_dim`` (default 64) principal directions (randomised
  subspace iteration on up to 4096 rows), the ``c k`` nearest in the projection
  are the candidates (exact there up to 2^15 points, the tree above), and their
  exact full-dimensional scores pick the k best. ``c`` is the smallest of 1,
  1.5, 2, 3, 4, 6, 8 whose sampled recall reaches the target (a neighbour is
  found iff it is among the candidates); if none does, the tree search above
  runs in full d (or the exact one).
  The returned estimate is then measured on the result itself (the sample's
  neighbours scoring at least its exact k-th score; ties count as found).

  Example::

    >>> x = jax.random.normal(jax.random.PRNGKey(0), (1000, 16))
    >>> idx, sim = knn_graph(x, k=10)            # [1000, 10] each
    >>> w = jnp.maximum(sim, 0.) ** 3             # Iscen et al. weights
    >>> idx, sim, r = knn_graph(x, k=10, method="approx", return_recall=True)

  Args:
    features: ``[num_points, num_features]`` finite array.
    k: number of neighbours, ``1 <= k < num_points``.
    metric: ``'cosine'``, ``'inner_product'`` or ``'euclidean'``.
    block_size: query rows per matmul block (memory ``block_size * N / 4``
      bytes for the bin maxima).
    method: ``'exact'`` or ``'approx'``.
    recall: approximate search: target recall of the exact neighbours, in
      ``(0, 1]`` (used when ``num_probes`` is None).
    num_probes: approximate search: leaves searched per leaf (None: chosen
      for ``recall``).
    leaf_size: approximate search: points per leaf (rounded to a power-of-two
      number of leaves).
    seed: approximate search: seed of the (hashed) start points of the power
      iterations and of the recall sample.
    recall_sample: approximate search: points whose exact neighbours estimate
      the recall.
    project_dim: approximate search of wide data: dimensions of the projection
      the candidates are found in (None: 64 when ``d > 128``, else none; 0 or
      ``>= d``: never project). Ignored when ``num_probes`` is given. With None,
      wide data small enough that the exact search costs at most 1e11 flops
      (``2 N^2 d``: 10k x 500) is searched exactly, which is faster there.
    return_recall: also return the estimated recall (1.0 for an exact search).

  Returns:
    ``(indices [num_points, k] int32, similarities [num_points, k] float32)``,
    and the estimated recall (a float) with ``return_recall=True``.
  """
  if metric not in _METRICS:
    raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
  if method not in _KNN_METHODS:
    raise ValueError(f"`method` must be one of {_KNN_METHODS}, got {method!r}.")
  x = _checks.check_features("features", features)
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"`features` needs at least 2 points, got {n}.")
  k = _checks.check_int("k", k, 1, n - 1, high_doc=" (k must be < num_points)")
  block_size = _checks.check_int("block_size", block_size, 1)

  def exact():
    idx, vals = _exact_knn_graph(x, k=k, metric=metric, block_size=block_size)
    return (idx, vals, 1.0) if return_recall else (idx, vals)

  if method == "exact":
    return exact()
  if isinstance(recall, bool) or not isinstance(recall, (int, float, np.number)) or not (
      0.0 < recall <= 1.0):
    raise ValueError(f"`recall` must be a number in (0, 1], got {recall!r}.")
  leaf_size = _checks.check_int("leaf_size", leaf_size, 2 * k)
  if num_probes is not None:
    num_probes = _checks.check_int("num_probes", num_probes, 1)
  seed = _checks.check_int("seed", seed, 0, 2 ** 32 - 1)
  recall_sample = _checks.check_int("recall_sample", recall_sample, 1)
  dim = x.shape[1]
  if project_dim is None:
    project_dim = _PROJECT_DIM if dim > 2 * _PROJECT_DIM else 0
    if project_dim and num_probes is None and 2.0 * n * n * dim <= _PROJECT_ABOVE_FLOPS:
      return exact()   # cheaper than the projection's fixed costs, and recall 1
  else:
    project_dim = _checks.check_int("project_dim", project_dim, 0)
  if num_probes is None and 0 < project_dim < dim:
    out = _projected_knn(x, k=k, metric=metric, recall=recall, dim=project_dim,
                         recall_sample=recall_sample, seed=seed, leaf_size=leaf_size,
                         block_size=block_size)
    if out is not None:
      return out if return_recall else out[:2]
    # No low-dimensional structure to use: the tree (itself exact when it must read
    # more than a quarter of the data).
  idx, vals, est = _tree_knn(x, k=k, metric=metric, recall=recall, num_probes=num_probes,
                             leaf_size=leaf_size, seed=seed, recall_sample=recall_sample,
                             block_size=block_size, need_recall=return_recall)
  if return_recall:
    return idx, vals, est
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
  q = _checks.check_features("queries", queries)
  db = _checks.check_features("database", database)
  if q.shape[1] != db.shape[1]:
    raise ValueError(
        f"`queries` and `database` must have the same number of features, got "
        f"{q.shape[1]} and {db.shape[1]}.")
  k = _checks.check_int("k", k, 1, db.shape[0], high_doc=" (k <= num database points)")
  chunk, bin_size, group = _exact_knn_params(db.shape[0], k, db.shape[1])
  block_size = min(_checks.check_int("block_size", block_size, 1),
                   _round_up(q.shape[0], 8))
  vals, idx = _exact_knn(q, db, k=k, metric=metric, exclude_self=False,
                         block_size=block_size, chunk_size=chunk,
                         bin_size=bin_size, group=group)
  return idx, vals

