"""FixMatch's weak augmentation: random horizontal flip and reflect-padded shift."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.augment import _core
from sslx.augment import ops

Array = jax.Array


def shift_pixels(translate: float, size: int) -> int:
  """Largest shift, in pixels, for a ``translate`` fraction of ``size``."""
  return int(round(translate * size))


def weak(key: Array, images, *, flip: bool = True,
         translate: float = 0.125) -> Array:
  """FixMatch's weak view: flip left-right with p = 0.5, then shift.

  The shift is uniform on ``{-p, ..., p}`` pixels on each axis, independently,
  with ``p = round(translate * side)`` (4 px on CIFAR's 32, 12 on STL-10's 96,
  1 on the 8 px sklearn digits), and the uncovered border is filled by
  reflection without repeating the edge pixel: FixMatch's ``augment_shift``
  (``tf.pad(mode='REFLECT')`` then a random crop back to size). SVHN and digits
  use ``flip=False``.

  Flip and shift are one index map, so the whole view is a single gather in the
  input dtype: values are moved, never recomputed, and uint8 stays exact.

  Args:
    key: one PRNG key for the batch; every example gets its own draws.
    images: ``[batch, height, width, channels]``, channels 1 or 3, uint8 or
      float in [0, 1].
    flip: whether to mirror half of the images.
    translate: largest shift as a fraction of each side, in [0, 0.5).

  Returns:
    Images of the same shape and dtype.

  Example::

    >>> x = jnp.zeros((64, 32, 32, 3), jnp.uint8)
    >>> weak(jax.random.key(0), x).shape
    (64, 32, 32, 3)
  """
  images = _core.check_images(images)
  translate = _core.check_fraction(translate, 'translate', high=0.5,
                                   high_inclusive=False)
  if not isinstance(flip, bool):
    raise ValueError(f'`flip` must be a bool; got {flip!r}.')
  b, h, w, c = images.shape
  pad_h, pad_w = shift_pixels(translate, h), shift_pixels(translate, w)
  if pad_h >= h or pad_w >= w:
    raise ValueError(
        f'`translate`={translate} asks for shifts of ({pad_h}, {pad_w}) px, '
        f'but reflection needs less than the image size {(h, w)}.')
  u = _core.uniforms(key, b, 3)
  dy = _core.uniform_int(u[:, 0], 2 * pad_h + 1) - pad_h
  dx = _core.uniform_int(u[:, 1], 2 * pad_w + 1) - pad_w
  rows = ops.reflect_index(jnp.arange(h)[None, :] - dy[:, None], h)  # [B, H]
  cols = ops.reflect_index(jnp.arange(w)[None, :] - dx[:, None], w)  # [B, W]
  if flip:
    mirrored = u[:, 2] < 0.5
    cols = jnp.where(mirrored[:, None], w - 1 - cols, cols)
  index = rows[:, :, None] * w + cols[:, None, :]  # [B, H, W]
  flat = images.reshape(b, h * w, c)
  out = jnp.take_along_axis(flat, index.reshape(b, h * w, 1), axis=1)
  return out.reshape(b, h, w, c)
