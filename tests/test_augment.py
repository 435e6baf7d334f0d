"""Tests for sslx.augment: op properties, PIL agreement, fused == reference,
pipelines' contracts and errors.

Compile time dominates on CPU, so every jitted function is built once at module
scope and used at small shapes (8x8x1, 16x16x3).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

from sslx.augment import _core
from sslx.augment import ops
from sslx.augment.randaugment import RANDAUGMENT_OPS
from sslx.augment.randaugment import RandAugmentDraws
from sslx.augment.randaugment import draw_randaugment
from sslx.augment.randaugment import enhance_factor
from sslx.augment.randaugment import family_capacity
from sslx.augment.randaugment import posterize_bits
from sslx.augment.randaugment import randaugment
from sslx.augment.randaugment import randaugment_from_draws
from sslx.augment.randaugment import randaugment_reference
from sslx.augment.randaugment import rotate_degrees
from sslx.augment.randaugment import solarize_threshold
from sslx.augment.randaugment import strong
from sslx.augment.randaugment import translate_fraction
from sslx.augment.simclr import _crop_boxes
from sslx.augment.simclr import simclr_view
from sslx.augment.weak import weak

OP = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
GRAY = (128, 128, 128)


def _images(shape, seed=0, dtype=np.uint8):
  """Random images with some spatial structure (a gradient plus noise)."""
  rng = np.random.default_rng(seed)
  b, h, w, c = shape
  ramp = np.linspace(0, 180, w)[None, None, :, None]
  noise = rng.integers(0, 76, shape)
  x = np.clip(ramp + noise + rng.integers(0, 40, (b, 1, 1, c)), 0, 255)
  x = x.astype(np.uint8)
  return x if dtype == np.uint8 else (x / 255.0).astype(dtype)


RGB = _images((48, 16, 16, 3))           # uint8, the main test batch
DIGITS = _images((16, 8, 8, 1), seed=1, dtype=np.float32)
ONE = RGB[0].astype(np.float32) / 255.0  # a single float image


def _u8(x):
  return np.asarray(_core.from_float(jnp.asarray(x), jnp.uint8)).astype(int)


# Jitted once per module; each (shape, dtype, static options) compiles once.
# The trace counters back the "compiles once per shape" test.
TRACES = {'strong': [], 'simclr': []}


def _counted(name, fn):
  def wrapped(key, images, **kwargs):
    TRACES[name].append((images.shape, str(images.dtype), tuple(kwargs)))
    return fn(key, images, **kwargs)
  return wrapped


jit_weak = jax.jit(weak, static_argnames=('flip', 'translate'))
jit_strong = jax.jit(_counted('strong', strong), static_argnames=('flip',))
jit_fused = jax.jit(functools.partial(randaugment_from_draws, cutout=0.5))
jit_reference = jax.jit(functools.partial(randaugment_reference, cutout=0.5))
jit_simclr = jax.jit(
    _counted('simclr', simclr_view),
    static_argnames=('crop_size', 'blur', 'flip', 'crop_scale', 'crop_ratio',
                     'jitter_prob', 'grayscale_prob'))
CUTOUT = 8  # cutout=0.5 of 16 px


def _cut(images, centers):
  """The originals with the pipelines' Cutout square (float or uint8)."""
  out = np.array(images)
  for image, (row, col) in zip(out, np.asarray(centers)):
    half = CUTOUT // 2
    image[max(0, row - half):row + half, max(0, col - half):col + half] = (
        128 if out.dtype == np.uint8 else 0.5)
  return out


# ---------------------------------------------------------------------------
# Single ops: defining properties
# ---------------------------------------------------------------------------


def test_flip_twice_is_identity():
  np.testing.assert_array_equal(ops.hflip(ops.hflip(ONE)), ONE)
  assert not np.array_equal(ops.hflip(ONE), ONE)


@pytest.mark.parametrize('op, magnitude', [
    (ops.brightness, 1.0), (ops.color, 1.0), (ops.contrast, 1.0),
    (ops.sharpness, 1.0), (ops.rotate, 0.0), (ops.shear_x, 0.0),
    (ops.shear_y, 0.0), (ops.translate_x, 0.0), (ops.translate_y, 0.0),
    (ops.posterize, 8), (ops.solarize, 256),
])
def test_neutral_magnitude_is_identity(op, magnitude):
  np.testing.assert_array_equal(op(ONE, magnitude), ONE)


def test_solarize_inverts_at_and_above_threshold():
  levels = jnp.arange(256, dtype=jnp.float32).reshape(16, 16, 1) / 255
  out = np.round(np.asarray(ops.solarize(levels, 100)) * 255).astype(int)
  v = np.arange(256).reshape(16, 16, 1)
  np.testing.assert_array_equal(out, np.where(v >= 100, 255 - v, v))


@pytest.mark.parametrize('bits', [1, 3, 4])
def test_posterize_keeps_top_bits(bits):
  levels = jnp.arange(256, dtype=jnp.float32).reshape(16, 16, 1) / 255
  out = np.round(np.asarray(ops.posterize(levels, bits)) * 255).astype(int)
  mask = (0xFF << (8 - bits)) & 0xFF
  np.testing.assert_array_equal(out, np.arange(256).reshape(16, 16, 1) & mask)


def test_equalize_flattens_histogram():
  # Levels crowded into 40..79, half of them at 40..49.
  rng = np.random.default_rng(0)
  skewed = np.concatenate([rng.integers(40, 50, 2048),
                           rng.integers(50, 80, 2048)])
  image = jnp.asarray(skewed.reshape(64, 64, 1), jnp.float32) / 255
  out = np.round(np.asarray(ops.equalize(image)) * 255).ravel()

  def cdf_gap(values):  # largest gap to a uniform CDF, at the levels present
    levels = np.unique(values)
    cdf = np.searchsorted(np.sort(values), levels, side='right') / values.size
    return np.max(np.abs(cdf - (levels + 1) / 256))

  assert out.min() == 0 and out.max() == 255
  assert cdf_gap(out) < 0.08 and cdf_gap(skewed) > 0.6


def test_autocontrast_stretches_each_channel_to_full_range():
  image = jnp.asarray(ONE * 0.5 + 0.2)
  out = _u8(ops.autocontrast(image))
  np.testing.assert_array_equal(out.min(axis=(0, 1)), [0, 0, 0])
  np.testing.assert_array_equal(out.max(axis=(0, 1)), [255, 255, 255])
  flat = jnp.full((4, 4, 3), 0.3)
  np.testing.assert_array_equal(ops.autocontrast(flat), flat)


@pytest.mark.parametrize('dx, dy', [(3, 0), (-2, 0), (0, 5), (0, -1)])
def test_translate_moves_content_by_the_asked_amount(dx, dy):
  out = np.asarray(ops.translate_y(ops.translate_x(ONE, dx), dy))
  h, w, _ = ONE.shape
  expected = np.full_like(ONE, 0.5)
  src = ONE[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
  expected[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src
  np.testing.assert_array_equal(out, expected)


def test_rotate_90_is_a_counter_clockwise_quarter_turn():
  np.testing.assert_array_equal(ops.rotate(ONE, 90.0), np.rot90(ONE))


def test_cutout_fills_a_gray_square_clipped_at_the_border():
  out = np.asarray(ops.cutout(ONE, (1, 8), 6))
  inside = np.zeros(ONE.shape[:2], bool)
  inside[0:4, 5:11] = True  # rows 1-3..1+3 clipped at 0, cols 8-3..8+3
  assert np.all(out[inside] == 0.5)
  np.testing.assert_array_equal(out[~inside], ONE[~inside])


def test_color_is_identity_on_grayscale():
  np.testing.assert_array_equal(ops.color(DIGITS[0], 0.1), DIGITS[0])


# ---------------------------------------------------------------------------
# Agreement with PIL, the implementation FixMatch and the PyTorch libraries use
# ---------------------------------------------------------------------------

_PIL_CASES = [
    ('autocontrast', lambda x: ops.autocontrast(x), ImageOps.autocontrast, 1),
    ('equalize', lambda x: ops.equalize(x), ImageOps.equalize, 0),
    ('posterize', lambda x: ops.posterize(x, 2),
     lambda p: ImageOps.posterize(p, 2), 0),
    ('solarize', lambda x: ops.solarize(x, 77),
     lambda p: ImageOps.solarize(p, 77), 0),
    ('brightness', lambda x: ops.brightness(x, 1.6),
     lambda p: ImageEnhance.Brightness(p).enhance(1.6), 1),
    ('color', lambda x: ops.color(x, 0.3),
     lambda p: ImageEnhance.Color(p).enhance(0.3), 1),
    ('contrast', lambda x: ops.contrast(x, 1.7),
     lambda p: ImageEnhance.Contrast(p).enhance(1.7), 1),
    ('sharpness', lambda x: ops.sharpness(x, 1.9),
     lambda p: ImageEnhance.Sharpness(p).enhance(1.9), 1),
    ('rotate', lambda x: ops.rotate(x, -23.0),
     lambda p: p.rotate(-23.0, fillcolor=GRAY), None),
    ('shear_x', lambda x: ops.shear_x(x, 0.27),
     lambda p: p.transform(p.size, Image.AFFINE, (1, 0.27, 0, 0, 1, 0),
                           fillcolor=GRAY), None),
    ('shear_y', lambda x: ops.shear_y(x, -0.3),
     lambda p: p.transform(p.size, Image.AFFINE, (1, 0, 0, -0.3, 1, 0),
                           fillcolor=GRAY), None),
    ('translate_x', lambda x: ops.translate_x(x, 4.3),
     lambda p: p.transform(p.size, Image.AFFINE, (1, 0, -4.3, 0, 1, 0),
                           fillcolor=GRAY), None),
]


@pytest.mark.parametrize('name, ours, pil, tolerance', _PIL_CASES,
                         ids=[c[0] for c in _PIL_CASES])
def test_op_agrees_with_pil(name, ours, pil, tolerance):
  expected = np.asarray(pil(Image.fromarray(RGB[1]))).astype(int)
  got = _u8(ours(jnp.asarray(RGB[1], jnp.float32) / 255))
  if tolerance is None:
    # Nearest-neighbour resampling: float32 here, float64 in PIL, so a sample
    # point landing within rounding of a pixel edge may pick the neighbour.
    assert np.mean(np.any(got != expected, axis=-1)) < 0.02, name
    return
  # PIL truncates blends and computes AutoContrast in floating point; we
  # round. Off-by-one levels, where allowed, must stay rare.
  assert np.abs(got - expected).max() <= tolerance, name
  assert np.mean(got != expected) < (0.7 if tolerance else 1e-9), name


# ---------------------------------------------------------------------------
# The fused RandAugment == the per-op reference, on the same draws
# ---------------------------------------------------------------------------


def _draws_for(op_index, batch, *, level=0.8, sign=1.0, applied=True,
               second_op='same', seed=0):
  """Two rounds drawing ``op_index`` (or it, then Identity)."""
  centers = np.random.default_rng(seed).integers(0, 16, (batch, 2))
  op = np.full((batch, 2), op_index)
  if second_op != 'same':
    op[:, 1] = OP[second_op]
  return RandAugmentDraws(
      op=jnp.asarray(op, jnp.int32),
      applied=jnp.full((batch, 2), applied, bool),
      level=jnp.full((batch, 2), level, jnp.float32),
      sign=jnp.full((batch, 2), sign, jnp.float32),
      cutout_center=jnp.asarray(centers, jnp.int32))


def test_fused_equals_reference_on_random_draws_uint8():
  # 48 examples at op_prob 1: every family's capacity is below the batch, so
  # the compacted path runs.
  assert all(family_capacity(48, k / 14) < 48 for k in (1, 3, 4, 5))
  draws = draw_randaugment(jax.random.key(3), 48, 16, 16, num_ops=2,
                           op_prob=1.0)
  fused = jit_fused(RGB, draws)
  _assert_same_uint8(fused, jit_reference(RGB, draws))
  assert fused.dtype == jnp.uint8 and fused.shape == RGB.shape


def _assert_same_uint8(got, expected, name=''):
  # Same math, but XLA may contract a multiply-add differently in the two
  # programs, which can move a blend result across a rounding edge.
  diff = np.abs(np.asarray(got, int) - np.asarray(expected, int))
  assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3, (name, diff.max())


def test_fused_equals_reference_for_every_op_with_a_crowded_family():
  # Every example draws the same op twice: far over the family's capacity,
  # so the extra chunks run. Each of the 14 ops is checked.
  for name, index in OP.items():
    draws = _draws_for(index, 48, level=0.7, sign=-1.0)
    _assert_same_uint8(jit_fused(RGB, draws), jit_reference(RGB, draws), name)


def test_fused_equals_reference_on_float_digits():
  draws = draw_randaugment(jax.random.key(4), 16, 8, 8, num_ops=2,
                           op_prob=1.0)
  fused = jit_fused(DIGITS, draws)
  np.testing.assert_allclose(fused, jit_reference(DIGITS, draws), atol=1e-6)
  assert fused.dtype == jnp.float32
  assert 0.0 <= float(fused.min()) and float(fused.max()) <= 1.0


def test_reference_applies_the_documented_magnitudes():
  level, sign = jnp.float32(0.8), jnp.float32(1.0)
  checks = {
      'Posterize': lambda x: ops.posterize(x, 1),  # level 0.8: 4 - 3 bits
      'Solarize': lambda x: ops.solarize(x, solarize_threshold(level)),
      'Contrast': lambda x: ops.contrast(x, enhance_factor(level)),
      'Rotate': lambda x: ops.rotate(x, rotate_degrees(level, sign)),
      'TranslateY': lambda x: ops.translate_y(
          x, translate_fraction(level, sign) * 16),
  }
  for name, single in checks.items():
    draws = _draws_for(OP[name], 48, second_op='Identity')
    expected = [_u8(single(jnp.asarray(x, jnp.float32) / 255)) for x in RGB[:2]]
    got = np.asarray(jit_reference(RGB, draws))[:2]
    np.testing.assert_array_equal(
        got, _cut(np.asarray(expected, np.uint8), draws.cutout_center[:2]),
        err_msg=name)
    assert abs(posterize_bits(jnp.float32(0.99)) - 1) == 0
    assert abs(posterize_bits(jnp.float32(0.0)) - 4) == 0


def test_ops_not_applied_and_identity_leave_images_unchanged_but_cutout():
  for draws in (_draws_for(OP['Identity'], 48),
                _draws_for(OP['Rotate'], 48, applied=False)):
    np.testing.assert_array_equal(jit_fused(RGB, draws),
                                  _cut(RGB, draws.cutout_center))


# ---------------------------------------------------------------------------
# Pipelines: contracts
# ---------------------------------------------------------------------------


def _weak_candidates(image, pad, flip):
  out = []
  for mirrored in ((False, True) if flip else (False,)):
    source = image[:, ::-1] if mirrored else image
    padded = np.pad(source, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
    h, w = image.shape[:2]
    for top in range(2 * pad + 1):
      for left in range(2 * pad + 1):
        out.append(padded[top:top + h, left:left + w])
  return out


@pytest.mark.parametrize('images, flip, pad', [(RGB, True, 2),
                                               (DIGITS, False, 1)])
def test_weak_is_a_flip_and_reflect_pad_crop(images, flip, pad):
  out = np.asarray(jit_weak(jax.random.key(0), images, flip=flip,
                            translate=0.125))
  assert out.dtype == images.dtype and out.shape == images.shape
  for view, image in zip(out, images):
    assert any(np.array_equal(view, c)
               for c in _weak_candidates(image, pad, flip))
  # Different examples get different draws: copies of one image differ.
  copies = np.asarray(jit_weak(jax.random.key(1),
                               np.repeat(images[:1], len(images), axis=0),
                               flip=flip, translate=0.125))
  assert len({c.tobytes() for c in copies}) >= 8


def test_weak_with_no_flip_and_no_shift_is_identity():
  out = weak(jax.random.key(0), RGB[:4], flip=False, translate=0.0)
  np.testing.assert_array_equal(out, RGB[:4])


def test_strong_contract_and_single_trace_per_shape():
  copies = np.repeat(RGB[:1], 48, axis=0)
  views = [np.asarray(jit_strong(jax.random.key(seed), copies))
           for seed in (7, 7, 8, 9)]
  assert views[0].dtype == np.uint8 and views[0].shape == copies.shape
  np.testing.assert_array_equal(views[0], views[1])        # same key
  assert not np.array_equal(views[0], views[2])            # new key
  assert len({v.tobytes() for v in views[0]}) == 48        # per example
  # Four calls on one shape: one trace, one compilation.
  assert len(TRACES['strong']) == 1, TRACES['strong']


def test_randaugment_draws_are_per_example_and_cover_the_ops():
  draw = jax.jit(draw_randaugment, static_argnums=(1, 2, 3),
                 static_argnames=('num_ops', 'op_prob'))
  draws = draw(jax.random.key(0), 4000, 32, 32, num_ops=2, op_prob=0.5)
  counts = np.bincount(np.asarray(draws.op).ravel(), minlength=14)
  assert counts.min() > 400  # 8000 draws over 14 ops, ~571 each
  assert 0.47 < float(draws.applied.mean()) < 0.53
  level = np.asarray(draws.level)
  assert level.min() >= 0.0 and level.max() < 1.0
  assert set(np.unique(draws.sign)) == {-1.0, 1.0}
  center = np.asarray(draws.cutout_center)
  assert center.min() == 0 and center.max() == 31


# ---------------------------------------------------------------------------
# SimCLR
# ---------------------------------------------------------------------------


def test_simclr_without_crop_or_colour_is_identity_or_mirror():
  out = np.asarray(jit_simclr(jax.random.key(0), RGB, crop_scale=(1.0, 1.0),
                              crop_ratio=(1.0, 1.0), jitter_prob=0.0,
                              grayscale_prob=0.0))
  mirrored = [np.array_equal(o, x[:, ::-1]) for o, x in zip(out, RGB)]
  plain = [np.array_equal(o, x) for o, x in zip(out, RGB)]
  assert all(m or p for m, p in zip(mirrored, plain))
  assert 10 <= sum(mirrored) <= 38 and 10 <= sum(plain) <= 38


def test_simclr_contract():
  key = jax.random.key(1)
  copies = np.repeat(RGB[:1], 48, axis=0)
  out = np.asarray(jit_simclr(key, copies, crop_size=12, blur=True,
                              grayscale_prob=1.0))
  assert out.shape == (48, 12, 12, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(
      out, jit_simclr(key, copies, crop_size=12, blur=True,
                      grayscale_prob=1.0))
  np.testing.assert_array_equal(out[..., 0], out[..., 2])  # all gray
  assert len({v.tobytes() for v in out}) == 48
  views = jit_simclr(key, DIGITS)
  assert views.shape == DIGITS.shape and views.dtype == jnp.float32
  assert 0.0 <= float(views.min()) and float(views.max()) <= 1.0
  assert not np.allclose(views, DIGITS)
  jit_simclr(jax.random.key(2), DIGITS)
  assert len(TRACES['simclr']) == 3, TRACES['simclr']


def test_simclr_crop_boxes_follow_the_scale_and_ratio():
  u = jax.random.uniform(jax.random.key(0), (2000, 10, 4))
  boxes = jax.jit(_crop_boxes, static_argnums=(1, 2, 3, 4))
  top, left, h, w = (np.asarray(v) for v in
                     boxes(u, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3)))
  assert np.all((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 32))
  area = h * w / 1024
  assert area.min() > 0.05 and area.max() <= 1.0
  assert np.all((w / h > 0.6) & (w / h < 1.6))
  assert np.median(area) < 0.65  # uniform in [0.08, 1] before clipping


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

_ALL = [weak, randaugment, strong, simclr_view]


@pytest.mark.parametrize('fn', _ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize('images, message', [
    (np.zeros((16, 16, 3), np.uint8), 'rank 4'),
    (np.zeros((2, 16, 16, 2), np.uint8), '1 or 3 channels'),
    (np.zeros((2, 16, 16, 4), np.float32), '1 or 3 channels'),
    (np.full((2, 8, 8, 3), 255.0, np.float32), r'\[0, 1\]'),
    (np.full((2, 8, 8, 1), -0.1, np.float32), r'\[0, 1\]'),
    (np.zeros((2, 8, 8, 3), np.int32), 'uint8'),
])
def test_bad_images_raise(fn, images, message):
  with pytest.raises(ValueError, match=message):
    fn(jax.random.key(0), images)


@pytest.mark.parametrize('call, message', [
    (functools.partial(weak, translate=0.5), 'translate'),
    (functools.partial(randaugment, num_ops=-1), 'num_ops'),
    (functools.partial(randaugment, op_prob=1.5), 'op_prob'),
    (functools.partial(randaugment, cutout=2.0), 'cutout'),
    (functools.partial(randaugment, interpolation='cubic'), 'interpolation'),
    (functools.partial(simclr_view, crop_size=0), 'crop_size'),
    (functools.partial(simclr_view, crop_scale=(0.5, 0.1)), 'crop_scale'),
    (functools.partial(simclr_view, strength=-1.0), 'strength'),
])
def test_bad_options_raise(call, message):
  with pytest.raises(ValueError, match=message):
    call(jax.random.key(0), RGB[:2])
