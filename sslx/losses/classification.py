"""Classification losses and metrics: cross-entropy with hard or soft targets.

Pure functions over arrays, jittable and differentiable. Everything is computed
in float32, whatever the floating dtype of the inputs (bfloat16 logits are
upcast before the softmax), and the results are float32.

The private helpers at the top (input checks, float32 upcast) are shared by the
other loss modules of :mod:`sslx.losses`.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------
# Input checks shared by sslx.losses.* (private).
# ---------------------------------------------------------------------------


def _is_traced(x) -> bool:
  """True when `x` is an abstract value under `jit`/`grad` (no concrete value)."""
  return isinstance(x, jax.core.Tracer)


def _concrete(x) -> Optional[np.ndarray]:
  """The value of `x` as numpy, or None when it is traced (value unknown)."""
  if _is_traced(x):
    return None
  return np.asarray(x)


def _check_float(name: str, x) -> jax.Array:
  """Returns `x` as a float32 array; ValueError unless it is floating point."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"`{name}` must be a floating-point array, got dtype {dtype}.")
  return jnp.asarray(x, jnp.float32)


def _check_rank(name: str, x, rank: int, shape_doc: str) -> None:
  if jnp.ndim(x) != rank:
    raise ValueError(
        f"`{name}` must have rank {rank} ({shape_doc}), got shape "
        f"{tuple(jnp.shape(x))}.")


def _check_same_shape(name1: str, x1, name2: str, x2) -> None:
  if jnp.shape(x1) != jnp.shape(x2):
    raise ValueError(
        f"`{name1}` and `{name2}` must have the same shape, got "
        f"{tuple(jnp.shape(x1))} and {tuple(jnp.shape(x2))}.")


def _check_scalar_in_range(name: str, x, low: float, high: float,
                           low_inclusive: bool = True) -> None:
  """Checks a python/concrete scalar lies in [low, high] (or (low, high])."""
  value = _concrete(x)
  if value is None:
    return  # traced (e.g. a scheduled value): cannot check under jit
  if value.ndim != 0:
    raise ValueError(f"`{name}` must be a scalar, got shape {value.shape}.")
  ok_low = value >= low if low_inclusive else value > low
  if not (ok_low and value <= high):
    bracket = "[" if low_inclusive else "("
    raise ValueError(
        f"`{name}` must be in {bracket}{low}, {high}], got {float(value)}.")


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


def _targets_and_log_probs(logits, labels, label_smoothing, fn_name):
  """Validates inputs; returns (float32 targets [B, C], log_softmax [B, C])."""
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  batch, num_classes = logits.shape
  labels_dtype = jnp.result_type(labels)
  if jnp.issubdtype(labels_dtype, jnp.integer):
    if jnp.shape(labels) != (batch,):
      raise ValueError(
          f"{fn_name}: integer `labels` must have shape [batch] = ({batch},) "
          f"to match `logits` of shape {tuple(logits.shape)}, got "
          f"{tuple(jnp.shape(labels))}.")
    value = _concrete(labels)
    if value is not None and value.size and (
        value.min() < 0 or value.max() >= num_classes):
      raise ValueError(
          f"{fn_name}: integer `labels` must be in [0, {num_classes - 1}] "
          f"(num_classes = {num_classes}), got values in "
          f"[{value.min()}, {value.max()}].")
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  elif jnp.issubdtype(labels_dtype, jnp.floating):
    if jnp.shape(labels) != logits.shape:
      raise ValueError(
          f"{fn_name}: soft `labels` must have the shape of `logits` "
          f"[batch, num_classes] = {tuple(logits.shape)}, got "
          f"{tuple(jnp.shape(labels))} (integer class indices must have an "
          "integer dtype).")
    targets = jnp.asarray(labels, jnp.float32)
  else:
    raise ValueError(
        f"{fn_name}: `labels` must be integer class indices [batch] or "
        f"floating-point soft targets [batch, num_classes], got dtype "
        f"{labels_dtype}.")
  smoothing = _concrete(label_smoothing)
  if smoothing is None or smoothing != 0:  # traced values are applied as is
    _check_scalar_in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  return targets, jax.nn.log_softmax(logits, axis=-1)


def cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    label_smoothing: float = 0.0,
    weights: Optional[jax.typing.ArrayLike] = None,
    reduction: str = "mean",
) -> jax.Array:
  r"""Softmax cross-entropy with integer labels or soft targets.

  For example :math:`i` with target distribution :math:`t_i` (one-hot of the
  integer label, or the given soft target), optionally label-smoothed to
  :math:`\tilde t_i = (1 - \epsilon) t_i + \epsilon / C`,

  .. math::
    \ell_i = -\sum_{c=1}^{C} \tilde t_{ic} \log \mathrm{softmax}(x_i)_c .

  Reductions, with per-example weights :math:`w_i` (1 when `weights` is None):

  * ``'mean'``: :math:`\frac{1}{B}\sum_i w_i \ell_i`. **The denominator is the
    batch size B, not** :math:`\sum_i w_i`: zero-weight rows still count. This
    is FixMatch's convention (the unlabeled loss is averaged over all
    :math:`\mu B` examples, confident or not). For a weighted average, use
    ``cross_entropy(..., reduction='sum') / jnp.sum(weights)``.
  * ``'sum'``: :math:`\sum_i w_i \ell_i`.
  * ``'none'``: the vector :math:`w_i \ell_i`, shape ``[batch]``.

  Computed in float32 (bfloat16 logits are upcast); targets receive gradients
  only if they are soft targets that depend on parameters (wrap them in
  `jax.lax.stop_gradient` when they should not).

  Args:
    logits: unnormalised scores, shape ``[batch, num_classes]``, floating point.
    labels: integer class indices, shape ``[batch]``, or soft targets (each
      row a distribution), shape ``[batch, num_classes]``, floating point.
    label_smoothing: :math:`\epsilon \in [0, 1]`; mixes the targets with the
      uniform distribution (Szegedy et al., 2016).
    weights: optional per-example weights, shape ``[batch]``, floating point.
    reduction: ``'mean'``, ``'sum'`` or ``'none'`` (see above).

  Returns:
    A float32 scalar, or a ``[batch]`` vector for ``reduction='none'``.

  Example:
    >>> import jax.numpy as jnp
    >>> from sslx.losses.classification import cross_entropy
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
    >>> print(f"{cross_entropy(logits, jnp.array([0, 1])):.4f}")
    0.4100
    >>> print(f"{cross_entropy(logits, jnp.array([0, 1]), weights=jnp.array([1.0, 0.0])):.4f}")
    0.0635
  """
  if reduction not in _REDUCTIONS:
    raise ValueError(
        f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}.")
  targets, log_probs = _targets_and_log_probs(
      logits, labels, label_smoothing, "cross_entropy")
  # Zero-probability targets contribute 0 even where log_probs = -inf.
  per_example = -jnp.sum(
      targets * jnp.where(targets > 0, log_probs, 0.0), axis=-1)
  if weights is not None:
    weights = _check_float("weights", weights)
    if weights.shape != per_example.shape:
      raise ValueError(
          f"`weights` must have shape [batch] = {per_example.shape}, got "
          f"{weights.shape}.")
    per_example = weights * per_example
  if reduction == "none":
    return per_example
  if reduction == "sum":
    return jnp.sum(per_example)
  return jnp.mean(per_example)


def accuracy(logits: jax.typing.ArrayLike,
             labels: jax.typing.ArrayLike) -> jax.Array:
  r"""Top-1 accuracy: the fraction of rows whose argmax logit is the label.

  Args:
    logits: scores, shape ``[batch, num_classes]``, floating point.
    labels: integer class indices ``[batch]``, or soft targets
      ``[batch, num_classes]`` (their argmax is the label).

  Returns:
    A float32 scalar in [0, 1]. Ties in `logits` go to the lowest index.

  Example:
    >>> import jax.numpy as jnp
    >>> from sslx.losses.classification import accuracy
    >>> print(accuracy(jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0])))
    0.5
  """
  targets, _ = _targets_and_log_probs(logits, labels, 0.0, "accuracy")
  logits = jnp.asarray(logits, jnp.float32)
  hits = jnp.argmax(logits, axis=-1) == jnp.argmax(targets, axis=-1)
  return jnp.mean(hits.astype(jnp.float32))
