"""Adaptive confidence thresholds for pseudo-labelling: FixMatch's successors.

Pure functions: each method's running statistics (the pool's selected labels, EMAs of
confidence and class probabilities) are kept by the caller and passed in; the update
functions return the new values. Formulas follow the official code of each method as
collected in USB (microsoft/Semi-supervised-learning, ``semilearn/algorithms/<name>``);
where that code differs from the paper the docstring says so.

Shapes: ``[batch, num_classes]`` logits/probabilities, ``[batch]`` per-example values,
``[num_classes]`` class statistics, ``[pool]`` per-example state of the unlabeled pool.
Everything is computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.classification import (_check_float, _check_rank, _check_same_shape,
                                        _check_scalar_in_range)


def _check_shape(name: str, x, shape: tuple[int, ...], doc: str) -> None:
  if tuple(jnp.shape(x)) != tuple(shape):
    raise ValueError(f"`{name}` must have shape {doc} = {tuple(shape)}, got "
                     f"{tuple(jnp.shape(x))}.")


def _check_int(name: str, x, shape: tuple[int, ...], doc: str) -> jax.Array:
  _check_shape(name, x, shape, doc)
  if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
    raise ValueError(f"`{name}` must be an integer array, got dtype {jnp.result_type(x)}.")
  return jnp.asarray(x, jnp.int32)


def masked_pseudo_label_loss(logits_strong: jax.typing.ArrayLike,
                             targets: jax.typing.ArrayLike,
                             mask: jax.typing.ArrayLike) -> jax.Array:
  r"""Masked (or weighted) cross-entropy against pseudo-labels, averaged over the batch.

  .. math::
    \mathcal{L}_u = \frac{1}{B} \sum_{i=1}^{B} w_i\, \mathrm{H}(t_i,
      \mathrm{softmax}(\text{logits\_strong}_i))

  USB's ``consistency_loss(logits, targets, 'ce', mask=w)``: the mean is over all B
  examples, not over the kept ones. ``targets`` are int labels ``[batch]`` (hard
  pseudo-labels) or probabilities ``[batch, num_classes]``; neither targets nor ``w``
  get a gradient.

  Args:
    logits_strong: ``[batch, num_classes]`` logits of the strongly augmented views.
    targets: ``[batch]`` int labels or ``[batch, num_classes]`` probabilities.
    mask: ``[batch]`` weights ``w_i`` (0/1 masks, or SoftMatch's soft weights).

  Returns:
    The float32 scalar loss.
  """
  _check_rank("logits_strong", logits_strong, 2, "[batch, num_classes]")
  logits = _check_float("logits_strong", logits_strong)
  b, k = logits.shape
  _check_shape("mask", mask, (b,), "[batch]")
  w = jax.lax.stop_gradient(_check_float("mask", mask))
  log_p = jax.nn.log_softmax(logits, axis=-1)
  if jnp.ndim(targets) == 1:
    labels = _check_int("targets", targets, (b,), "[batch]")
    ce = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
  else:
    _check_same_shape("targets", targets, "logits_strong", logits)
    t = jax.lax.stop_gradient(_check_float("targets", targets))
    ce = -jnp.sum(t * log_p, axis=-1)
  return jnp.mean(w * ce)


# ---------------------------------------------------------------------------
# FlexMatch: curriculum pseudo-labelling
# ---------------------------------------------------------------------------


def flexmatch_learning_effect(selected_labels: jax.typing.ArrayLike,
                              previous_effect: jax.typing.ArrayLike, *,
                              threshold_warmup: bool = True) -> jax.Array:
  r"""FlexMatch's class-wise learning effect :math:`\beta_c` from the pool's selected labels.

  With :math:`\sigma_c` the number of pool examples whose last confident prediction
  (confidence :math:`\ge \tau`) was class :math:`c` and :math:`\sigma_{-1}` the number never
  confidently predicted (label -1),

  .. math::
    \beta_c = \frac{\sigma_c}{\max(\max_{c'} \sigma_{c'},\ \sigma_{-1})}
    \quad\text{(threshold warm-up)}, \qquad
    \beta_c = \frac{\sigma_c}{\max_{c'} \sigma_{c'}} \quad\text{(without)}.

  As USB's ``FlexMatchThresholdingHook.update``: when the largest count (the -1s
  included) equals the pool size (nothing selected yet, or every example selected as one
  class) the previous effect is kept unchanged.

  Args:
    selected_labels: ``[pool]`` int32 in ``[-1, num_classes)``.
    previous_effect: ``[num_classes]`` the effect before this update (zeros at start).
    threshold_warmup: count the unused -1s in the normaliser (paper Eq. 11).

  Returns:
    ``[num_classes]`` float32 :math:`\beta` in ``[0, 1]``.
  """
  previous = _check_float("previous_effect", previous_effect)
  _check_rank("previous_effect", previous, 1, "[num_classes]")
  _check_rank("selected_labels", selected_labels, 1, "[pool]")
  pool = jnp.shape(selected_labels)[0]
  selected = _check_int("selected_labels", selected_labels, (pool,), "[pool]")
  k = previous.shape[0]
  counts = jnp.bincount(selected + 1, length=k + 1).astype(jnp.float32)  # [-1, 0, ..., k-1]
  denom = jnp.max(counts) if threshold_warmup else jnp.max(counts[1:])
  effect = counts[1:] / jnp.maximum(denom, 1.0)
  return jnp.where(jnp.max(counts) < pool, effect, previous)


def flexmatch_thresholds(learning_effect: jax.typing.ArrayLike, *,
                         threshold: float = 0.95) -> jax.Array:
  r"""Per-class thresholds :math:`\mathcal{T}_c = \tau\, \beta_c / (2 - \beta_c)`.

  The convex mapping :math:`\mathcal{M}(x) = x / (2 - x)` of the paper (Eq. 7), as the
  official code applies it: at :math:`\beta_c = 0` the threshold is 0, every prediction
  of that class is used.

  Args:
    learning_effect: ``[num_classes]`` :math:`\beta` in ``[0, 1]``.
    threshold: the fixed threshold :math:`\tau` (FixMatch's 0.95).

  Returns:
    ``[num_classes]`` float32 thresholds in ``[0, tau]``.
  """
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  beta = _check_float("learning_effect", learning_effect)
  _check_rank("learning_effect", beta, 1, "[num_classes]")
  return threshold * beta / (2.0 - beta)


def flexmatch_select(selected_labels: jax.typing.ArrayLike, indices: jax.typing.ArrayLike,
                     probs: jax.typing.ArrayLike, *, threshold: float = 0.95) -> jax.Array:
  r"""The pool's selected labels after a batch: ``selected[idx_i] = argmax p_i`` where
  :math:`\max p_i \ge \tau`, unchanged elsewhere.

  Args:
    selected_labels: ``[pool]`` int32, -1 where never selected.
    indices: ``[batch]`` int positions of the batch's examples in the pool.
    probs: ``[batch, num_classes]`` weak-view class probabilities.
    threshold: the fixed threshold :math:`\tau` (not the per-class one).

  Returns:
    ``[pool]`` int32 selected labels.
  """
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  p = jax.lax.stop_gradient(_check_float("probs", probs))
  _check_rank("selected_labels", selected_labels, 1, "[pool]")
  pool = jnp.shape(selected_labels)[0]
  selected = _check_int("selected_labels", selected_labels, (pool,), "[pool]")
  idx = _check_int("indices", indices, (p.shape[0],), "[batch]")
  confident = jnp.max(p, axis=-1) >= threshold
  labels = jnp.argmax(p, axis=-1).astype(jnp.int32)
  # Unconfident examples write out of bounds and are dropped.
  return selected.at[jnp.where(confident, idx, pool)].set(labels, mode="drop")


# ---------------------------------------------------------------------------
# Diagnostics shared by the family
# ---------------------------------------------------------------------------


def pseudo_label_diagnostics(pseudo_labels: jax.typing.ArrayLike, mask: jax.typing.ArrayLike,
                             true_labels: jax.typing.ArrayLike | None = None
                             ) -> dict[str, jax.Array]:
  """Mask rate and, where the true labels are known (>= 0), pseudo-label accuracy.

  Args:
    pseudo_labels: ``[batch]`` int predicted labels.
    mask: ``[batch]`` weights in [0, 1] (a 0/1 mask or soft weights).
    true_labels: ``[batch]`` int, -1 where unknown; None skips the accuracies.

  Returns:
    ``{'mask_rate'[, 'pseudo_label_accuracy', 'masked_pseudo_label_accuracy']}``:
    the mean weight, the accuracy over the known labels, and the accuracy weighted by the
    mask (of the pseudo-labels the loss uses). Scalars, float32.
  """
  b = jnp.shape(pseudo_labels)[0]
  labels = _check_int("pseudo_labels", pseudo_labels, (b,), "[batch]")
  _check_shape("mask", mask, (b,), "[batch]")
  w = jnp.asarray(mask, jnp.float32)
  out = {"mask_rate": jnp.mean(w)}
  if true_labels is not None:
    truth = _check_int("true_labels", true_labels, (b,), "[batch]")
    known = (truth >= 0).astype(jnp.float32)
    correct = (labels == truth).astype(jnp.float32) * known
    out["pseudo_label_accuracy"] = jnp.sum(correct) / jnp.maximum(jnp.sum(known), 1.0)
    out["masked_pseudo_label_accuracy"] = (jnp.sum(correct * w)
                                           / jnp.maximum(jnp.sum(known * w), 1e-12))
  return out
