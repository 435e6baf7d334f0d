"""Consistency regularisation with pseudo-labels: FixMatch and its family.

One function, :func:`fixmatch_consistency`, covers FixMatch (hard,
confidence-masked pseudo-labels), UDA (soft, sharpened targets), ReMixMatch's
distribution alignment and per-class thresholds (the building block of
FlexMatch / FreeMatch adaptive thresholds) by its keyword options. It is pure:
any running state (the model's class distribution, adaptive thresholds) is
kept by the caller and passed in; the aux dict returns what is needed to
update it.

Computed in float32 whatever the floating dtype of the logits.
"""

from __future__ import annotations

from typing import Hashable, Optional

import jax
import jax.numpy as jnp

from sslx.losses.classification import (_check_float, _check_rank,
                                        _check_same_shape,
                                        _check_scalar_in_range, _concrete)

# Floor for the model distribution in distribution alignment (avoids / 0).
_MIN_MODEL_PROB = 1e-12


def _check_threshold(threshold, num_classes: int) -> jax.Array:
  """Scalar or [num_classes] threshold in [0, 1], as float32."""
  ndim = jnp.ndim(threshold)
  if ndim == 0:
    _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  elif ndim == 1:
    if jnp.shape(threshold)[0] != num_classes:
      raise ValueError(
          "A per-class `threshold` must have shape [num_classes] = "
          f"({num_classes},), got {tuple(jnp.shape(threshold))}.")
    value = _concrete(threshold)
    if value is not None and ((value < 0).any() or (value > 1).any()):
      raise ValueError(
          "`threshold` values must be in [0, 1], got values in "
          f"[{value.min()}, {value.max()}].")
  else:
    raise ValueError(
        "`threshold` must be a scalar or a per-class array [num_classes], "
        f"got shape {tuple(jnp.shape(threshold))}.")
  return jnp.asarray(threshold, jnp.float32)


def _check_distribution(name: str, p, num_classes: int) -> jax.Array:
  p = _check_float(name, p)
  if p.shape != (num_classes,):
    raise ValueError(
        f"`{name}` must have shape [num_classes] = ({num_classes},), got "
        f"{p.shape}.")
  value = _concrete(p)
  if value is not None and (value < 0).any():
    raise ValueError(f"`{name}` must be non-negative, got min {value.min()}.")
  return jax.lax.stop_gradient(p)


def fixmatch_consistency(
    logits_weak: jax.typing.ArrayLike,
    logits_strong: jax.typing.ArrayLike,
    *,
    threshold: float | jax.typing.ArrayLike = 0.95,
    soft_targets: bool = False,
    sharpen_temperature: float = 1.0,
    model_distribution: Optional[jax.typing.ArrayLike] = None,
    target_distribution: Optional[jax.typing.ArrayLike] = None,
    axis_name: Optional[Hashable] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  r"""FixMatch's confidence-masked pseudo-label consistency loss.

  With :math:`q_i = \mathrm{softmax}(\text{logits\_weak}_i)` under stop-gradient
  (optionally distribution-aligned, see below), pseudo-label
  :math:`\hat y_i = \arg\max_c q_{ic}`, confidence :math:`m_i = \max_c q_{ic}`,
  mask :math:`\mathbb{1}[m_i \ge \tau_{\hat y_i}]` (:math:`\tau` a scalar or
  per-class threshold), and the batch of :math:`B = \mu B_{labeled}`
  unlabeled examples,

  .. math::
    \mathcal{L}_u = \frac{1}{B} \sum_{i=1}^{B} \mathbb{1}[m_i \ge \tau]\,
      \mathrm{H}(t_i, \mathrm{softmax}(\text{logits\_strong}_i)),

  where :math:`t_i` is the one-hot of :math:`\hat y_i` (FixMatch) or, with
  ``soft_targets=True``, the sharpened distribution
  :math:`t_i \propto q_i^{1/T}` (UDA; equals ``softmax(logits_weak / T)``
  without alignment). **The mean is over all B unlabeled examples**, not over
  the confident ones, as in the paper (Eq. 4) and the official code. No
  gradient reaches `logits_weak`. ``threshold=0`` gives plain
  pseudo-labelling (Lee, 2013).

  Options that reach the rest of the family by composition:

  * UDA (Xie et al., 2020): ``soft_targets=True, sharpen_temperature=0.4,
    threshold=0.8``. The confidence mask uses the unsharpened :math:`q`.
    UDA reports KL(t || p); this returns the cross-entropy H(t, p), which
    differs by the entropy of t, a constant without gradient.
  * Distribution alignment (ReMixMatch, Berthelot et al., 2020): pass the
    caller-kept running mean of the model's predictions on unlabeled data as
    `model_distribution` (and the labeled class prior as `target_distribution`,
    default uniform); then :math:`q_i \propto q_i \cdot p_{target} /
    p_{model}` before thresholding and sharpening. Update the running mean
    with ``aux['mean_probs']`` (the batch mean of the unaligned
    ``softmax(logits_weak)``).
  * Per-class thresholds (FlexMatch, FreeMatch): pass `threshold` as a
    ``[num_classes]`` array (traced values are fine); example :math:`i` uses
    ``threshold[pseudo_label_i]``. ``aux['mask']``, ``aux['pseudo_labels']``
    and ``aux['confidence']`` are what those methods update their state from.

  With `axis_name` (inside ``shard_map``/``pmap`` over the batch), the loss,
  ``mask_rate`` and ``mean_probs`` are averaged over the axis, i.e. are those
  of the whole gathered batch (per-example aux entries stay local).

  Args:
    logits_weak: logits on weakly augmented unlabeled images,
      ``[batch, num_classes]``, floating point; used only as targets.
    logits_strong: logits on the strongly augmented versions of the same
      images, same shape.
    threshold: confidence threshold :math:`\tau \in [0, 1]`, scalar or
      ``[num_classes]``. The mask is ``confidence >= threshold``.
    soft_targets: use sharpened soft targets instead of hard pseudo-labels.
    sharpen_temperature: :math:`T > 0`, only with ``soft_targets=True``.
    model_distribution: ``[num_classes]`` running class distribution of the
      model's predictions; enables distribution alignment. Floored at 1e-12.
    target_distribution: ``[num_classes]`` target class distribution for
      distribution alignment (default uniform). Needs `model_distribution`.
      Neither needs to be normalised.
    axis_name: mapped axis name to average batch statistics over, or None.

  Returns:
    ``(loss, aux)``: the float32 scalar loss and a dict of

    * ``'mask'``: ``[batch]`` float32, 1 where the pseudo-label is used;
    * ``'mask_rate'``: scalar, the fraction of the batch that is masked in;
    * ``'pseudo_labels'``: ``[batch]`` int32 argmax of the (aligned) weak
      probabilities;
    * ``'confidence'``: ``[batch]`` float32, their max probability;
    * ``'mean_probs'``: ``[num_classes]`` float32 batch mean of the unaligned
      ``softmax(logits_weak)``, for a distribution-alignment running mean.

  References:
    K. Sohn et al., `FixMatch: Simplifying Semi-Supervised Learning with
    Consistency and Confidence <https://arxiv.org/abs/2001.07685>`_, 2020.
    Q. Xie et al., `Unsupervised Data Augmentation for Consistency Training
    <https://arxiv.org/abs/1904.12848>`_, 2020.
    D. Berthelot et al., `ReMixMatch <https://arxiv.org/abs/1911.09785>`_, 2020.
    B. Zhang et al., `FlexMatch <https://arxiv.org/abs/2110.08263>`_, 2021.

  Example:
    >>> import jax.numpy as jnp
    >>> from sslx.losses.consistency import fixmatch_consistency
    >>> weak = jnp.array([[5.0, 0.0], [0.0, 0.0]])  # confident, unsure
    >>> strong = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    >>> loss, aux = fixmatch_consistency(weak, strong, threshold=0.95)
    >>> print(aux['mask'], aux['pseudo_labels'])
    [1. 0.] [0 0]
    >>> print(f"{loss:.4f}")  # log(2) / 2: the mean is over both examples
    0.3466
  """
  _check_same_shape("logits_weak", logits_weak, "logits_strong", logits_strong)
  _check_rank("logits_weak", logits_weak, 2, "[batch, num_classes]")
  weak = jax.lax.stop_gradient(_check_float("logits_weak", logits_weak))
  strong = _check_float("logits_strong", logits_strong)
  num_classes = weak.shape[-1]
  threshold = _check_threshold(threshold, num_classes)
  if soft_targets:
    _check_scalar_in_range("sharpen_temperature", sharpen_temperature, 0.0,
                           float("inf"), low_inclusive=False)
  elif (_concrete(sharpen_temperature) is not None
        and sharpen_temperature != 1.0):
    raise ValueError(
        "`sharpen_temperature` only applies with `soft_targets=True` (the "
        f"argmax of a hard pseudo-label ignores it), got {sharpen_temperature}"
        " with soft_targets=False.")

  log_q = jax.nn.log_softmax(weak, axis=-1)
  mean_probs = jnp.mean(jnp.exp(log_q), axis=0)
  if target_distribution is not None and model_distribution is None:
    raise ValueError(
        "`target_distribution` is only used by distribution alignment, which "
        "needs `model_distribution` (the running mean of the model's "
        "predictions); got target_distribution without model_distribution.")
  if model_distribution is not None:
    p_model = _check_distribution("model_distribution", model_distribution,
                                  num_classes)
    log_q = log_q - jnp.log(jnp.maximum(p_model, _MIN_MODEL_PROB))
    if target_distribution is not None:
      p_target = _check_distribution("target_distribution",
                                     target_distribution, num_classes)
      log_q = log_q + jnp.log(p_target)
    log_q = log_q - jax.nn.logsumexp(log_q, axis=-1, keepdims=True)

  pseudo_labels = jnp.argmax(log_q, axis=-1).astype(jnp.int32)
  confidence = jnp.exp(jnp.max(log_q, axis=-1))
  per_example_threshold = threshold if threshold.ndim == 0 else (
      threshold[pseudo_labels])
  mask = (confidence >= per_example_threshold).astype(jnp.float32)
  if soft_targets:
    targets = jax.nn.softmax(log_q / sharpen_temperature, axis=-1)
  else:
    targets = jax.nn.one_hot(pseudo_labels, num_classes, dtype=jnp.float32)

  cross_entropy = -jnp.sum(targets * jax.nn.log_softmax(strong, axis=-1),
                           axis=-1)
  loss = jnp.mean(mask * cross_entropy)
  mask_rate = jnp.mean(mask)
  if axis_name is not None:
    loss, mask_rate, mean_probs = jax.lax.pmean(
        (loss, mask_rate, mean_probs), axis_name)
  aux = {
      "mask": mask,
      "mask_rate": mask_rate,
      "pseudo_labels": pseudo_labels,
      "confidence": confidence,
      "mean_probs": mean_probs,
  }
  return loss, aux


def softmax_mse(logits: jax.Array, target_probs: jax.Array, *,
                mask: Optional[jax.Array] = None) -> jax.Array:
  """Mean squared difference of class probabilities (Mean Teacher, the Pi-model).

  .. math::
    \\mathcal{L} = \\frac{1}{B} \\sum_i m_i \\frac{1}{K} \\sum_k
    (\\mathrm{softmax}(z_i)_k - t_{ik})^2

  as USB's ``consistency_loss(logits, targets, 'mse')`` (mean over classes, then over the
  batch; Laine & Aila 2017 and Tarvainen & Valpola 2017 use the same squared error).
  ``target_probs`` (the teacher's, or the other pass's, probabilities) get no gradient.

  Args:
    logits: ``[batch, num_classes]`` student logits.
    target_probs: ``[batch, num_classes]`` target probabilities.
    mask: optional ``[batch]`` weights (1 keeps an example), as USB's ``mask``.

  Returns:
    A scalar: the masked per-example errors averaged over the whole batch.
  """
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  target_probs = _check_float("target_probs", target_probs)
  _check_same_shape("logits", logits, "target_probs", target_probs)
  err = jnp.mean((jax.nn.softmax(logits, -1) - jax.lax.stop_gradient(target_probs)) ** 2, -1)
  if mask is not None:
    mask = _check_float("mask", mask)
    if mask.shape != err.shape:
      raise ValueError(f"`mask` must have shape [batch] = {err.shape}, got {mask.shape}.")
    err = err * mask
  return jnp.mean(err)
