"""Multi-crop (Caron et al., SwAV 2020; DINO 2021): a few large global crops and many small
local crops of each image.

Each crop is a SimCLR view (:func:`sslx.augment.simclr_view`: random resized crop, flip,
colour jitter, grayscale, optional blur) resized to its own output size: global crops
cover a large share of the image (DINO ``(0.4, 1)``, SwAV ``(0.14, 1)``) at the full
resolution, local crops a small share (DINO ``(0.05, 0.4)``, SwAV ``(0.05, 0.14)``) at a
lower one (96 instead of 224 pixels on ImageNet). Local crops are cheap because they are
small; the model must pool globally (every sslx CNN/ResNet does) to accept both sizes.

A method reads multi-crop views like any other: ``View(pool, 'global_crop')`` and
``View(pool, 'local_crop')`` under distinct view names (:func:`view_names`); each view
gets its own key from its name, and the trainer runs one forward pass per image shape.
The sizes and scales come from ``config.augment.multicrop_*``.

Differences from the official pipelines: DINO also solarizes its second global crop and
blurs each crop with its own probability (1.0, 0.1, 0.5), and both use colour jitter
strengths (0.4, 0.4, 0.2/0.4, 0.1); here every crop uses the one SimCLR colour recipe of
``config.augment`` (``simclr_strength``, ``simclr_blur``), as the rest of sslx does.
"""

from __future__ import annotations

from sslx.augment.simclr import simclr_view

# DINO's local/global resolution ratio on ImageNet (96 / 224), for a local size of 0.
LOCAL_SIZE_RATIO = 96 / 224


def crop_size(size: int, side: int, *, local: bool) -> int:
  """Output side of a crop: ``size``, or when 0 the image side (global) or 96/224 of it (local)."""
  if size:
    return int(size)
  return max(2, round(side * LOCAL_SIZE_RATIO)) if local else side


def multicrop_view(key, images, *, size: int, scale, local: bool, strength: float,
                   blur: bool, flip: bool):
  """One global or local crop of each image, ``[batch, size, size, channels]``.

  Args:
    key: one PRNG key for the batch.
    images: ``[batch, height, width, channels]`` uint8 or float in [0, 1].
    size: output side in pixels; 0 picks :func:`crop_size`'s default.
    scale: ``(low, high)`` range of the crop's area as a fraction of the image.
    local: whether this is a local crop (only used for the default size).
    strength, blur, flip: the SimCLR colour strength, blur and flip.
  """
  side = min(images.shape[1], images.shape[2])
  return simclr_view(key, images, crop_size=crop_size(size, side, local=local),
                     crop_scale=tuple(scale), strength=strength, blur=blur, flip=flip)


def view_names(num_global: int, num_local: int, pool: str = "unlabeled"):
  """``(global view names, local view names)``, shared by every multi-crop method.

  >>> view_names(2, 2)
  (('unlabeled_global_1', 'unlabeled_global_2'), ('unlabeled_local_1', 'unlabeled_local_2'))
  """
  return (tuple(f"{pool}_global_{i + 1}" for i in range(num_global)),
          tuple(f"{pool}_local_{i + 1}" for i in range(num_local)))
