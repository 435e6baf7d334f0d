"""FixMatch's RandAugment (random magnitudes, then Cutout), fused for batches.

What is drawn, per example, following the official FixMatch code
(``google-research/fixmatch``: ``libml/augment.py``, class ``AugmentPoolRAMC``,
the ``rac`` strong augmentation, with the ops of
``third_party/auto_augment/augmentations.py``):

* ``num_ops`` = 2 ops, uniformly and with replacement, from the 14 of
  :data:`RANDAUGMENT_OPS`; each is applied with probability ``op_prob`` = 0.5
  (the code's policy probability; USB applies every op, ``op_prob=1``).
* a level ``l ~ U[0, 1)`` per op (the code draws ``randint(1, 10) / 10``; we
  use the continuous version of that range), and a random sign for the
  symmetric ops, mapped to the code's magnitudes:

  ============  =========================================  ==================
  op            parameter                                   range
  ============  =========================================  ==================
  AutoContrast  none                                        --
  Equalize      none                                        --
  Identity      none                                        --
  Posterize     bits kept, ``4 - floor(4 l)``               {4, 3, 2, 1}
  Solarize      threshold, ``256 (1 - l)``                   (0, 256] levels
  Brightness    enhance factor ``0.1 + 1.8 l``               [0.1, 1.9]
  Color         enhance factor ``0.1 + 1.8 l``               [0.1, 1.9]
  Contrast      enhance factor ``0.1 + 1.8 l``               [0.1, 1.9]
  Sharpness     enhance factor ``0.1 + 1.8 l``               [0.1, 1.9]
  Rotate        ``+-30 l`` degrees                          [-30, 30]
  ShearX/Y      ``+-0.3 l``                                 [-0.3, 0.3]
  TranslateX/Y  ``+-0.3 l`` of the image side               [-30%, 30%]
  ============  =========================================  ==================

  The code translates by ``level`` whole pixels (up to 9 of CIFAR's 32, i.e.
  28%); a fraction of the side carries that to 8 px digits and 96 px STL-10.
  USB (``semilearn/datasets/augmentation/randaugment.py``) uses the same 14
  ops with other ranges (enhance factors in [0.05, 0.95], Posterize 4..8
  bits, every op applied, a Cutout side drawn in [0, 0.5]); we follow the
  FixMatch code, which produced the paper's numbers.
* Cutout after the ops: a square of side ``cutout * min(H, W)`` (FixMatch:
  16 px on 32 px images, ``cutout=0.5``) centred on a uniformly drawn pixel,
  clipped at the border, filled with mid gray (FixMatch zeroes its [-1, 1]
  images, which is gray).
* Geometric ops rotate about the centre and shear about the top-left corner
  (PIL's convention, as in the code), use nearest-neighbour sampling (PIL's
  default there) and fill uncovered pixels with gray.

How it is computed. A ``vmap`` over ``lax.switch`` runs all 14 ops on every
example and keeps one: :func:`randaugment_reference` does exactly that, and is
the test oracle. The fused pipeline, :func:`randaugment_from_draws`, uses that
the ops fall into families that each cost one batched pass whatever op of the
family was drawn:

* Equalize: a per-example, per-channel histogram and 256-entry table;
* AutoContrast, Posterize, Solarize: per-pixel closed forms of their 8-bit
  tables (one per-example, per-channel pair of levels, or one parameter);
* blends with a degenerate image (Brightness: black, Color: gray, Contrast:
  mean gray, Sharpness: smoothed): one factor per example;
* geometric (Rotate, ShearX/Y, TranslateX/Y): one inverse affine matrix per
  example and one resampling gather.

In each of the ``num_ops`` rounds every family pass gathers only the examples
that drew it, up to a capacity of the expected count plus 4.5 standard
deviations, transforms them and scatters them back; a ``while_loop`` takes
further chunks in the rare batch where more drew it, so the result is exact
for any draw, and a family nobody drew costs nothing. An example is in at
most one family per round, so the sequential semantics of the draws are
kept. With ``op_prob=0.5`` a round touches about half of the batch once,
instead of evaluating 14 ops on all of it. Images are planar (``[B, C, H,
W]``) inside, so rows are the vectorized axis on CPU. On GPU and TPU each
family instead runs over the whole batch under a mask: no host round trip for
the loop, and a sharded batch stays on its devices.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sslx.augment import _core
from sslx.augment import ops
from sslx.augment.weak import weak

Array = jax.Array

RANDAUGMENT_OPS: tuple[str, ...] = (
    'Identity',
    # lookup-table family
    'AutoContrast', 'Equalize', 'Posterize', 'Solarize',
    # blend family
    'Brightness', 'Color', 'Contrast', 'Sharpness',
    # geometric family
    'Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
)
_OP = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
_DRAWS_PER_OP = 4  # op, applied, level, sign


class RandAugmentDraws(NamedTuple):
  """Everything random about a RandAugment batch (shapes for ``num_ops`` N).

  Attributes:
    op: ``[B, N]`` int32 index into :data:`RANDAUGMENT_OPS`.
    applied: ``[B, N]`` bool, whether round ``n`` applies its op.
    level: ``[B, N]`` float32 in [0, 1), the op's magnitude level.
    sign: ``[B, N]`` float32 in {-1, +1}, for Rotate/Shear/Translate.
    cutout_center: ``[B, 2]`` int32 (row, col) of the Cutout square.
  """
  op: Array
  applied: Array
  level: Array
  sign: Array
  cutout_center: Array


# ---------------------------------------------------------------------------
# Magnitudes
# ---------------------------------------------------------------------------


def posterize_bits(level: Array) -> Array:
  return jnp.clip(4 - jnp.floor(4.0 * level), 1, 4).astype(jnp.int32)


def solarize_threshold(level: Array) -> Array:
  return 256.0 * (1.0 - level)


def enhance_factor(level: Array) -> Array:
  return 0.1 + 1.8 * level


def rotate_degrees(level: Array, sign: Array) -> Array:
  return 30.0 * level * sign


def shear_amount(level: Array, sign: Array) -> Array:
  return 0.3 * level * sign


def translate_fraction(level: Array, sign: Array) -> Array:
  return 0.3 * level * sign


def cutout_size(cutout: float, height: int, width: int) -> int:
  """Cutout side in pixels for a fraction ``cutout`` of the shorter side."""
  return int(cutout * min(height, width))


# ---------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------


def draw_randaugment(key: Array, batch_size: int, height: int, width: int, *,
                     num_ops: int = 2, op_prob: float = 0.5
                     ) -> RandAugmentDraws:
  """Draws the ops, levels, signs and Cutout centres for a batch.

  All ``4 * num_ops + 2`` numbers an example needs come from one
  ``[batch_size, 4 * num_ops + 2]`` uniform draw.
  """
  u = _core.uniforms(key, batch_size, _DRAWS_PER_OP * num_ops + 2)
  per_op = u[:, :_DRAWS_PER_OP * num_ops].reshape(batch_size, num_ops,
                                                  _DRAWS_PER_OP)
  return RandAugmentDraws(
      op=_core.uniform_int(per_op[..., 0], len(RANDAUGMENT_OPS)),
      applied=per_op[..., 1] < op_prob,
      level=per_op[..., 2],
      sign=jnp.where(per_op[..., 3] < 0.5, -1.0, 1.0).astype(jnp.float32),
      cutout_center=jnp.stack([
          _core.uniform_int(u[:, -2], height),
          _core.uniform_int(u[:, -1], width),
      ], axis=-1))


def _check_draws(draws: RandAugmentDraws, batch_size: int) -> int:
  if not isinstance(draws, RandAugmentDraws):
    raise ValueError(
        f'`draws` must be a RandAugmentDraws; got {type(draws).__name__}.')
  if draws.op.ndim != 2 or draws.op.shape[0] != batch_size:
    raise ValueError(
        f'`draws.op` must have shape [batch={batch_size}, num_ops]; got '
        f'{tuple(draws.op.shape)}.')
  return draws.op.shape[1]


def _check_options(num_ops, op_prob, cutout, interpolation):
  if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
    raise ValueError(f'`num_ops` must be an int >= 0; got {num_ops!r}.')
  op_prob = _core.check_fraction(op_prob, 'op_prob')
  cutout = _core.check_fraction(cutout, 'cutout')
  _core.check_interpolation(interpolation)
  return op_prob, cutout


# ---------------------------------------------------------------------------
# Reference: one op at a time, vmap over lax.switch
# ---------------------------------------------------------------------------


def _op_branches(height: int, width: int, interpolation: str):
  geo = dict(interpolation=interpolation)
  return [
      lambda x, l, s: ops.identity(x),
      lambda x, l, s: ops.autocontrast(x),
      lambda x, l, s: ops.equalize(x),
      lambda x, l, s: ops.posterize(x, posterize_bits(l)),
      lambda x, l, s: ops.solarize(x, solarize_threshold(l)),
      lambda x, l, s: ops.brightness(x, enhance_factor(l)),
      lambda x, l, s: ops.color(x, enhance_factor(l)),
      lambda x, l, s: ops.contrast(x, enhance_factor(l)),
      lambda x, l, s: ops.sharpness(x, enhance_factor(l)),
      lambda x, l, s: ops.rotate(x, rotate_degrees(l, s), **geo),
      lambda x, l, s: ops.shear_x(x, shear_amount(l, s), **geo),
      lambda x, l, s: ops.shear_y(x, shear_amount(l, s), **geo),
      lambda x, l, s: ops.translate_x(
          x, translate_fraction(l, s) * width, **geo),
      lambda x, l, s: ops.translate_y(
          x, translate_fraction(l, s) * height, **geo),
  ]


def randaugment_reference(images, draws: RandAugmentDraws, *,
                          cutout: float = 0.5,
                          interpolation: str = 'nearest') -> Array:
  """Applies ``draws`` one op at a time (``vmap`` over ``lax.switch``).

  The straightforward implementation, built from :mod:`sslx.augment.ops`:
  every example evaluates all 14 branches and keeps one. It is the oracle the
  fused :func:`randaugment_from_draws` is tested against, and the "unfused"
  baseline in ``scripts/bench_augment.py``.

  Args:
    images: ``[B, H, W, C]`` uint8 or float in [0, 1].
    draws: from :func:`draw_randaugment`.
    cutout: Cutout side as a fraction of ``min(H, W)``; 0 disables it.
    interpolation: ``'nearest'`` or ``'bilinear'`` for the geometric ops.

  Returns:
    Images of the same shape and dtype.
  """
  images = _core.check_images(images)
  b, h, w, _ = images.shape
  num_ops = _check_draws(draws, b)
  _, cutout = _check_options(num_ops, 0.0, cutout, interpolation)
  size = cutout_size(cutout, h, w)
  branches = _op_branches(h, w, interpolation)

  def one(image, op, applied, level, sign, center):
    def one_round(image, params):
      index, level, sign = params
      return jax.lax.switch(index, branches, image, level, sign), None

    index = jnp.where(applied, op, _OP['Identity'])
    image, _ = jax.lax.scan(one_round, image, (index, level, sign))
    if size >= 2:
      image = ops.cutout(image, center, size)
    return image

  out = jax.vmap(one)(_core.to_float(images), *draws)
  return _core.from_float(out, images.dtype)


# ---------------------------------------------------------------------------
# Fused: one pass per op family per round, over the examples that drew it
# ---------------------------------------------------------------------------
#
# Internally images are planar, [B, C, H, W] float32: the innermost axis is
# then a whole row, which XLA:CPU vectorizes (with channels last it is 3).


def _per_example(values: Array) -> Array:
  return values[:, None, None, None]


def _equalize_family(x: Array, op: Array, level: Array, sign: Array) -> Array:
  del op, level, sign
  k, c, h, w = x.shape
  levels = _core.quantize(x)
  offset = 256 * (jnp.arange(c, dtype=jnp.int32)[None, :, None, None] +
                  c * jnp.arange(k, dtype=jnp.int32)[:, None, None, None])
  index = levels + offset
  counts = jnp.zeros(k * c * 256, jnp.int32).at[index.reshape(-1)].add(1)
  tables = ops.equalize_table(counts.reshape(k, c, 256))
  out = jnp.take(tables.reshape(-1), index)
  return jnp.where(out == levels, x, out.astype(jnp.float32) / 255.0)


def _pointwise_family(x: Array, op: Array, level: Array,
                      sign: Array) -> Array:
  """AutoContrast, Posterize, Solarize in closed form on 8-bit levels.

  The same values as the tables in :mod:`sslx.augment.ops`, computed per pixel
  in float32 (exact on integer levels).
  """
  del sign
  levels = jnp.clip(jnp.round(x * 255.0), 0.0, 255.0)
  int_levels = levels.astype(jnp.int32)
  lo = int_levels.min(axis=(2, 3), keepdims=True).astype(jnp.float32)
  hi = int_levels.max(axis=(2, 3), keepdims=True).astype(jnp.float32)
  scale = 255.0 / jnp.maximum(hi - lo, 1.0)
  autocontrast = jnp.where(
      hi > lo, jnp.clip(jnp.floor((levels - lo) * scale + 1e-3), 0.0, 255.0),
      levels)
  step = _per_example(
      jnp.exp2(8.0 - posterize_bits(level).astype(jnp.float32)))
  posterized = jnp.floor(levels / step) * step
  solarized = jnp.where(levels >= _per_example(solarize_threshold(level)),
                        255.0 - levels, levels)
  out = jnp.where(_per_example(op == _OP['AutoContrast']), autocontrast,
                  jnp.where(_per_example(op == _OP['Posterize']), posterized,
                            solarized))
  # As ops.apply_table: unchanged levels keep their exact float value.
  return jnp.where(out == levels, x, out / 255.0)


def _planar_smooth(x: Array) -> Array:
  """:func:`sslx.augment._core.smooth` for ``[..., H, W]`` planes."""
  return _core.smooth(x[..., None])[..., 0]


def _blend_family(x: Array, op: Array, level: Array, sign: Array) -> Array:
  del sign
  if x.shape[1] == 1:
    gray = x
  else:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    weights = _core.LUMA_WEIGHTS
    gray = weights[0] * r + weights[1] * g + weights[2] * b
  mean = jnp.mean(gray, axis=(1, 2, 3), keepdims=True)
  degenerate = jnp.where(
      _per_example(op == _OP['Brightness']), 0.0,
      jnp.where(_per_example(op == _OP['Color']), gray,
                jnp.where(_per_example(op == _OP['Contrast']), mean,
                          _planar_smooth(x))))
  blended = _core.blend(degenerate, x, _per_example(enhance_factor(level)))
  if x.shape[1] == 1:  # Color is the identity on gray images, exactly
    blended = jnp.where(_per_example(op == _OP['Color']), x, blended)
  return blended


def _geometric_matrices(op: Array, level: Array, sign: Array, height: int,
                        width: int) -> Array:
  shear = shear_amount(level, sign)
  move = translate_fraction(level, sign)
  zero = jnp.zeros_like(move)
  candidates = [
      (_OP['Rotate'],
       ops.rotate_matrix(rotate_degrees(level, sign), height, width)),
      (_OP['ShearX'], ops.shear_x_matrix(shear)),
      (_OP['ShearY'], ops.shear_y_matrix(shear)),
      (_OP['TranslateX'], ops.translate_matrix(move * width, zero)),
      (_OP['TranslateY'], ops.translate_matrix(zero, move * height)),
  ]
  matrix = ops.identity_matrix(op.shape)
  for index, candidate in candidates:
    matrix = jnp.where((op == index)[:, None, None], candidate, matrix)
  return matrix


def _geometric_family(x: Array, op: Array, level: Array, sign: Array, *,
                      interpolation: str) -> Array:
  _, _, h, w = x.shape
  matrix = _geometric_matrices(op, level, sign, h, w)
  sample = functools.partial(_core.affine_sample, interpolation=interpolation)
  # affine_sample is channels-last; one example's planes are its channels.
  moved = jax.vmap(lambda planes, m: sample(planes.transpose(1, 2, 0), m))(
      x, matrix)
  return moved.transpose(0, 3, 1, 2)


_FAMILIES = (
    # (members, function)
    ((_OP['Equalize'],), _equalize_family),
    ((_OP['AutoContrast'], _OP['Posterize'], _OP['Solarize']),
     _pointwise_family),
    ((_OP['Brightness'], _OP['Color'], _OP['Contrast'], _OP['Sharpness']),
     _blend_family),
    ((_OP['Rotate'], _OP['ShearX'], _OP['ShearY'], _OP['TranslateX'],
      _OP['TranslateY']), _geometric_family),
)


def _compact_families() -> bool:
  """Whether family passes gather their examples (CPU) or mask the batch.

  On CPU the gather saves most of the work. On GPU a ``while_loop`` or
  ``cond`` waits for the host each time, and on any accelerator a gather by
  global index would pull a sharded batch across devices; there a masked
  pass over the (local) batch costs well under a millisecond anyway.
  """
  return jax.default_backend() == 'cpu'


def family_capacity(batch_size: int, probability: float) -> int:
  """Examples one family pass makes room for: the mean count plus 4.5 sd.

  ``probability`` is the chance that an example's round lands in the family.
  A batch with more selected examples takes a second chunk (about once in
  300k family passes); one with none skips the family.
  """
  mean = batch_size * probability
  sd = math.sqrt(batch_size * probability * (1.0 - probability))
  return min(batch_size, int(math.ceil(mean + 4.5 * sd)) + 4)


def _update_family(x: Array, selected: Array, params, fn, capacity: int
                   ) -> Array:
  """``x`` with ``fn`` applied to the examples where ``selected``.

  On CPU with ``capacity < B``, only the selected examples are gathered and transformed, ``capacity`` at a time in a ``while_loop``:
  almost always one chunk, none when no example drew the family, and as many
  as needed otherwise, so the result is exact for any draw. ``fn`` is traced
  once, at the chunk size.
  """
  b = x.shape[0]
  if capacity >= b or not _compact_families():
    return jnp.where(_per_example(selected), fn(x, *params), x)

  # Indices of the selected examples first; `b` (dropped on write) after.
  order = jnp.nonzero(selected, size=b + capacity, fill_value=b)[0]
  count = jnp.sum(selected, dtype=jnp.int32)

  def chunk(state):
    start, x = state
    index = jax.lax.dynamic_slice(order, (start,), (capacity,))
    safe = jnp.minimum(index, b - 1)
    subset = _core.materialize(jnp.take(x, safe, axis=0))
    subset_params = [jnp.take(p, safe, axis=0) for p in params]
    x = x.at[index].set(fn(subset, *subset_params), mode='drop')
    return start + capacity, x

  _, x = jax.lax.while_loop(lambda state: state[0] < count, chunk,
                            (jnp.int32(0), x))
  return x


def _cutout_planar(x: Array, center: Array, size: int) -> Array:
  _, _, h, w = x.shape
  half = size // 2
  row = center[:, 0, None, None, None]
  col = center[:, 1, None, None, None]
  rows = jnp.arange(h)[None, None, :, None]
  cols = jnp.arange(w)[None, None, None, :]
  inside = ((rows >= row - half) & (rows < row + half) &
            (cols >= col - half) & (cols < col + half))
  return jnp.where(inside, jnp.float32(_core.FILL_VALUE), x)


def randaugment_from_draws(images, draws: RandAugmentDraws, *,
                           cutout: float = 0.5,
                           interpolation: str = 'nearest',
                           op_prob: float = 1.0) -> Array:
  """Applies ``draws`` with the fused family passes (see the module docstring).

  Same arguments and result as :func:`randaugment_reference`; each round costs
  one pass per op family over the examples that drew that family.

  Args:
    images: ``[B, H, W, C]`` uint8 or float in [0, 1].
    draws: from :func:`draw_randaugment`.
    cutout: Cutout side as a fraction of ``min(H, W)``; 0 disables it.
    interpolation: ``'nearest'`` or ``'bilinear'`` for the geometric ops.
    op_prob: the ``op_prob`` the draws were made with. Only sizes the
      per-family buffers; the result is exact whatever it is.

  Returns:
    Images of the same shape and dtype.
  """
  images = _core.check_images(images)
  b, h, w, _ = images.shape
  num_ops = _check_draws(draws, b)
  op_prob, cutout = _check_options(num_ops, op_prob, cutout, interpolation)
  x = _core.to_float(images).transpose(0, 3, 1, 2)

  def one_round(x, params):
    op = params[0]
    for members, fn in _FAMILIES:
      if fn is _geometric_family:
        fn = functools.partial(fn, interpolation=interpolation)
      selected = functools.reduce(jnp.logical_or, [op == m for m in members])
      probability = op_prob * len(members) / len(RANDAUGMENT_OPS)
      x = _update_family(x, selected, params, fn,
                         family_capacity(b, probability))
    return x, None

  # A scan, not a Python loop: the round is compiled once.
  op = jnp.where(draws.applied, draws.op, _OP['Identity'])
  x, _ = jax.lax.scan(one_round, x, (op.T, draws.level.T, draws.sign.T))
  size = cutout_size(cutout, h, w)
  if size >= 2:
    x = _cutout_planar(x, draws.cutout_center, size)
  return _core.from_float(x.transpose(0, 2, 3, 1), images.dtype)


# ---------------------------------------------------------------------------
# Public pipelines
# ---------------------------------------------------------------------------


def randaugment(key: Array, images, *, num_ops: int = 2, op_prob: float = 0.5,
                cutout: float = 0.5, interpolation: str = 'nearest') -> Array:
  """FixMatch's RandAugment with random magnitudes, then Cutout.

  For each example: ``num_ops`` ops drawn uniformly with replacement from
  :data:`RANDAUGMENT_OPS`, each applied with probability ``op_prob`` at a
  random magnitude, in sequence; then a gray Cutout square. The op set, ranges
  and the sources they were checked against are in the module docstring. This
  is the pipeline only; :func:`strong` puts the weak flip and shift first, as
  FixMatch's strong view does.

  Args:
    key: one PRNG key for the batch; every example gets its own draws.
    images: ``[batch, height, width, channels]``, channels 1 or 3, uint8 or
      float in [0, 1].
    num_ops: ops per example (FixMatch: 2).
    op_prob: probability that each drawn op is applied (FixMatch code: 0.5).
    cutout: Cutout side as a fraction of ``min(height, width)`` (FixMatch: 0.5,
      i.e. 16 px on 32 px images); 0 disables it.
    interpolation: ``'nearest'`` (PIL's default, as in FixMatch) or
      ``'bilinear'`` for Rotate/Shear/Translate.

  Returns:
    Images of the same shape and dtype.

  Example::

    >>> x = jnp.zeros((448, 32, 32, 3), jnp.uint8)
    >>> randaugment(jax.random.key(0), x).shape
    (448, 32, 32, 3)
  """
  images = _core.check_images(images)
  op_prob, cutout = _check_options(num_ops, op_prob, cutout, interpolation)
  b, h, w, _ = images.shape
  draws = draw_randaugment(key, b, h, w, num_ops=num_ops, op_prob=op_prob)
  return randaugment_from_draws(images, draws, cutout=cutout,
                                interpolation=interpolation, op_prob=op_prob)


def strong(key: Array, images, *, flip: bool = True, translate: float = 0.125,
           num_ops: int = 2, op_prob: float = 0.5, cutout: float = 0.5,
           interpolation: str = 'nearest') -> Array:
  """FixMatch's strong view: :func:`weak` then :func:`randaugment`.

  As in the FixMatch code, the RandAugment ops act on an already flipped and
  shifted image, then Cutout. The weak part here is drawn independently of any
  weak view of the same images.

  Args:
    key: one PRNG key for the batch.
    images: ``[batch, height, width, channels]`` uint8 or float in [0, 1].
    flip, translate: as in :func:`weak`.
    num_ops, op_prob, cutout, interpolation: as in :func:`randaugment`.

  Returns:
    Images of the same shape and dtype.

  Example::

    >>> k_weak, k_strong = jax.random.split(jax.random.key(0))
    >>> x = jnp.zeros((448, 32, 32, 3), jnp.uint8)
    >>> views = weak(k_weak, x), strong(k_strong, x)
  """
  weak_key, strong_key = jax.random.split(key)
  shifted = weak(weak_key, images, flip=flip, translate=translate)
  return randaugment(strong_key, shifted, num_ops=num_ops, op_prob=op_prob,
                     cutout=cutout, interpolation=interpolation)
