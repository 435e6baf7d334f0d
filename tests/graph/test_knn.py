"""Tests for sslx.graph.knn: exact and approximate kNN graphs, kNN search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx.graph import knn as graph


def _brute_force(queries, database, k, metric, exclude_self):
  q = np.asarray(queries, np.float64)
  x = np.asarray(database, np.float64)
  if metric == "cosine":
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  if metric == "euclidean":
    sim = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  else:
    sim = q @ x.T
  if exclude_self:
    np.fill_diagonal(sim, -np.inf)
  idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
  return idx, np.take_along_axis(sim, idx, axis=1)


# ----------------------------------------------------------------- knn_graph


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "inner_product"])
def test_knn_graph_equals_brute_force(points, metric):
  idx, sim = graph.knn_graph(points, k=7, metric=metric)
  ref_idx, ref_sim = _brute_force(points, points, 7, metric, True)
  assert idx.shape == (300, 7) and idx.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(sim), ref_sim, rtol=1e-5, atol=1e-5)
  assert not (np.asarray(idx) == np.arange(300)[:, None]).any()


def test_knn_graph_under_jit(points):
  idx, sim = jax.jit(lambda p: graph.knn_graph(p, k=7, metric="cosine"))(
      points)
  ref_idx, ref_sim = _brute_force(points, points, 7, "cosine", True)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(sim), ref_sim, rtol=1e-5, atol=1e-6)


def test_exact_knn_many_chunks_bins_and_groups(points):
  # Small chunk/bin/group sizes run the multi-chunk scan, the strided bins and
  # the grouped selection on a small problem; padding of both queries (300 ->
  # 320) and database (300 -> 384) is exercised too.
  vals, idx = graph._exact_knn(
      points, points, k=5, metric="euclidean", exclude_self=True,
      block_size=64, chunk_size=128, bin_size=4, group=4)
  ref_idx, ref_sim = _brute_force(points, points, 5, "euclidean", True)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(vals), ref_sim, rtol=1e-5, atol=1e-5)


def test_knn_search_equals_brute_force(points):
  queries = points[:37] + 0.1
  idx, sim = graph.knn_search(queries, points, k=4, metric="cosine")
  ref_idx, ref_sim = _brute_force(queries, points, 4, "cosine", False)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(sim), ref_sim, rtol=1e-5, atol=1e-6)


def test_approx_knn_recall_and_exact_limit(blobs):
  x, _ = blobs
  ref_idx, _ = _brute_force(x, x, 8, "euclidean", True)
  idx, sim = graph.knn_graph(x, k=8, metric="euclidean", method="approx",
                             leaf_size=32, num_probes=6)
  recall = np.mean([len(set(a) & set(b)) / 8 for a, b in
                    zip(np.asarray(idx), ref_idx)])
  assert recall >= 0.9, recall
  # Returned similarities are the exact ones of the returned neighbours.
  d2 = ((x[:, None, :] - x[np.asarray(idx)]) ** 2).sum(-1)
  np.testing.assert_allclose(np.asarray(sim), -d2, rtol=1e-4, atol=1e-3)
  # Probing every leaf is an exact search.
  idx_all, _ = graph.knn_graph(x, k=8, metric="euclidean", method="approx",
                               leaf_size=32, num_probes=1000)
  np.testing.assert_array_equal(np.sort(np.asarray(idx_all), 1),
                                np.sort(ref_idx, 1))


def _recall(idx, ref_idx):
  k = ref_idx.shape[1]
  return np.mean([len(set(a) & set(b)) / k for a, b in zip(np.asarray(idx), ref_idx)])


def test_sampled_recall_is_the_measured_recall(points):
  # Isotropic points, tiny leaves: recall climbs slowly with the probes. With every
  # point in the sample, the estimate is the recall of the returned graph itself.
  ref_idx, _ = _brute_force(points, points, 5, "euclidean", True)
  recalls = []
  for probes in (1, 4):
    idx, _, estimate = graph.knn_graph(points, k=5, metric="euclidean", method="approx",
                                       leaf_size=16, num_probes=probes,
                                       recall_sample=300, return_recall=True)
    assert estimate == pytest.approx(_recall(idx, ref_idx), abs=1e-9), probes
    recalls.append(estimate)
  assert recalls == sorted(recalls) and recalls[0] < 0.5 < recalls[-1], recalls


def test_recall_target_picks_the_fewest_probes(blobs):
  x, _ = blobs
  ref_idx, _ = _brute_force(x, x, 8, "euclidean", True)
  idx, _, estimate = graph.knn_graph(x, k=8, metric="euclidean", method="approx",
                                     leaf_size=16, recall=0.9, recall_sample=200,
                                     return_recall=True)
  assert estimate >= 0.9
  assert _recall(idx, ref_idx) >= 0.87   # a 200-point sample's estimate
  # It is the first probe bucket whose sampled recall reaches the target.
  levels, tile = graph._tree_shape(600, 16, 8)
  perm = graph._pca_tree_order(jnp.asarray(x), jnp.uint32(0), levels=levels, tile=tile)
  curve = graph._sample_recall_curve(jnp.asarray(x), perm, k=8, metric="euclidean",
                                     tile=tile, sample_size=200, seed=0)
  buckets = graph._probe_buckets(2 ** levels)
  chosen = next(p for p in buckets if curve[p] >= 0.9)
  assert estimate == curve[chosen] and 4 * chosen <= 2 ** levels
  assert all(curve[p] < 0.9 for p in buckets if p < chosen)
  same, _ = graph.knn_graph(x, k=8, metric="euclidean", method="approx", leaf_size=16,
                            num_probes=chosen)
  np.testing.assert_array_equal(np.asarray(same), np.asarray(idx))


def test_recall_one_is_the_exact_search(points):
  ref_idx, _ = _brute_force(points, points, 4, "cosine", True)
  idx, _, estimate = graph.knn_graph(points, k=4, method="approx", recall=1.0,
                                     leaf_size=16, return_recall=True)
  assert estimate == 1.0
  np.testing.assert_array_equal(np.sort(np.asarray(idx), 1), np.sort(ref_idx, 1))


def test_probe_buckets():
  assert graph._probe_buckets(64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
  assert graph._probe_buckets(1) == [1]


def test_pca_tree_order_is_balanced_permutation(blobs):
  x, y = blobs
  levels, tile = graph._tree_shape(600, 64, 8)
  assert (2 ** levels, tile) == (16, 40)
  perm = np.asarray(graph._pca_tree_order(
      jnp.asarray(x), jnp.uint32(0), levels=levels, tile=tile))
  assert sorted(perm.tolist()) == list(range(640))   # ids >= 600: padding
  leaves = [x[leaf[leaf < 600]] for leaf in perm.reshape(16, 40)
            if (leaf < 600).any()]
  # Leaves are compact: their spread is a small fraction of the data's.
  spread = np.mean([((l - l.mean(0)) ** 2).sum(1).mean() for l in leaves])
  assert spread < 0.25 * ((x - x.mean(0)) ** 2).sum(1).mean()
  # Most leaves hold a single cluster.
  assert np.mean([len(set(y[leaf[leaf < 600]])) == 1
                  for leaf in perm.reshape(16, 40) if (leaf < 600).any()]) >= 0.6


# ------------------------------------------------ high-dimensional data: projection


@pytest.fixture(scope="module")
def wide():
  """700 points in 160-d near a 12-d subspace (pixels-like): projection territory."""
  rng = np.random.default_rng(2)
  basis = rng.normal(size=(12, 160))
  x = rng.normal(size=(700, 12)) @ basis + 0.3 * rng.normal(size=(700, 160)) + 2.0
  return x.astype(np.float32)


def test_exact_bin_size_balances_the_two_passes():
  # Up to 32k points: the whole score row is one tile, bins of one point in groups.
  assert graph._exact_knn_params(10_000, 11, 784) == (10240, 1, 32)   # notMNIST pixels
  assert graph._exact_knn_params(10_000, 11, 64) == (10240, 1, 32)
  assert graph._exact_knn_params(2_000, 11, 784) == (2048, 1, 32)
  assert graph._exact_knn_params(300, 11, 16) == (512, 1, 16)    # >= 2k groups left
  # Above: pass 2 reads k * bin_size * d floats per query, pass 1 ranks N / bin_size
  # maxima.
  assert graph._exact_knn_params(100_000, 11, 64)[1] == 8      # blobs
  assert graph._exact_knn_params(1_000_000, 11, 64)[1] == 16
  assert graph._exact_knn_params(100_000, 11, 784)[1] == 4


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_exact_knn_one_tile_bins_of_one_point_skip_pass_2(wide, metric):
  # Bins of one point return pass 1's scores directly; euclidean's must still be
  # -|q - x|^2, as the binned path's recomputed ones are.
  chunk, m, g = graph._exact_knn_params(700, 6, 160)
  assert (chunk, m) == (768, 1) and g > 1
  vals, idx = graph._exact_knn(wide, wide, k=6, metric=metric, exclude_self=True,
                               block_size=64, chunk_size=chunk, bin_size=m, group=g)
  ref_idx, ref_sim = _brute_force(wide, wide, 6, metric, True)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(vals), ref_sim, rtol=1e-4)
  binned = graph._exact_knn(wide, wide, k=6, metric=metric, exclude_self=True,
                            block_size=64, chunk_size=256, bin_size=4, group=4)
  np.testing.assert_allclose(np.asarray(vals), np.asarray(binned[0]), rtol=1e-4)


def test_exact_knn_bins_of_one_point_over_many_chunks(wide):
  vals, idx = graph._exact_knn(wide, wide, k=6, metric="euclidean", exclude_self=True,
                               block_size=64, chunk_size=256, bin_size=1, group=8)
  ref_idx, ref_sim = _brute_force(wide, wide, 6, "euclidean", True)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(vals), ref_sim, rtol=1e-4)


def test_pca_projection_finds_the_top_subspace(wide):
  y = np.asarray(graph._pca_projection(jnp.asarray(wide), dim=12, center=True))
  xc = wide.astype(np.float64) - wide.mean(0)
  top = np.linalg.eigh(xc.T @ xc)[1][:, ::-1][:, :12]
  # Same captured variance as the exact top-12 directions, and orthonormal directions
  # (pairwise distances never grow).
  assert (y ** 2).sum() == pytest.approx(((xc @ top) ** 2).sum(), rel=1e-3)
  d_full = ((xc[:50, None] - xc[None, :50]) ** 2).sum(-1)
  d_proj = ((y[:50, None] - y[None, :50]) ** 2).sum(-1)
  assert (d_proj <= d_full * (1 + 1e-4) + 1e-3).all()
  # Uncentred for inner products: the mean direction is kept.
  y0 = np.asarray(graph._pca_projection(jnp.asarray(wide), dim=12, center=False))
  assert (y0 ** 2).sum() > (y ** 2).sum()


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_projected_search_recall_and_exact_scores(wide, metric):
  ref_idx, ref_sim = _brute_force(wide, wide, 8, metric, True)
  idx, sim, estimate = graph.knn_graph(wide, k=8, metric=metric, method="approx",
                                       project_dim=12, recall=0.9, recall_sample=700,
                                       return_recall=True)
  idx, sim = np.asarray(idx), np.asarray(sim)
  # With every point sampled the estimate is the graph's own (tie-aware) recall.
  kth = ref_sim[:, -1:]
  assert estimate == pytest.approx(np.mean(sim >= kth - 1e-5 * np.maximum(abs(kth), 1)))
  assert estimate >= 0.9 and _recall(idx, ref_idx) >= 0.9
  # Similarities are the exact full-dimensional ones of the returned points, sorted.
  x = wide.astype(np.float64)
  if metric == "cosine":
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  if metric == "euclidean":
    ref = -((x[:, None, :] - x[idx]) ** 2).sum(-1)
  else:
    ref = np.einsum("nd,nkd->nk", x, x[idx])
  np.testing.assert_allclose(sim, ref, rtol=1e-4, atol=1e-3)
  assert (np.diff(sim, axis=1) <= 1e-5 * np.abs(sim[:, 1:]).max()).all()
  assert not (idx == np.arange(700)[:, None]).any()


def test_projected_search_takes_the_fewest_candidates(wide):
  # The candidate count is the first of k * (1, 1.5, 2, 3, ...) whose sampled recall
  # reaches the target. With an exact projected search the graph's recall on the
  # sample is that curve's value: a true neighbour among the candidates always ranks
  # in the top k of their exact scores.
  k = 6
  x = jnp.asarray(wide)
  sample = np.sort(np.random.RandomState(0).choice(700, 300, replace=False))
  true_idx, _ = graph._sample_neighbours(x, sample, k=k, metric="euclidean")
  y = graph._pca_projection(x, dim=8, center=True)
  curve = graph._projected_rank_curve(y, true_idx, sample, metric="euclidean",
                                      max_candidates=8 * k)
  assert (np.diff(curve) >= 0).all() and curve[0] == 0
  options = sorted({int(np.ceil(c * k)) for c in graph._CANDIDATE_FACTORS})
  picked = []
  for target in (0.8, 0.95):
    chosen = next(c for c in options if curve[c] >= target)
    assert all(curve[c] < target for c in options if c < chosen)
    _, _, est = graph.knn_graph(wide, k=k, metric="euclidean", method="approx",
                                project_dim=8, recall=target, recall_sample=300,
                                return_recall=True)
    assert est == pytest.approx(curve[chosen])
    picked.append(chosen)
  assert picked[0] < picked[1] and picked[0] > k   # 8 of 160 dimensions need extras


def test_projection_used_by_default_only_for_wide_data(wide, monkeypatch, points):
  calls = []
  real = graph._projected_knn
  monkeypatch.setattr(graph, "_projected_knn",
                      lambda x, **kw: calls.append(kw["dim"]) or real(x, **kw))
  # 700 x 320 is far below the exact search's break-even: exact neighbours, recall 1.
  x = np.tile(wide, (1, 2))
  idx, _, est = graph.knn_graph(x, k=5, method="approx", metric="euclidean",
                                return_recall=True)
  assert calls == [] and est == 1.0
  np.testing.assert_array_equal(np.asarray(idx), _brute_force(x, x, 5, "euclidean", True)[0])
  monkeypatch.setattr(graph, "_PROJECT_ABOVE_FLOPS", 0.0)
  graph.knn_graph(x, k=5, method="approx")   # 320-d, above the break-even: projected
  assert calls == [graph._PROJECT_DIM]
  graph.knn_graph(wide[:, :128], k=5, method="approx")            # <= 2 x 64: tree
  graph.knn_graph(np.tile(wide, (1, 2)), k=5, method="approx", project_dim=0)
  graph.knn_graph(np.tile(wide, (1, 2)), k=5, method="approx", num_probes=2)
  assert calls == [graph._PROJECT_DIM]
  with pytest.raises(ValueError, match="`project_dim` must be"):
    graph.knn_graph(points, k=3, method="approx", project_dim=-1)


def test_projection_that_cannot_reach_the_target_falls_back():
  # Isotropic noise has no low-dimensional structure: 8 of 200 dimensions miss most
  # neighbours even with 8k candidates, so the tree runs, and on 2 leaves of noise
  # it would need both: the exact search (recall 1).
  x = np.random.default_rng(3).normal(size=(500, 200)).astype(np.float32)
  idx, _, estimate = graph.knn_graph(x, k=5, metric="euclidean", method="approx",
                                     project_dim=8, return_recall=True)
  assert estimate == 1.0
  np.testing.assert_array_equal(np.asarray(idx), _brute_force(x, x, 5, "euclidean", True)[0])


def test_knn_graph_errors(points):
  with pytest.raises(ValueError, match="`k` must be in"):
    graph.knn_graph(points, k=300)
  with pytest.raises(ValueError, match="`k` must be in"):
    graph.knn_graph(points, k=0)
  bad = points.copy()
  bad[17, 2] = np.nan
  with pytest.raises(ValueError, match="`features` must be finite.*row 17"):
    graph.knn_graph(bad, k=3)
  bad[17, 2] = np.inf
  with pytest.raises(ValueError, match="`features` must be finite"):
    graph.knn_graph(bad, k=3)
  with pytest.raises(ValueError, match="`metric`"):
    graph.knn_graph(points, k=3, metric="manhattan")
  with pytest.raises(ValueError, match="`method`"):
    graph.knn_graph(points, k=3, method="lsh")
  for bad_recall in (0.0, 1.5, True, "high"):
    with pytest.raises(ValueError, match="`recall` must be a number in"):
      graph.knn_graph(points, k=3, method="approx", recall=bad_recall)
  with pytest.raises(ValueError, match="rank 2"):
    graph.knn_graph(points[0], k=3)
  with pytest.raises(ValueError, match="same number of features"):
    graph.knn_search(points[:, :3], points, k=3)
