"""Tests for sslx.losses.masked_image (MAE's patchify, random masking and loss).

Against models_mae.py's patchify / random_masking / forward_loss rewritten in float64
numpy (NCHW, PyTorch's unbiased variance), hand values, round trips, jit == eager,
gradients (masked patches only), a batch permutation, errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx.losses import mae_loss, patchify, random_masking, unpatchify


def _official_patchify(imgs_nchw, p):
  """models_mae.patchify on [N, C, H, W]: reshape (N, C, h, p, w, p), einsum
  'nchpwq->nhwpqc', reshape (N, h*w, p*p*C)."""
  n, c, hh, ww = imgs_nchw.shape
  h, w = hh // p, ww // p
  x = imgs_nchw.reshape(n, c, h, p, w, p)
  x = np.einsum("nchpwq->nhwpqc", x)
  return x.reshape(n, h * w, p * p * c)


def _official_masking(noise, mask_ratio):
  """models_mae.random_masking on given noise: ids of kept patches, mask, ids_restore."""
  n, l = noise.shape
  len_keep = int(l * (1 - mask_ratio))
  ids_shuffle = np.argsort(noise, axis=1)
  ids_restore = np.argsort(ids_shuffle, axis=1)
  ids_keep = ids_shuffle[:, :len_keep]
  mask = np.ones((n, l))
  mask[:, :len_keep] = 0
  mask = np.take_along_axis(mask, ids_restore, axis=1)
  return ids_keep, mask, ids_restore


def _official_loss(target, pred, mask, norm_pix_loss):
  """models_mae.forward_loss on patchified targets; torch's var is unbiased."""
  target = np.asarray(target, np.float64)
  if norm_pix_loss:
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, keepdims=True, ddof=1)
    target = (target - mean) / (var + 1e-6) ** 0.5
  loss = ((np.asarray(pred, np.float64) - target) ** 2).mean(-1)
  return (loss * mask).sum() / mask.sum()


def test_patchify_matches_the_official_layout_and_round_trips():
  rng = np.random.default_rng(0)
  for shape, p in (((2, 8, 8, 1), 2), ((3, 8, 8, 3), 4), ((2, 6, 4, 3), 2)):
    imgs = rng.normal(size=shape).astype(np.float32)
    patches = patchify(imgs, p)
    assert patches.shape == (shape[0], (shape[1] // p) * (shape[2] // p), p * p * shape[3])
    if shape[1] == shape[2]:  # the official code handles square images
      np.testing.assert_array_equal(patches, _official_patchify(imgs.transpose(0, 3, 1, 2), p))
    grid = (shape[1] // p, shape[2] // p)
    np.testing.assert_array_equal(unpatchify(patches, p, grid), imgs)
  # Hand case: a 4x4 image of 0..15, 2x2 patches -> patch 1 is rows 0-1, cols 2-3.
  img = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(patchify(img, 2)[0, 1], [2, 3, 6, 7])
  np.testing.assert_array_equal(unpatchify(patchify(img, 2), 2), img)  # square by default


def test_random_masking_matches_the_official_function_on_the_same_noise():
  key = jax.random.key(3)
  b, l, r = 6, 16, 0.75
  ids_keep, mask, ids_restore = jax.jit(
      lambda k: random_masking(k, b, l, mask_ratio=r))(key)
  noise = np.asarray(jax.random.uniform(key, (b, l)))  # the noise it draws
  ref_keep, ref_mask, ref_restore = _official_masking(noise, r)
  np.testing.assert_array_equal(ids_keep, ref_keep)
  np.testing.assert_array_equal(mask, ref_mask)
  np.testing.assert_array_equal(ids_restore, ref_restore)


@pytest.mark.parametrize("l, r", [(16, 0.75), (16, 0.5), (4, 0.75), (49, 0.75), (10, 0.0)])
def test_masking_keeps_exactly_the_fraction_and_restores_the_order(l, r):
  b = 5
  ids_keep, mask, ids_restore = random_masking(jax.random.key(l), b, l, mask_ratio=r)
  keep = int(l * (1 - r))
  assert ids_keep.shape == (b, keep) and ids_keep.dtype == jnp.int32
  np.testing.assert_array_equal(np.sum(mask, axis=1), l - keep)  # per example
  for i in range(b):
    assert len(set(np.asarray(ids_keep[i]).tolist())) == keep  # distinct patches
    np.testing.assert_array_equal(np.asarray(mask)[i, np.asarray(ids_keep[i])], 0.0)
  # Kept then removed, un-shuffled by ids_restore, is patch order again.
  removed = np.stack([np.flatnonzero(np.asarray(mask[i])) for i in range(b)]) if keep < l else \
      np.zeros((b, 0), int)
  ids_shuffle = np.argsort(np.asarray(ids_restore), axis=1)
  np.testing.assert_array_equal(ids_shuffle[:, :keep], ids_keep)
  np.testing.assert_array_equal(np.sort(ids_shuffle[:, keep:], axis=1), removed)
  seq = np.concatenate([np.asarray(ids_keep), ids_shuffle[:, keep:]], axis=1)
  np.testing.assert_array_equal(np.take_along_axis(seq, np.asarray(ids_restore), 1),
                                np.broadcast_to(np.arange(l), (b, l)))


def test_masks_differ_across_examples_and_keys():
  _, m1, _ = random_masking(jax.random.key(0), 8, 16)
  _, m2, _ = random_masking(jax.random.key(1), 8, 16)
  assert len({tuple(row) for row in np.asarray(m1).tolist()}) > 1
  assert not np.array_equal(m1, m2)


def _inputs(seed=0, b=4, l=16, d=12):
  rng = np.random.default_rng(seed)
  pred = rng.normal(size=(b, l, d)).astype(np.float32)
  target = (rng.normal(size=(b, l, d)) * 3 + 1).astype(np.float32)
  mask = (rng.random((b, l)) < 0.75).astype(np.float32)
  mask[:, 0] = 1.0
  return pred, target, mask


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_loss_matches_forward_loss(norm_pix_loss):
  fn = jax.jit(lambda p, t, m: mae_loss(p, t, m, norm_pix_loss=norm_pix_loss))
  for seed in range(3):
    pred, target, mask = _inputs(seed)
    ref = _official_loss(target, pred, mask, norm_pix_loss)
    np.testing.assert_allclose(fn(pred, target, mask), ref, rtol=1e-5)
    np.testing.assert_allclose(mae_loss(pred, target, mask, norm_pix_loss=norm_pix_loss),
                               ref, rtol=1e-5)  # eager == jit


def test_hand_values():
  # One patch [0, 2] (mean 1, unbiased var 2): normalised [-1, 1] / sqrt(2 + 1e-6).
  target = jnp.array([[[0.0, 2.0], [5.0, 5.0]]])
  pred = jnp.zeros((1, 2, 2))
  mask = jnp.array([[1.0, 0.0]])  # only the first patch counts
  np.testing.assert_allclose(mae_loss(pred, target, mask), 1.0 / (2.0 + 1e-6), rtol=1e-6)
  np.testing.assert_allclose(mae_loss(pred, target, mask, norm_pix_loss=False), 2.0, rtol=1e-6)
  # A uniform patch normalises to zeros (not NaN): the second patch alone costs 0.
  np.testing.assert_allclose(mae_loss(pred, target, 1.0 - mask), 0.0, atol=1e-12)


def test_gradient_only_on_masked_patches_and_none_to_the_target():
  pred, target, mask = _inputs(1)
  g_pred, g_target = jax.grad(lambda p, t: mae_loss(p, t, mask), argnums=(0, 1))(pred, target)
  assert np.all(np.isfinite(g_pred))
  np.testing.assert_array_equal(np.asarray(g_pred)[mask == 0], 0.0)
  assert np.all(np.abs(np.asarray(g_pred)[mask == 1]).sum(-1) > 0)
  np.testing.assert_array_equal(g_target, 0.0)
  # d/dpred of sum(m * mean((p - t)^2)) / sum(m) = 2 (p - t) m / (D sum(m)).
  t = np.asarray(target, np.float64)
  t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
  expected = 2 * (pred - t) * mask[..., None] / (pred.shape[-1] * mask.sum())
  np.testing.assert_allclose(g_pred, expected, rtol=1e-4, atol=1e-7)


def test_batch_permutation_invariance():
  pred, target, mask = _inputs(2)
  perm = np.array([2, 0, 3, 1])
  np.testing.assert_allclose(mae_loss(pred[perm], target[perm], mask[perm]),
                             mae_loss(pred, target, mask), rtol=1e-6)
  assert not np.isclose(mae_loss(pred[perm], target, mask), mae_loss(pred, target, mask))


def test_bad_inputs_name_the_argument():
  with pytest.raises(ValueError, match=r"`patch_size` 3 must be >= 1 and divide"):
    patchify(jnp.zeros((1, 8, 8, 1)), 3)
  with pytest.raises(ValueError, match=r"`images` must have rank 4"):
    patchify(jnp.zeros((8, 8)), 2)
  with pytest.raises(ValueError, match=r"do not form a 2x3 grid"):
    unpatchify(jnp.zeros((1, 5, 4)), 2, (2, 3))
  with pytest.raises(ValueError, match=r"`mask_ratio` must be in \[0, 1\), got 1.0"):
    random_masking(jax.random.key(0), 2, 16, mask_ratio=1.0)
  with pytest.raises(ValueError, match=r"keeps no patch of 4"):
    random_masking(jax.random.key(0), 2, 4, mask_ratio=0.9)
  with pytest.raises(ValueError, match=r"`mask` must be \[batch, num_patches\] = \(2, 3\)"):
    mae_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"`pred` and `target` must have the same shape"):
    mae_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5)), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"norm_pix_loss needs patches of >= 2 values"):
    mae_loss(jnp.zeros((2, 3, 1)), jnp.zeros((2, 3, 1)), jnp.ones((2, 3)))
