"""Single-image reference implementations of the augmentation ops.

Every function here takes one image ``[H, W, C]`` (C in {1, 3}) as float32 in
[0, 1] and explicit op parameters (no PRNG keys), and returns the same shape.
They are written one op at a time, the straightforward way, and follow PIL's
definitions (PIL is what FixMatch, RandAugment and the PyTorch SSL libraries
call), so that:

* the fused batched pipelines in :mod:`sslx.augment.randaugment` can be tested
  against them on the same draws, and
* each op can be tested for its defining property and against PIL itself.

The lookup-table ops (AutoContrast, Equalize, Posterize, Solarize) work on
8-bit levels, as PIL does: a float image is quantized to ``round(255 x)``
for the lookup, and pixels whose level the op leaves unchanged keep their
exact value. All other ops keep float precision.

Geometric ops use PIL's affine convention (see
:func:`sslx.augment._core.affine_sample`): rotation about the image centre,
shears about the top-left corner, nearest-neighbour by default, uncovered
pixels filled with mid gray (0.5).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sslx.augment import _core

Array = jax.Array

# numpy, not jnp: importing sslx must not start a JAX backend (main sets the CPU device
# count first).
LEVELS = np.arange(256, dtype=np.int32)

# ---------------------------------------------------------------------------
# 256-entry lookup tables (int32 levels 0..255), batched over leading axes.
# ---------------------------------------------------------------------------


def posterize_table(bits: Array) -> Array:
  """Keeps the top ``bits`` bits (1..8) of each 8-bit level: ``[..., 256]``."""
  shift = (8 - jnp.asarray(bits, jnp.int32))[..., None]
  return jnp.right_shift(LEVELS, shift) << shift


def solarize_table(threshold: Array) -> Array:
  """Inverts (``255 - v``) every level ``v >= threshold``: ``[..., 256]``."""
  threshold = jnp.asarray(threshold, jnp.float32)[..., None]
  return jnp.where(LEVELS >= threshold, 255 - LEVELS, LEVELS)


def autocontrast_table(lo: Array, hi: Array) -> Array:
  """PIL ``ImageOps.autocontrast`` (cutoff 0) for one channel's min/max levels.

  ``v -> floor((v - lo) * 255 / (hi - lo))`` clipped to 0..255; the identity
  when the channel is flat (``hi <= lo``). Shapes: ``lo``, ``hi`` ``[...]`` ->
  ``[..., 256]``.
  """
  lo = jnp.asarray(lo, jnp.int32)[..., None]
  hi = jnp.asarray(hi, jnp.int32)[..., None]
  scale = 255.0 / jnp.maximum(hi - lo, 1).astype(jnp.float32)
  # The exact value is a multiple of 1 / (hi - lo) >= 1 / 255 away from the
  # next integer unless it is one; +1e-3 absorbs float32 rounding only.
  stretched = jnp.floor((LEVELS - lo).astype(jnp.float32) * scale + 1e-3)
  stretched = jnp.clip(stretched, 0, 255).astype(jnp.int32)
  return jnp.where(hi > lo, stretched, LEVELS)


def equalize_table(histogram: Array) -> Array:
  """PIL ``ImageOps.equalize`` from a 256-bin histogram ``[..., 256]``.

  With ``step = (n - h[last]) // 255`` (``n`` pixels, ``h[last]`` the count of
  the highest level present), level ``v`` maps to
  ``(step // 2 + sum(h[:v])) // step``; the identity when ``step == 0`` (one
  level, or too few pixels to spread).
  """
  histogram = jnp.asarray(histogram, jnp.int32)
  total = histogram.sum(-1, keepdims=True)
  last = 255 - jnp.argmax(histogram[..., ::-1] > 0, axis=-1)[..., None]
  last_count = jnp.take_along_axis(histogram, last, axis=-1)
  step = (total - last_count) // 255
  below = jnp.cumsum(histogram, axis=-1) - histogram
  table = jnp.clip((step // 2 + below) // jnp.maximum(step, 1), 0, 255)
  return jnp.where(step > 0, table, LEVELS)


def histogram(levels: Array) -> Array:
  """Per-channel 256-bin histogram of an int image ``[H, W, C]``: ``[C, 256]``."""
  c = levels.shape[-1]
  index = levels.reshape(-1, c) + 256 * jnp.arange(c, dtype=jnp.int32)
  counts = jnp.zeros(256 * c, jnp.int32).at[index.reshape(-1)].add(1)
  return counts.reshape(c, 256)


def apply_table(image: Array, table: Array) -> Array:
  """Looks up each channel of a float image in its ``[C, 256]`` table.

  A pixel whose 8-bit level the table leaves unchanged keeps its exact input
  value, so an identity table is an exact identity on float images too.
  """
  levels = _core.quantize(image)
  c = image.shape[-1]
  flat = table.reshape(-1)
  out = jnp.take(flat, levels + 256 * jnp.arange(c, dtype=jnp.int32))
  return jnp.where(out == levels, image, out.astype(jnp.float32) / 255.0)


# ---------------------------------------------------------------------------
# Inverse affine matrices ([..., 2, 3], output pixel centre -> input point)
# ---------------------------------------------------------------------------


def _affine(a, b, c, d, e, f) -> Array:
  row0 = jnp.stack(jnp.broadcast_arrays(a, b, c), axis=-1)
  row1 = jnp.stack(jnp.broadcast_arrays(d, e, f), axis=-1)
  return jnp.stack([row0, row1], axis=-2).astype(jnp.float32)


def identity_matrix(shape=()) -> Array:
  one = jnp.ones(shape, jnp.float32)
  zero = jnp.zeros(shape, jnp.float32)
  return _affine(one, zero, zero, zero, one, zero)


def rotate_matrix(degrees: Array, height: int, width: int) -> Array:
  """Counter-clockwise rotation by ``degrees`` about the centre (PIL ``rotate``)."""
  theta = jnp.asarray(degrees, jnp.float32) * (math.pi / 180.0)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  cx, cy = width / 2.0, height / 2.0
  return _affine(cos, -sin, cx - cos * cx + sin * cy,
                 sin, cos, cy - sin * cx - cos * cy)


def shear_x_matrix(shear: Array) -> Array:
  """PIL ``transform(AFFINE, (1, shear, 0, 0, 1, 0))``: ``x_in = x + shear * y``."""
  shear = jnp.asarray(shear, jnp.float32)
  one, zero = jnp.ones_like(shear), jnp.zeros_like(shear)
  return _affine(one, shear, zero, zero, one, zero)


def shear_y_matrix(shear: Array) -> Array:
  """PIL ``transform(AFFINE, (1, 0, 0, shear, 1, 0))``: ``y_in = y + shear * x``."""
  shear = jnp.asarray(shear, jnp.float32)
  one, zero = jnp.ones_like(shear), jnp.zeros_like(shear)
  return _affine(one, zero, zero, shear, one, zero)


def translate_matrix(dx: Array, dy: Array) -> Array:
  """Moves content right by ``dx`` and down by ``dy`` pixels."""
  dx = jnp.asarray(dx, jnp.float32)
  dy = jnp.asarray(dy, jnp.float32)
  one, zero = jnp.ones_like(dx), jnp.zeros_like(dx)
  return _affine(one, zero, -dx, zero, one, -dy)


# ---------------------------------------------------------------------------
# The ops
# ---------------------------------------------------------------------------


def identity(image: Array) -> Array:
  """Returns the image unchanged."""
  return image


def hflip(image: Array) -> Array:
  """Mirrors left-right."""
  return image[:, ::-1, :]


def autocontrast(image: Array) -> Array:
  """Stretches each channel so its darkest level becomes 0 and brightest 255."""
  levels = _core.quantize(image)
  lo = levels.min(axis=(0, 1))
  hi = levels.max(axis=(0, 1))
  return apply_table(image, autocontrast_table(lo, hi))


def equalize(image: Array) -> Array:
  """Histogram-equalizes each channel (PIL ``ImageOps.equalize``)."""
  levels = _core.quantize(image)
  return apply_table(image, equalize_table(histogram(levels)))


def posterize(image: Array, bits) -> Array:
  """Keeps the ``bits`` most significant bits (1..8) of each 8-bit level."""
  c = image.shape[-1]
  table = jnp.broadcast_to(posterize_table(bits), (c, 256))
  return apply_table(image, table)


def solarize(image: Array, threshold) -> Array:
  """Inverts every 8-bit level ``>= threshold`` (0..256; 256 is the identity)."""
  c = image.shape[-1]
  table = jnp.broadcast_to(solarize_table(threshold), (c, 256))
  return apply_table(image, table)


def brightness(image: Array, factor) -> Array:
  """Blends with black: 0 is black, 1 the image, > 1 brighter."""
  return _core.blend(jnp.zeros_like(image), image, factor)


def color(image: Array, factor) -> Array:
  """Blends with the image's gray version: 0 is gray, 1 the image, > 1 more
  saturated. The identity for 1-channel images."""
  if image.shape[-1] == 1:
    return image
  return _core.blend(_core.luma(image), image, factor)


def contrast(image: Array, factor) -> Array:
  """Blends with a flat image at the mean gray level: 0 is flat, 1 the image."""
  mean = jnp.mean(_core.luma(image))
  return _core.blend(mean, image, factor)


def sharpness(image: Array, factor) -> Array:
  """Blends with a smoothed copy: 0 is smoothed, 1 the image, > 1 sharper."""
  return _core.blend(_core.smooth(image), image, factor)


def rotate(image: Array, degrees, *, interpolation: str = 'nearest',
           fill: float = _core.FILL_VALUE) -> Array:
  """Rotates counter-clockwise by ``degrees`` about the image centre."""
  h, w, _ = image.shape
  return _core.affine_sample(image, rotate_matrix(degrees, h, w),
                             interpolation=interpolation, fill=fill)


def shear_x(image: Array, shear, *, interpolation: str = 'nearest',
            fill: float = _core.FILL_VALUE) -> Array:
  """Shears horizontally: output ``(x, y)`` reads input ``(x + shear * y, y)``."""
  return _core.affine_sample(image, shear_x_matrix(shear),
                             interpolation=interpolation, fill=fill)


def shear_y(image: Array, shear, *, interpolation: str = 'nearest',
            fill: float = _core.FILL_VALUE) -> Array:
  """Shears vertically: output ``(x, y)`` reads input ``(x, y + shear * x)``."""
  return _core.affine_sample(image, shear_y_matrix(shear),
                             interpolation=interpolation, fill=fill)


def translate_x(image: Array, pixels, *, interpolation: str = 'nearest',
                fill: float = _core.FILL_VALUE) -> Array:
  """Moves the content right by ``pixels`` (left if negative)."""
  return _core.affine_sample(image, translate_matrix(pixels, 0.0),
                             interpolation=interpolation, fill=fill)


def translate_y(image: Array, pixels, *, interpolation: str = 'nearest',
                fill: float = _core.FILL_VALUE) -> Array:
  """Moves the content down by ``pixels`` (up if negative)."""
  return _core.affine_sample(image, translate_matrix(0.0, pixels),
                             interpolation=interpolation, fill=fill)


def cutout(image: Array, center, size: int,
           fill: float = _core.FILL_VALUE) -> Array:
  """Fills a ``size x size`` square centred at ``center = (row, col)`` with gray.

  As in FixMatch's ``cutout_numpy``: rows ``[row - size // 2, row + size // 2)``
  and the same for columns, clipped to the image.
  """
  h, w, _ = image.shape
  half = size // 2
  row, col = center[0], center[1]
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = ((rows >= row - half) & (rows < row + half) &
            (cols >= col - half) & (cols < col + half))
  return jnp.where(inside[..., None], jnp.float32(fill), image)


def translate_reflect(image: Array, dy, dx) -> Array:
  """Shifts content by ``(dy, dx)`` integer pixels, reflecting at the border.

  The same as padding by ``|d|`` with ``numpy.pad(mode='reflect')`` (edge not
  repeated; TF's REFLECT) and cropping back, which is FixMatch's weak
  translation. Requires ``|dy| < H`` and ``|dx| < W``.
  """
  h, w, _ = image.shape
  rows = reflect_index(jnp.arange(h) - dy, h)
  cols = reflect_index(jnp.arange(w) - dx, w)
  return image[rows][:, cols]


def reflect_index(index: Array, size: int) -> Array:
  """Maps indices in ``(-size, 2 size - 1)`` into ``[0, size)`` by reflection."""
  index = jnp.abs(index)
  return jnp.where(index > size - 1, 2 * (size - 1) - index, index)
