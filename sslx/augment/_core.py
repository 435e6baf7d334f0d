"""Shared plumbing for :mod:`sslx.augment`: validation, dtype handling, draws,
colour helpers and the affine resampler used by every geometric op."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Value written where a geometric op or Cutout uncovers pixels with no source:
# mid gray, as in FixMatch (its images live in [-1, 1] and get zeros there).
FILL_VALUE = 0.5

# ITU-R 601-2 luma, the weights PIL's ``convert('L')`` uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------
# Validation and dtype handling
# ---------------------------------------------------------------------------


def check_images(images, name: str = 'images') -> jax.Array:
  """Checks the ``[B, H, W, C]`` image convention and returns a jax array.

  uint8 images hold 0..255; floating images hold values in [0, 1]. The range of
  a float image is checked when the values are concrete (eager calls); inside
  ``jax.jit`` they are tracers and cannot be inspected without a device sync,
  so validate datasets once at load time.
  """
  if not hasattr(images, 'shape') or not hasattr(images, 'dtype'):
    images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(
        f'`{name}` must have rank 4, [batch, height, width, channels]; got '
        f'shape {tuple(images.shape)}.')
  if images.shape[-1] not in (1, 3):
    raise ValueError(
        f'`{name}` must have 1 or 3 channels (last axis); got shape '
        f'{tuple(images.shape)} with {images.shape[-1]} channels.')
  if images.shape[1] < 2 or images.shape[2] < 2:
    raise ValueError(
        f'`{name}` must be at least 2x2 pixels; got shape '
        f'{tuple(images.shape)}.')
  dtype = np.dtype(images.dtype)
  if dtype != np.uint8 and not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f'`{name}` must be uint8 (0..255) or floating point in [0, 1]; got '
        f'dtype {dtype}.')
  if jnp.issubdtype(dtype, jnp.floating) and not isinstance(
      images, jax.core.Tracer):
    values = np.asarray(images, dtype=np.float32)
    if values.size:
      lo, hi = float(values.min()), float(values.max())
      if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(
            f'floating-point `{name}` must lie in [0, 1]; got values in '
            f'[{lo}, {hi}]. Divide uint8 images by 255, or pass them as uint8.')
  return jnp.asarray(images)


def check_fraction(value, name: str, *, low: float = 0.0, high: float = 1.0,
                   high_inclusive: bool = True) -> float:
  """Checks that a Python scalar lies in ``[low, high]`` (or ``[low, high)``)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f'`{name}` must be a real number; got {value!r}.')
  value = float(value)
  ok = low <= value <= high if high_inclusive else low <= value < high
  if not ok:
    bracket = ']' if high_inclusive else ')'
    raise ValueError(
        f'`{name}` must be in [{low}, {high}{bracket}; got {value}.')
  return value


def to_float(images: Array) -> Array:
  """uint8 0..255 or float [0, 1] -> float32 in [0, 1]."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def from_float(images: Array, dtype) -> Array:
  """float32 in [0, 1] -> ``dtype`` (uint8 rounds to nearest)."""
  if dtype == jnp.uint8:
    return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)
  return images.astype(dtype)


def quantize(images: Array) -> Array:
  """float [0, 1] -> int32 levels 0..255 (exact for images that came from uint8)."""
  return jnp.clip(jnp.round(images * 255.0), 0, 255).astype(jnp.int32)


def uniforms(key: Array, batch: int, count: int) -> Array:
  """``[batch, count]`` independent U[0, 1) draws from one key.

  Each row holds every random number one example needs. A single threefry call
  for the whole batch is what keeps per-example randomness cheap; it gives the
  same distribution as splitting one key per example, without ``batch`` tiny
  generator calls.
  """
  return jax.random.uniform(key, (batch, count), dtype=jnp.float32)


def uniform_int(u: Array, n) -> Array:
  """Maps U[0, 1) draws to integers uniform on ``0 .. n - 1``."""
  return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)


# ---------------------------------------------------------------------------
# Colour helpers (single image or batch; channels last)
# ---------------------------------------------------------------------------


def luma(images: Array) -> Array:
  """Gray level ``[..., 1]`` of ``[..., C]`` images (identity when C == 1)."""
  if images.shape[-1] == 1:
    return images
  r, g, b = images[..., 0:1], images[..., 1:2], images[..., 2:3]
  return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def blend(degenerate: Array, images: Array, factor: Array) -> Array:
  """PIL ``ImageEnhance``: ``(1 - factor) * degenerate + factor * images``.

  factor 0 gives the degenerate image, 1 the input (exactly), > 1
  extrapolates; the result is clipped to [0, 1].
  """
  return jnp.clip(images * factor + degenerate * (1.0 - factor), 0.0, 1.0)


def smooth(images: Array) -> Array:
  """PIL's ``ImageFilter.SMOOTH`` on ``[..., H, W, C]``; border pixels kept.

  Kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``; this is the degenerate
  image of PIL's Sharpness enhancer.
  """
  h, w = images.shape[-3], images.shape[-2]
  if h < 3 or w < 3:
    return images
  x = images
  total = 4.0 * x[..., 1:-1, 1:-1, :]
  for dy in (0, 1, 2):
    for dx in (0, 1, 2):
      total = total + x[..., dy:dy + h - 2, dx:dx + w - 2, :]
  interior = total * (1.0 / 13.0)
  pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
  interior = jnp.pad(interior, pad)
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  border = (rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1)
  return jnp.where(border[..., None], x, interior)


def materialize(x: Array) -> Array:
  """Returns ``x``, computed into its own buffer before its consumers run.

  XLA:CPU fuses cheap elementwise chains into every consumer, including
  gathers and stencils that read each element several times, where the chain
  is then recomputed per read and unvectorized (5-10x slower here), and it
  drops ``optimization_barrier`` before fusion. A data-dependent ``lax.cond``
  whose branches both return ``x`` is a boundary it keeps. Other backends
  weigh re-reads in their fusion decisions and get ``x`` unchanged.
  """
  if jax.default_backend() != 'cpu':
    return x
  first = x.reshape(-1)[0]
  # ``first == first`` cannot be folded (NaN); the branches differ only so
  # that they are not merged, and both are the identity.
  return jax.lax.cond(first == first, lambda v: v, lambda v: -(-v), x)


# ---------------------------------------------------------------------------
# Affine resampling
# ---------------------------------------------------------------------------


def affine_sample(image: Array, matrix: Array, *, out_shape=None,
                  interpolation: str = 'nearest',
                  fill: float | None = FILL_VALUE) -> Array:
  """Resamples one image ``[H, W, C]`` through an inverse affine map.

  Pixel ``(row, col)`` of the output has its centre at ``(x, y) = (col + 0.5,
  row + 0.5)``; it takes the input value at ``matrix @ (x, y, 1)``, where input
  pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``. This is the convention of
  PIL's ``Image.transform(size, AFFINE, data)`` with ``data`` the six entries of
  ``matrix`` row by row, so ``nearest`` matches PIL's default resampling.

  Args:
    image: ``[H, W, C]`` float.
    matrix: ``[2, 3]`` inverse map (output coordinates -> input coordinates).
    out_shape: ``(height, width)`` of the output; default the input's.
    interpolation: ``'nearest'`` or ``'bilinear'``.
    fill: value for samples outside the input; ``None`` clamps to the edge.

  Returns:
    ``[out_height, out_width, C]`` float32.
  """
  h, w, c = image.shape
  oh, ow = (h, w) if out_shape is None else out_shape
  ys = jnp.arange(oh, dtype=jnp.float32) + 0.5
  xs = jnp.arange(ow, dtype=jnp.float32) + 0.5
  m = matrix.astype(jnp.float32)
  x_in = m[0, 0] * xs[None, :] + m[0, 1] * ys[:, None] + m[0, 2]
  y_in = m[1, 0] * xs[None, :] + m[1, 1] * ys[:, None] + m[1, 2]
  flat = image.reshape(h * w, c)

  def gather(rows, cols):
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = jnp.clip(rows, 0, h - 1) * w + jnp.clip(cols, 0, w - 1)
    values = jnp.take(flat, index.reshape(-1), axis=0).reshape(oh, ow, c)
    if fill is None:
      return values
    return jnp.where(valid[..., None], values, jnp.float32(fill))

  if interpolation == 'nearest':
    return gather(jnp.floor(y_in).astype(jnp.int32),
                  jnp.floor(x_in).astype(jnp.int32))
  if interpolation != 'bilinear':
    raise ValueError(
        "`interpolation` must be 'nearest' or 'bilinear'; got "
        f'{interpolation!r}.')
  u = x_in - 0.5
  v = y_in - 0.5
  c0 = jnp.floor(u)
  r0 = jnp.floor(v)
  fu = (u - c0)[..., None]
  fv = (v - r0)[..., None]
  c0 = c0.astype(jnp.int32)
  r0 = r0.astype(jnp.int32)
  top = gather(r0, c0) * (1 - fu) + gather(r0, c0 + 1) * fu
  bottom = gather(r0 + 1, c0) * (1 - fu) + gather(r0 + 1, c0 + 1) * fu
  out = top * (1 - fv) + bottom * fv
  if fill is not None:
    # A pixel whose centre maps outside the input is fill, as with 'nearest'.
    inside = (x_in >= 0) & (x_in < w) & (y_in >= 0) & (y_in < h)
    out = jnp.where(inside[..., None], out, jnp.float32(fill))
  return out


def check_interpolation(interpolation: str) -> str:
  if interpolation not in ('nearest', 'bilinear'):
    raise ValueError(
        "`interpolation` must be 'nearest' or 'bilinear'; got "
        f'{interpolation!r}.')
  return interpolation
