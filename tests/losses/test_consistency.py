"""Tests for sslx.losses.consistency.fixmatch_consistency.

The `axis_name` path is checked on 4 simulated devices in
tests/losses/test_contrastive.py (one child process for all multi-device checks).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sslx.losses.classification import cross_entropy
from sslx.losses.consistency import fixmatch_consistency

# Weak logits: rows 0, 2 confident (max prob > 0.95), rows 1, 3 not.
WEAK = np.array([[6.0, 0.0, 0.0],
                 [1.0, 0.5, 0.0],
                 [0.0, 0.0, 5.0],
                 [0.0, 0.2, 0.0]], np.float32)
STRONG = np.array([[1.0, 0.0, -1.0],
                   [0.0, 2.0, 0.0],
                   [0.5, 0.5, 0.5],
                   [-1.0, 0.0, 3.0]], np.float32)


def _np_softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_ce(targets, logits):
  log_p = np.log(_np_softmax(logits))
  return -(targets * log_p).sum(-1)


@functools.lru_cache(maxsize=None)
def _jitted(**kwargs):
  """One compiled function per option set; array options are traced args."""
  return jax.jit(lambda w, s, **arrays: fixmatch_consistency(
      w, s, **kwargs, **arrays))


def fixmatch(weak, strong, **kwargs):
  static = {k: v for k, v in kwargs.items() if isinstance(v, (bool, str))}
  arrays = {k: v for k, v in kwargs.items() if k not in static}
  return _jitted(**static)(weak, strong, **arrays)


def test_mixed_batch_hand_computed():
  loss, aux = fixmatch(WEAK, STRONG, threshold=0.95)
  q = _np_softmax(WEAK)
  np.testing.assert_array_equal(aux["mask"], [1.0, 0.0, 1.0, 0.0])
  np.testing.assert_array_equal(aux["pseudo_labels"], [0, 0, 2, 1])
  assert aux["pseudo_labels"].dtype == jnp.int32
  np.testing.assert_allclose(aux["confidence"], q.max(-1), rtol=1e-6)
  np.testing.assert_allclose(aux["mask_rate"], 0.5)
  np.testing.assert_allclose(aux["mean_probs"], q.mean(0), rtol=1e-6)
  ce = _np_ce(np.eye(3)[[0, 0, 2, 1]], STRONG)
  # Divided by all 4 unlabeled examples, not by the 2 confident ones.
  np.testing.assert_allclose(loss, (ce[0] + ce[2]) / 4, rtol=1e-6)


def test_all_confident_and_none_confident():
  confident = WEAK * 30.0
  loss, aux = fixmatch(confident, STRONG, threshold=0.9)
  np.testing.assert_array_equal(aux["mask"], 1.0)
  np.testing.assert_allclose(
      loss, _np_ce(np.eye(3)[[0, 0, 2, 1]], STRONG).mean(), rtol=1e-6)

  uniform = np.zeros_like(WEAK)  # confidence 1/3 everywhere
  loss, aux = fixmatch(uniform, STRONG, threshold=0.5)
  assert float(loss) == 0.0 and float(aux["mask_rate"]) == 0.0
  np.testing.assert_allclose(aux["confidence"], 1 / 3, rtol=1e-6)


def test_threshold_zero_is_plain_pseudo_labelling():
  loss, aux = fixmatch(WEAK, STRONG, threshold=0.0)
  np.testing.assert_array_equal(aux["mask"], 1.0)
  expected = cross_entropy(STRONG, jnp.argmax(WEAK, axis=-1))
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_no_gradient_reaches_weak_logits():
  for kwargs in (dict(threshold=0.0),
                 dict(threshold=0.5, soft_targets=True,
                      sharpen_temperature=0.5,
                      model_distribution=jnp.array([0.5, 0.3, 0.2]))):
    grad_fn = jax.jit(jax.grad(
        lambda w, s: fixmatch_consistency(w, s, **kwargs)[0], argnums=(0, 1)))
    grad_weak, grad_strong = grad_fn(jnp.asarray(WEAK), jnp.asarray(STRONG))
    np.testing.assert_array_equal(grad_weak, 0.0)
    assert np.abs(grad_strong).sum() > 0


def test_masked_and_zero_confidence_batches_have_finite_gradients():
  grad_fn = jax.jit(jax.grad(
      lambda s, w: fixmatch_consistency(w, s, threshold=0.95)[0]))
  # Nothing confident, and extreme strong logits: gradient exactly 0.
  strong = jnp.array([[1e4, -1e4, 0.0]] * 4)
  grad = grad_fn(strong, jnp.zeros((4, 3)))
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(grad, 0.0)
  # Mixed batch: finite, and zero exactly on the masked-out rows.
  grad = grad_fn(jnp.asarray(STRONG), jnp.asarray(WEAK))
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(grad[np.array([1, 3])], 0.0)
  assert np.abs(grad[np.array([0, 2])]).sum() > 0


def test_check_grads_wrt_strong_logits():
  weak = jnp.asarray(WEAK)
  for soft in (False, True):
    f = jax.jit(lambda s: fixmatch_consistency(
        weak, s, threshold=0.5, soft_targets=soft)[0])
    check_grads(f, (jnp.asarray(STRONG),), order=1, modes=("fwd", "rev"),
                atol=1e-2, rtol=1e-2, eps=1e-2)


def test_soft_targets_sharpen_and_mask_on_unsharpened_confidence():
  weak = np.array([[2.0, 0.0, 0.0], [8.0, 0.0, 0.0]], np.float32)
  strong = STRONG[:2]
  t = 0.4
  loss, aux = fixmatch(weak, strong, threshold=0.8, soft_targets=True,
                       sharpen_temperature=t)
  q = _np_softmax(weak)
  # Row 0: softmax(weak) max is 0.79 < 0.8, masked out although the sharpened
  # target (softmax(weak / 0.4), max 0.99) would pass.
  assert q[0].max() < 0.8 < _np_softmax(weak[0] / t).max()
  np.testing.assert_array_equal(aux["mask"], [0.0, 1.0])
  np.testing.assert_allclose(aux["confidence"], q.max(-1), rtol=1e-6)
  expected = _np_ce(_np_softmax(weak[1] / t), strong[1]) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_distribution_alignment():
  weak = np.array([[1.0, 0.8, 0.0], [0.0, 3.0, 0.0]], np.float32)
  strong = STRONG[:2]
  p_model = np.array([0.6, 0.2, 0.2], np.float32)  # model over-predicts 0
  p_target = np.array([0.2, 0.4, 0.4], np.float32)
  loss, aux = fixmatch(weak, strong, threshold=0.0, soft_targets=True,
                       sharpen_temperature=0.5, model_distribution=p_model,
                       target_distribution=p_target)
  q = _np_softmax(weak)
  aligned = q * p_target / p_model
  aligned /= aligned.sum(-1, keepdims=True)
  # Alignment flips row 0's pseudo-label from class 0 to class 1.
  assert q[0].argmax() == 0
  np.testing.assert_array_equal(aux["pseudo_labels"], [1, 1])
  np.testing.assert_allclose(aux["confidence"], aligned.max(-1), rtol=1e-5)
  np.testing.assert_allclose(aux["mean_probs"], q.mean(0), rtol=1e-6)
  sharpened = aligned ** 2 / (aligned ** 2).sum(-1, keepdims=True)
  np.testing.assert_allclose(loss, _np_ce(sharpened, strong).mean(),
                             rtol=1e-5)
  # Target defaults to uniform; an unnormalised model distribution is fine.
  _, aux_uniform = fixmatch(weak, strong, threshold=0.0,
                            model_distribution=p_model * 7.0)
  aligned_uniform = q / p_model
  np.testing.assert_allclose(
      aux_uniform["confidence"],
      (aligned_uniform / aligned_uniform.sum(-1, keepdims=True)).max(-1),
      rtol=1e-5)


def test_per_class_threshold():
  # Pseudo-labels [0, 0, 2, 1], confidences ~[0.995, 0.51, 0.987, 0.38].
  per_class = jnp.array([0.999, 0.3, 0.9])
  _, aux = fixmatch(WEAK, STRONG, threshold=per_class)
  np.testing.assert_array_equal(aux["mask"], [0.0, 0.0, 1.0, 1.0])
  # Works with a traced threshold (adaptive thresholds live in the state).
  step = jax.jit(lambda thr: fixmatch_consistency(
      WEAK, STRONG, threshold=thr)[1]["mask"])
  np.testing.assert_array_equal(step(jnp.array([0.5, 0.5, 0.99])),
                                [1.0, 1.0, 0.0, 0.0])


def test_jit_matches_eager_and_batch_permutation():
  kwargs = dict(threshold=0.6, soft_targets=True, sharpen_temperature=0.7)
  loss, aux = fixmatch_consistency(WEAK, STRONG, **kwargs)
  loss_jit, aux_jit = fixmatch(WEAK, STRONG, **kwargs)
  np.testing.assert_allclose(loss_jit, loss, rtol=1e-6)
  for key in aux:
    np.testing.assert_allclose(aux_jit[key], aux[key], rtol=1e-6)
  perm = np.array([2, 3, 0, 1])
  loss_p, aux_p = fixmatch(WEAK[perm], STRONG[perm], **kwargs)
  np.testing.assert_allclose(loss_p, loss, rtol=1e-6)
  np.testing.assert_array_equal(aux_p["mask"], np.asarray(aux["mask"])[perm])
  np.testing.assert_array_equal(aux_p["pseudo_labels"],
                                np.asarray(aux["pseudo_labels"])[perm])


def test_bfloat16_logits_are_computed_in_float32():
  weak, strong = (jnp.asarray(x, jnp.bfloat16) for x in (WEAK, STRONG))
  loss, aux = fixmatch(weak, strong, threshold=0.0)
  assert loss.dtype == jnp.float32 and aux["confidence"].dtype == jnp.float32
  loss32, _ = fixmatch(np.asarray(weak, np.float32),
                       np.asarray(strong, np.float32), threshold=0.0)
  np.testing.assert_allclose(loss, loss32, rtol=1e-6)


W2 = jnp.ones((2, 3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(logits_strong=jnp.ones((2, 4))),
     r"`logits_weak` and `logits_strong` must have the same shape, got "
     r"\(2, 3\) and \(2, 4\)"),
    (dict(logits_weak=jnp.ones((2, 3, 1)), logits_strong=jnp.ones((2, 3, 1))),
     r"`logits_weak` must have rank 2 .*got shape \(2, 3, 1\)"),
    (dict(logits_weak=jnp.ones((2, 3), jnp.int32)),
     r"`logits_weak` must be a floating-point array, got dtype int32"),
    (dict(logits_strong=jnp.ones((2, 3), jnp.int32)),
     r"`logits_strong` must be a floating-point array, got dtype int32"),
    (dict(threshold=1.5), r"`threshold` must be in \[0.0, 1.0\], got 1.5"),
    (dict(threshold=-0.1), r"`threshold` must be in \[0.0, 1.0\], got -0.1"),
    (dict(threshold=jnp.array([0.5, 0.5])),
     r"per-class `threshold` must have shape \[num_classes\] = \(3,\), "
     r"got \(2,\)"),
    (dict(threshold=jnp.array([0.5, 1.2, 0.5])),
     r"`threshold` values must be in \[0, 1\]"),
    (dict(threshold=jnp.ones((3, 1))), r"`threshold` must be a scalar or"),
    (dict(soft_targets=True, sharpen_temperature=0.0),
     r"`sharpen_temperature` must be in \(0.0, inf\], got 0.0"),
    (dict(sharpen_temperature=0.5),
     r"`sharpen_temperature` only applies with `soft_targets=True`"),
    (dict(model_distribution=jnp.ones((2,))),
     r"`model_distribution` must have shape \[num_classes\] = \(3,\), "
     r"got \(2,\)"),
    (dict(model_distribution=jnp.array([0.5, -0.1, 0.6])),
     r"`model_distribution` must be non-negative"),
    (dict(target_distribution=jnp.ones((3,)) / 3),
     r"`target_distribution` .* needs `model_distribution`"),
])
def test_errors_name_the_argument(kwargs, match):
  args = dict(logits_weak=W2, logits_strong=W2)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    fixmatch_consistency(args.pop("logits_weak"), args.pop("logits_strong"),
                         **args)
