"""SimCLR's augmentation: random resized crop and flip, colour distortion, blur.

Follows the SimCLR paper's appendix A (Chen et al., 2020, "A Simple Framework
for Contrastive Learning of Visual Representations", arXiv:2002.05709) and its
PyTorch pseudo-code, with torchvision's definitions of each transform:

1. ``RandomResizedCrop``: area fraction ``U[0.08, 1]``, log-uniform aspect
   ratio in ``[3/4, 4/3]``, up to 10 tries then a centre crop; resized with
   bilinear interpolation (no antialiasing); then a horizontal flip with
   p = 0.5.
2. ``ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s)`` with p = 0.8: brightness,
   contrast and saturation factors uniform in ``[max(0, 1 - 0.8 s), 1 + 0.8 s]``
   (blends with black, the mean gray level, and the gray image) and a hue shift
   uniform in ``[-0.2 s, 0.2 s]`` turns, in a random order per example, each
   clipped to [0, 1].
3. ``RandomGrayscale(p=0.2)``.
4. Optionally Gaussian blur with p = 0.5, sigma ``U[0.1, 2.0]`` pixels, kernel
   about 10% of the side (ImageNet; SimCLR skips it on CIFAR).

The colour strength ``s`` is 1.0 for ImageNet and 0.5 for CIFAR-10 in the
paper. For 1-channel images saturation, hue and grayscale are the identity.
"""

from __future__ import annotations

import math

import dm_pix
import jax
import jax.numpy as jnp

from sslx.augment import _core

Array = jax.Array

_CROP_TRIES = 10


def _check_pair(value, name: str, *, low: float, high: float | None):
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f'`{name}` must be a pair (low, high); got {value!r}.')
  if not (low < lo <= hi and (high is None or hi <= high)):
    bound = '' if high is None else f' <= {high}'
    raise ValueError(
        f'`{name}` must satisfy {low} < low <= high{bound}; got {value!r}.')
  return lo, hi


def _check_crop_size(crop_size, height: int, width: int) -> tuple[int, int]:
  if crop_size is None:
    return height, width
  if isinstance(crop_size, int) and not isinstance(crop_size, bool):
    crop_size = (crop_size, crop_size)
  try:
    out = tuple(int(v) for v in crop_size)
    valid = len(out) == 2 and all(v >= 1 for v in out) and all(
        float(v) == int(v) for v in crop_size)
  except (TypeError, ValueError):
    valid = False
  if not valid:
    raise ValueError(
        '`crop_size` must be None, a positive int or a (height, width) pair '
        f'of positive ints; got {crop_size!r}.')
  return out


def _crop_boxes(u: Array, height: int, width: int, scale, ratio):
  """torchvision ``RandomResizedCrop.get_params`` for a batch.

  ``u``: ``[B, 10, 4]`` uniforms. Returns top, left, box height and width
  (float32 integers), each ``[B]``.
  """
  area = height * width
  target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u[..., 1])
  w = jnp.round(jnp.sqrt(target * aspect))
  h = jnp.round(jnp.sqrt(target / aspect))
  ok = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
  first = jnp.argmax(ok, axis=1)
  pick = lambda v: jnp.take_along_axis(v, first[:, None], axis=1)[:, 0]
  w, h = pick(w), pick(h)
  top = jnp.floor(pick(u[..., 2]) * (height - h + 1))
  left = jnp.floor(pick(u[..., 3]) * (width - w + 1))
  # Fallback when no try fits: the largest centred crop within the ratios.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    fw, fh = width, round(width / ratio[0])
  elif in_ratio > ratio[1]:
    fw, fh = round(height * ratio[1]), height
  else:
    fw, fh = width, height
  found = jnp.any(ok, axis=1)
  return (jnp.where(found, top, (height - fh) // 2),
          jnp.where(found, left, (width - fw) // 2),
          jnp.where(found, h, fh), jnp.where(found, w, fw))


# Below, images are planar, [B, C, H, W] float32, so that whole rows are the
# innermost (vectorized) axis on CPU.


def _per_example(values: Array) -> Array:
  return values[:, None, None, None]


def _gray(x: Array) -> Array:
  """``[B, 1, H, W]`` luma of planar images (the image itself if C == 1)."""
  if x.shape[1] == 1:
    return x
  w = _core.LUMA_WEIGHTS
  return w[0] * x[:, 0:1] + w[1] * x[:, 1:2] + w[2] * x[:, 2:3]


def _resized_crops(images: Array, matrix: Array, out_h: int,
                   out_w: int) -> Array:
  """Bilinear resampling of planar ``images`` through per-example affine maps.

  Same convention as :func:`sslx.augment._core.affine_sample`, clamped at the
  edge; ``images`` may be uint8 (converted after the gathers).
  """
  b, c, h, w = images.shape
  ys = jnp.arange(out_h, dtype=jnp.float32) + 0.5
  xs = jnp.arange(out_w, dtype=jnp.float32) + 0.5
  m = matrix[:, :, :, None, None]  # [B, 2, 3, 1, 1]
  u = m[:, 0, 0] * xs + m[:, 0, 1] * ys[:, None] + m[:, 0, 2] - 0.5
  v = m[:, 1, 0] * xs + m[:, 1, 1] * ys[:, None] + m[:, 1, 2] - 0.5
  u0, v0 = jnp.floor(u), jnp.floor(v)
  fu, fv = (u - u0)[:, None], (v - v0)[:, None]
  u0, v0 = u0.astype(jnp.int32), v0.astype(jnp.int32)
  flat = images.reshape(b, c, h * w)

  def at(rows, cols):
    index = (jnp.clip(rows, 0, h - 1) * w + jnp.clip(cols, 0, w - 1))
    index = index.reshape(b, 1, out_h * out_w)
    values = jnp.take_along_axis(flat, index, axis=2)
    return _core.to_float(values).reshape(b, c, out_h, out_w)

  top = at(v0, u0) * (1 - fu) + at(v0, u0 + 1) * fu
  bottom = at(v0 + 1, u0) * (1 - fu) + at(v0 + 1, u0 + 1) * fu
  return top * (1 - fv) + bottom * fv


def _hue_shift(x: Array, delta: Array) -> Array:
  hsv = dm_pix.rgb_to_hsv(x, channel_axis=1)
  hsv = jnp.concatenate([(hsv[:, 0:1] + delta) % 1.0, hsv[:, 1:]], axis=1)
  return jnp.clip(dm_pix.hsv_to_rgb(hsv, channel_axis=1), 0.0, 1.0)


def _color_jitter(x: Array, u: Array, strength: float) -> Array:
  """Brightness, contrast, saturation, hue in a random order per example.

  ``u``: ``[B, 8]`` uniforms (4 factors, 4 for the order).
  """
  spread = 0.8 * strength
  lo = max(0.0, 1.0 - spread)
  factor = lambda v: _per_example(lo + (1.0 + spread - lo) * v)
  brightness, contrast, saturation = (factor(u[:, i]) for i in range(3))
  hue = _per_example(min(0.5, 0.2 * strength) * (2.0 * u[:, 3] - 1.0))
  order = jnp.argsort(u[:, 4:8], axis=1)
  rgb = x.shape[1] == 3
  for slot in range(4):
    which = _per_example(order[:, slot])
    bright = jnp.clip(x * brightness, 0.0, 1.0)
    mean = jnp.mean(_gray(x), axis=(1, 2, 3), keepdims=True)
    contrasted = _core.blend(mean, x, contrast)
    if rgb:
      saturated = _core.blend(_gray(x), x, saturation)
      hued = _hue_shift(x, hue)
    else:
      saturated = hued = x
    # Materialized: the next slot reads it from four candidates.
    x = _core.materialize(
        jnp.where(which == 0, bright,
                  jnp.where(which == 1, contrasted,
                            jnp.where(which == 2, saturated, hued))))
  return x


def _gaussian_blur(x: Array, sigma: Array) -> Array:
  """Separable Gaussian blur, per-example ``sigma`` ``[B]``, reflect padding."""
  _, _, h, w = x.shape
  radius = max(1, round(0.05 * min(h, w)))
  radius = min(radius, h - 1, w - 1)
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
  weights = weights / jnp.sum(weights, axis=1, keepdims=True)  # [B, taps]
  size = 2 * radius + 1
  padded = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)),
                   mode='reflect')
  x = _core.materialize(sum(_per_example(weights[:, i]) * padded[:, :, i:i + h]
                           for i in range(size)))
  padded = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (radius, radius)),
                   mode='reflect')
  return sum(_per_example(weights[:, i]) * padded[:, :, :, i:i + w]
             for i in range(size))


def simclr_view(key: Array, images, *, crop_size=None, strength: float = 1.0,
                blur: bool = False, flip: bool = True,
                crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                jitter_prob: float = 0.8, grayscale_prob: float = 0.2,
                blur_prob: float = 0.5, blur_sigma=(0.1, 2.0)) -> Array:
  """One SimCLR view of each image (see the module docstring for the recipe).

  Call it twice with different keys for the two views of a contrastive pair.

  Args:
    key: one PRNG key for the batch; every example gets its own draws.
    images: ``[batch, height, width, channels]``, channels 1 or 3, uint8 or
      float in [0, 1].
    crop_size: output ``(height, width)`` (or one int for a square); default
      the input size.
    strength: colour distortion strength ``s`` (paper: 1.0 ImageNet, 0.5
      CIFAR-10).
    blur: apply Gaussian blur with probability ``blur_prob``.
    flip: mirror half of the crops.
    crop_scale: range of the crop's area as a fraction of the image.
    crop_ratio: range of the crop's width / height.
    jitter_prob: probability of the colour jitter.
    grayscale_prob: probability of converting to gray.
    blur_prob: probability of the blur when ``blur``.
    blur_sigma: range of the blur's standard deviation, in output pixels.

  Returns:
    ``[batch, crop_height, crop_width, channels]`` in the input dtype.

  Example::

    >>> x = jnp.zeros((256, 32, 32, 3), jnp.uint8)
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> v1 = simclr_view(k1, x, strength=0.5)
    >>> v2 = simclr_view(k2, x, strength=0.5)
  """
  images = _core.check_images(images)
  b, h, w, c = images.shape
  out_h, out_w = _check_crop_size(crop_size, h, w)
  if isinstance(strength, bool) or not isinstance(
      strength, (int, float)) or strength < 0:
    raise ValueError(f'`strength` must be a number >= 0; got {strength!r}.')
  scale = _check_pair(crop_scale, 'crop_scale', low=0.0, high=1.0)
  ratio = _check_pair(crop_ratio, 'crop_ratio', low=0.0, high=None)
  sigma_range = _check_pair(blur_sigma, 'blur_sigma', low=0.0, high=None)
  jitter_prob = _core.check_fraction(jitter_prob, 'jitter_prob')
  grayscale_prob = _core.check_fraction(grayscale_prob, 'grayscale_prob')
  blur_prob = _core.check_fraction(blur_prob, 'blur_prob')
  for name, value in (('blur', blur), ('flip', flip)):
    if not isinstance(value, bool):
      raise ValueError(f'`{name}` must be a bool; got {value!r}.')

  u = _core.uniforms(key, b, 4 * _CROP_TRIES + 14)
  crop_u = u[:, :4 * _CROP_TRIES].reshape(b, _CROP_TRIES, 4)
  extra = u[:, 4 * _CROP_TRIES:]

  # 1. Crop, resize and flip: one bilinear resampling per example.
  top, left, box_h, box_w = _crop_boxes(crop_u, h, w, scale, ratio)
  sx, sy = box_w / out_w, box_h / out_h
  mirrored = (extra[:, 0] < 0.5) if flip else jnp.zeros((b,), bool)
  zero = jnp.zeros_like(sx)
  matrix = jnp.stack([
      jnp.stack([jnp.where(mirrored, -sx, sx), zero,
                 jnp.where(mirrored, left + box_w, left)], axis=-1),
      jnp.stack([zero, sy, top], axis=-1),
  ], axis=1)
  x = _core.materialize(
      _resized_crops(images.transpose(0, 3, 1, 2), matrix, out_h, out_w))

  # 2. Colour jitter with probability jitter_prob.
  if strength > 0:
    jittered = _color_jitter(x, extra[:, 1:9], float(strength))
    x = jnp.where(_per_example(extra[:, 9] < jitter_prob), jittered, x)

  # 3. Grayscale.
  if c == 3:
    gray = jnp.broadcast_to(_gray(x), x.shape)
    x = jnp.where(_per_example(extra[:, 10] < grayscale_prob), gray, x)

  # 4. Blur.
  if blur:
    x = _core.materialize(x)  # read once per tap below
    sigma = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * extra[:, 11]
    blurred = _gaussian_blur(x, sigma)
    x = jnp.where(_per_example(extra[:, 12] < blur_prob), blurred, x)

  return _core.from_float(x.transpose(0, 2, 3, 1), images.dtype)
