"""Masked image modelling (MAE): patches, per-example random masking, the masked-patch loss.

Pure functions over arrays, computed in float32; images are ``[batch, height, width,
channels]`` (channels last, sslx's layout). Patches are numbered row-major and each
patch is flattened ``(row in patch, column in patch, channel)``, the order of MAE's
``patchify`` (``einsum('nchpwq->nhwpqc')``), so a patch vector matches the official one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.classification import _check_float, _check_rank, _check_same_shape


def patchify(images: jax.typing.ArrayLike, patch_size: int) -> jax.Array:
  """``[B, H, W, C]`` -> ``[B, L, p * p * C]`` with ``L = (H / p)(W / p)`` row-major.

  Raises ValueError unless ``images`` is rank 4 with sides that are multiples of
  ``patch_size``.
  """
  images = jnp.asarray(images)
  _check_rank("images", images, 4, "[batch, height, width, channels]")
  b, h, w, c = images.shape
  p = int(patch_size)
  if p < 1 or h % p or w % p:
    raise ValueError(f"`patch_size` {patch_size!r} must be >= 1 and divide the image sides, got "
                     f"images of shape {images.shape}.")
  x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.typing.ArrayLike, patch_size: int,
               grid: tuple[int, int] | None = None) -> jax.Array:
  """The inverse of :func:`patchify`: ``[B, L, p * p * C]`` -> ``[B, H, W, C]``.

  ``grid`` is ``(H / p, W / p)``; None means a square grid (MAE's ``unpatchify``).
  """
  patches = jnp.asarray(patches)
  _check_rank("patches", patches, 3, "[batch, num_patches, patch_dim]")
  b, n, d = patches.shape
  p = int(patch_size)
  if grid is None:
    side = int(round(n ** 0.5))
    grid = (side, side)
  gh, gw = grid
  if gh * gw != n or p < 1 or d % (p * p):
    raise ValueError(f"`patches` of shape {patches.shape} do not form a {gh}x{gw} grid of "
                     f"{p}x{p} patches (`grid`={grid}, `patch_size`={patch_size!r}).")
  c = d // (p * p)
  x = patches.reshape(b, gh, gw, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, gh * p, gw * p, c)


def random_masking(key: jax.Array, batch_size: int, num_patches: int, *,
                   mask_ratio: float = 0.75) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""MAE's per-example random masking by sorting uniform noise (``random_masking``).

  For each example, ``noise ~ U[0, 1)^L``; ``ids_shuffle = argsort(noise)`` (ascending:
  small noise is kept), ``ids_restore = argsort(ids_shuffle)``, and the first
  ``len_keep = int(L (1 - r))`` of ``ids_shuffle`` are kept.

  Args:
    key: PRNG key.
    batch_size: ``B``.
    num_patches: ``L``.
    mask_ratio: the fraction ``r`` of patches removed, in ``[0, 1)`` (MAE: 0.75).

  Returns:
    ``ids_keep [B, len_keep]`` int32 (the kept patches, in shuffled order, as the
    encoder sees them), ``mask [B, L]`` float32 (0 kept, 1 removed, in patch order) and
    ``ids_restore [B, L]`` int32 (the position of each patch in the shuffled sequence:
    ``take(concat(kept, removed), ids_restore)`` is patch order again).
  """
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"`mask_ratio` must be in [0, 1), got {mask_ratio!r}.")
  if num_patches < 1 or batch_size < 0:
    raise ValueError(f"`num_patches` must be >= 1 and `batch_size` >= 0, got {num_patches} "
                     f"and {batch_size}.")
  len_keep = int(num_patches * (1 - mask_ratio))
  if len_keep < 1:
    raise ValueError(f"`mask_ratio` {mask_ratio} keeps no patch of {num_patches}; lower it or "
                     f"use smaller patches.")
  noise = jax.random.uniform(key, (batch_size, num_patches))
  ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  mask = (ids_restore >= len_keep).astype(jnp.float32)  # = unshuffle([0] * keep + [1] * rest)
  return ids_shuffle[:, :len_keep], mask, ids_restore


def mae_loss(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike,
             mask: jax.typing.ArrayLike, *, norm_pix_loss: bool = True,
             eps: float = 1e-6) -> jax.Array:
  r"""MAE's reconstruction loss (He et al., CVPR 2022, Sec. 3; ``forward_loss``).

  .. math::
    \hat t_{ij} = \frac{t_{ij} - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}}, \qquad
    \mathcal{L} = \frac{\sum_i m_i \cdot \frac{1}{P} \sum_j (x_{ij} - \hat t_{ij})^2}{\sum_i m_i}

  over the patches ``i`` of all examples, ``P`` values per patch, with ``mu_i`` and
  ``sigma_i^2`` the mean and *unbiased* variance of patch ``i``'s target values (as the
  official ``target.var(dim=-1)``, PyTorch's default ``unbiased=True``) when
  ``norm_pix_loss`` (the paper's best setting, Table 1d), else ``t`` as is; ``m_i = 1``
  for removed patches: only masked patches count.

  Args:
    pred: ``[batch, num_patches, patch_dim]`` the decoder's pixel predictions.
    target: ``[batch, num_patches, patch_dim]`` the image's patches
      (:func:`patchify`; no gradient flows).
    mask: ``[batch, num_patches]``, 1 for removed patches, 0 for visible ones.
    norm_pix_loss: normalise each target patch by its own mean and variance.
    eps: added to the variance.

  Returns:
    A scalar float32 >= 0 (NaN when no patch is masked, as the official division).
  """
  _check_same_shape("pred", pred, "target", target)
  _check_rank("pred", pred, 3, "[batch, num_patches, patch_dim]")
  pred, target = _check_float("pred", pred), _check_float("target", target)
  mask = jnp.asarray(mask, jnp.float32)
  if mask.shape != pred.shape[:2]:
    raise ValueError(f"`mask` must be [batch, num_patches] = {pred.shape[:2]}, got shape "
                     f"{mask.shape}.")
  target = jax.lax.stop_gradient(target)
  if norm_pix_loss:
    if pred.shape[-1] < 2:
      raise ValueError(f"norm_pix_loss needs patches of >= 2 values (an unbiased variance), got "
                       f"patch_dim {pred.shape[-1]}.")
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
    target = (target - mean) / jnp.sqrt(var + eps)
  per_patch = jnp.mean((pred - target) ** 2, axis=-1)
  return jnp.sum(per_patch * mask) / jnp.sum(mask)
