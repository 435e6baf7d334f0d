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
    threshold_warmup: count the unused -1s in the normaliser (the paper's threshold warm-up).

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

  The convex mapping :math:`\mathcal{M}(x) = x / (2 - x)` of the paper, as the
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


# ---------------------------------------------------------------------------
# FreeMatch: self-adaptive thresholds and fairness
# ---------------------------------------------------------------------------


def freematch_update(global_threshold: jax.typing.ArrayLike, class_probs: jax.typing.ArrayLike,
                     label_hist: jax.typing.ArrayLike, probs: jax.typing.ArrayLike, *,
                     momentum: float = 0.999, use_quantile: bool = False,
                     clip_threshold: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""FreeMatch's EMAs after one batch of weak-view probabilities :math:`q_b`.

  .. math::
    \tau_t = \lambda \tau_{t-1} + (1 - \lambda) \tfrac{1}{B} \textstyle\sum_b \max_c q_{bc},
    \quad
    \tilde p_t = \lambda \tilde p_{t-1} + (1 - \lambda) \tfrac{1}{B} \textstyle\sum_b q_b,
    \quad
    \tilde h_t = \lambda \tilde h_{t-1} + (1 - \lambda)\,
      \mathrm{hist}(\arg\max_c q_{bc}) / B

  (the paper's global and local estimates, and the label histogram of the fairness loss). USB options: the 0.8
  quantile of the confidences instead of their mean (``use_quantile``) and
  :math:`\tau_t` clipped to [0, 0.95] (``clip_threshold``); both off by default.

  Args:
    global_threshold: scalar :math:`\tau_{t-1}` (USB starts at 1).
    class_probs: ``[num_classes]`` :math:`\tilde p_{t-1}` (USB starts at ones).
    label_hist: ``[num_classes]`` :math:`\tilde h_{t-1}` (USB starts at ones).
    probs: ``[batch, num_classes]`` softmax of the weak-view logits.
    momentum: the EMA decay :math:`\lambda` (USB ``ema_p``).

  Returns:
    ``(global_threshold, class_probs, label_hist)`` after the update, float32.
  """
  _check_scalar_in_range("momentum", momentum, 0.0, 1.0)
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  q = jax.lax.stop_gradient(_check_float("probs", probs))
  k = q.shape[-1]
  _check_shape("global_threshold", global_threshold, (), "[] (a scalar)")
  _check_shape("class_probs", class_probs, (k,), "[num_classes]")
  _check_shape("label_hist", label_hist, (k,), "[num_classes]")
  conf = jnp.max(q, axis=-1)
  stat = jnp.quantile(conf, 0.8) if use_quantile else jnp.mean(conf)
  tau = momentum * _check_float("global_threshold", global_threshold) + (1 - momentum) * stat
  if clip_threshold:
    tau = jnp.clip(tau, 0.0, 0.95)
  p = momentum * _check_float("class_probs", class_probs) + (1 - momentum) * jnp.mean(q, axis=0)
  hist = jnp.mean(jax.nn.one_hot(jnp.argmax(q, axis=-1), k, dtype=jnp.float32), axis=0)
  h = momentum * _check_float("label_hist", label_hist) + (1 - momentum) * hist
  return tau, p, h


def freematch_thresholds(global_threshold: jax.typing.ArrayLike,
                         class_probs: jax.typing.ArrayLike) -> jax.Array:
  r"""Self-adaptive class thresholds :math:`\tau_t(c) = \tau_t\, \tilde p_t(c) / \max_{c'}
  \tilde p_t(c')` (the paper's MaxNorm of the local estimate).

  Args:
    global_threshold: scalar :math:`\tau_t`.
    class_probs: ``[num_classes]`` :math:`\tilde p_t`.

  Returns:
    ``[num_classes]`` float32 thresholds.
  """
  _check_shape("global_threshold", global_threshold, (), "[] (a scalar)")
  p = _check_float("class_probs", class_probs)
  _check_rank("class_probs", p, 1, "[num_classes]")
  return _check_float("global_threshold", global_threshold) * p / jnp.max(p)


def _inverse_or_zero(x):
  # USB's replace_inf_to_zero(1 / x): classes with a zero count get weight 0.
  return jnp.where(x > 0, 1.0 / jnp.where(x > 0, x, 1.0), 0.0)


def freematch_fairness_loss(logits_strong: jax.typing.ArrayLike, mask: jax.typing.ArrayLike,
                            class_probs: jax.typing.ArrayLike,
                            label_hist: jax.typing.ArrayLike) -> jax.Array:
  r"""FreeMatch's self-adaptive fairness term, as USB's ``entropy_loss``.

  Over the masked-in strong-view predictions :math:`p_b` with mean :math:`\bar p` and
  histogram of their argmax :math:`\bar h` (fractions),

  .. math::
    \mathcal{L}_f = \sum_c \mathrm{SumNorm}(\tilde p_t / \tilde h_t)_c
      \log\bigl(\mathrm{SumNorm}(\bar p / \bar h)_c + 10^{-12}\bigr),

  i.e. the negative cross-entropy :math:`-\mathrm{H}` of the paper, minimised (it pushes
  the batch's class mean towards the model's running estimate). Classes with a zero
  count get weight 0 (USB turns ``1 / 0`` into 0). Gradients reach ``logits_strong`` only
  through :math:`\bar p`. With no example masked in the loss is 0, as USB skips it.

  Args:
    logits_strong: ``[batch, num_classes]`` logits of the strong views.
    mask: ``[batch]`` 0/1, the threshold mask of the weak views.
    class_probs: ``[num_classes]`` running :math:`\tilde p_t`.
    label_hist: ``[num_classes]`` running :math:`\tilde h_t`.

  Returns:
    The float32 scalar loss.
  """
  _check_rank("logits_strong", logits_strong, 2, "[batch, num_classes]")
  logits = _check_float("logits_strong", logits_strong)
  b, k = logits.shape
  _check_shape("mask", mask, (b,), "[batch]")
  _check_shape("class_probs", class_probs, (k,), "[num_classes]")
  _check_shape("label_hist", label_hist, (k,), "[num_classes]")
  w = jax.lax.stop_gradient(_check_float("mask", mask))
  n = jnp.sum(w)
  safe_n = jnp.maximum(n, 1.0)
  p_s = jax.nn.softmax(logits, axis=-1)
  hist_s = jnp.sum(w[:, None] * jax.nn.one_hot(jnp.argmax(logits, -1), k), axis=0) / safe_n
  model = jax.lax.stop_gradient(_check_float("class_probs", class_probs)
                                * _inverse_or_zero(_check_float("label_hist", label_hist)))
  model = model / jnp.sum(model)
  mean = jnp.sum(w[:, None] * p_s, axis=0) / safe_n * _inverse_or_zero(hist_s)
  # With no example masked in, `mean` is 0: divide by 1 rather than by a tiny floor, whose
  # square underflows and turns the (masked-out) gradient into 0 * inf = NaN.
  total = jnp.sum(mean)
  mean = mean / jnp.where(total > 0, total, 1.0)
  loss = jnp.sum(model * jnp.log(mean + 1e-12))
  return jnp.where(n > 0, loss, 0.0)


# ---------------------------------------------------------------------------
# Distribution alignment with EMAs (SoftMatch's uniform alignment, AdaMatch)
# ---------------------------------------------------------------------------


def distribution_alignment_update(p_model: jax.typing.ArrayLike, p_target: jax.typing.ArrayLike,
                                  num_updates: jax.typing.ArrayLike,
                                  probs_unlabeled: jax.typing.ArrayLike,
                                  probs_labeled: jax.typing.ArrayLike | None = None, *,
                                  momentum: float = 0.999
                                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""The EMAs of USB's ``DistAlignEMAHook`` after one batch.

  .. math::
    p_{model} \leftarrow \lambda p_{model} + (1 - \lambda)\, \overline{q^{u}},
    \qquad p_{target} \leftarrow \lambda p_{target} + (1 - \lambda)\, \overline{q^{l}}

  where the first update sets :math:`p_{model} = \overline{q^u}` (USB starts from
  ``None``), and :math:`p_{target}` moves only when ``probs_labeled`` is given (AdaMatch's
  ``'model'`` target; SoftMatch keeps it uniform).

  Args:
    p_model: ``[num_classes]`` running mean of the unlabeled predictions.
    p_target: ``[num_classes]`` target distribution (USB starts at uniform).
    num_updates: int32 scalar, updates so far (0: ``p_model`` is not set yet).
    probs_unlabeled: ``[batch_u, num_classes]`` weak-view probabilities.
    probs_labeled: ``[batch_l, num_classes]`` labeled probabilities, or None.
    momentum: the EMA decay :math:`\lambda`.

  Returns:
    ``(p_model, p_target, num_updates + 1)``.
  """
  _check_scalar_in_range("momentum", momentum, 0.0, 1.0)
  _check_rank("probs_unlabeled", probs_unlabeled, 2, "[batch, num_classes]")
  qu = jax.lax.stop_gradient(_check_float("probs_unlabeled", probs_unlabeled))
  k = qu.shape[-1]
  _check_shape("p_model", p_model, (k,), "[num_classes]")
  _check_shape("p_target", p_target, (k,), "[num_classes]")
  count = _check_int("num_updates", num_updates, (), "[] (a scalar)")
  old = _check_float("p_model", p_model)
  mean_u = jnp.mean(qu, axis=0)
  new_model = jnp.where(count > 0, momentum * old + (1 - momentum) * mean_u, mean_u)
  target = _check_float("p_target", p_target)
  if probs_labeled is not None:
    _check_rank("probs_labeled", probs_labeled, 2, "[batch, num_classes]")
    ql = jax.lax.stop_gradient(_check_float("probs_labeled", probs_labeled))
    _check_shape("probs_labeled", ql, (ql.shape[0], k), "[batch, num_classes]")
    target = momentum * target + (1 - momentum) * jnp.mean(ql, axis=0)
  return new_model, target, count + 1


def align_distribution(probs: jax.typing.ArrayLike, p_model: jax.typing.ArrayLike,
                       p_target: jax.typing.ArrayLike) -> jax.Array:
  r"""Distribution alignment as USB writes it:
  :math:`\tilde q \propto q\, (p_{target} + 10^{-6}) / (p_{model} + 10^{-6})`, renormalised.

  Args:
    probs: ``[batch, num_classes]`` probabilities.
    p_model: ``[num_classes]`` running mean of the model's predictions.
    p_target: ``[num_classes]`` target distribution.

  Returns:
    ``[batch, num_classes]`` float32 aligned probabilities (no gradient).
  """
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  q = jax.lax.stop_gradient(_check_float("probs", probs))
  k = q.shape[-1]
  _check_shape("p_model", p_model, (k,), "[num_classes]")
  _check_shape("p_target", p_target, (k,), "[num_classes]")
  ratio = (_check_float("p_target", p_target) + 1e-6) / (_check_float("p_model", p_model) + 1e-6)
  aligned = q * jax.lax.stop_gradient(ratio)
  return aligned / jnp.sum(aligned, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------
# SoftMatch: truncated Gaussian weighting
# ---------------------------------------------------------------------------


def softmatch_update(mean: jax.typing.ArrayLike, variance: jax.typing.ArrayLike,
                     confidence: jax.typing.ArrayLike, *, momentum: float = 0.999
                     ) -> tuple[jax.Array, jax.Array]:
  r"""SoftMatch's EMAs of the confidence's mean and (unbiased) variance.

  .. math::
    \hat\mu_t = \lambda \hat\mu_{t-1} + (1 - \lambda) \tfrac{1}{B} \textstyle\sum_b m_b,
    \quad
    \hat\sigma^2_t = \lambda \hat\sigma^2_{t-1} + (1 - \lambda)
      \tfrac{1}{B - 1} \textstyle\sum_b (m_b - \bar m)^2

  (USB's ``SoftMatchWeightingHook.update`` with ``per_class=False``;
  USB starts at :math:`\hat\mu_0 = 1/C`, :math:`\hat\sigma^2_0 = 1`).

  Args:
    mean: scalar :math:`\hat\mu_{t-1}`.
    variance: scalar :math:`\hat\sigma^2_{t-1}`.
    confidence: ``[batch]`` max class probabilities :math:`m_b`, batch >= 2.
    momentum: the EMA decay :math:`\lambda`.

  Returns:
    ``(mean, variance)`` after the update, float32 scalars.
  """
  _check_scalar_in_range("momentum", momentum, 0.0, 1.0)
  _check_rank("confidence", confidence, 1, "[batch]")
  m = jax.lax.stop_gradient(_check_float("confidence", confidence))
  if m.shape[0] < 2:
    raise ValueError(f"`confidence` needs at least 2 examples for an unbiased variance, got "
                     f"shape {m.shape}.")
  _check_shape("mean", mean, (), "[] (a scalar)")
  _check_shape("variance", variance, (), "[] (a scalar)")
  new_mean = momentum * _check_float("mean", mean) + (1 - momentum) * jnp.mean(m)
  new_var = (momentum * _check_float("variance", variance)
             + (1 - momentum) * jnp.var(m, ddof=1))
  return new_mean, new_var


def softmatch_weights(confidence: jax.typing.ArrayLike, mean: jax.typing.ArrayLike,
                      variance: jax.typing.ArrayLike, *, n_sigma: float = 2.0) -> jax.Array:
  r"""SoftMatch's truncated Gaussian sample weights (USB's ``masking``).

  .. math::
    \lambda(m_b) = \exp\Bigl(-\frac{\min(m_b - \hat\mu_t, 0)^2}
      {2 \hat\sigma^2_t / n_\sigma^2}\Bigr)

  1 for confidences at or above the mean, a Gaussian decay below it.

  Args:
    confidence: ``[batch]`` max class probabilities.
    mean: scalar :math:`\hat\mu_t`.
    variance: scalar :math:`\hat\sigma^2_t` (> 0).
    n_sigma: the width divisor (USB 2).

  Returns:
    ``[batch]`` float32 weights in (0, 1] (no gradient).
  """
  _check_scalar_in_range("n_sigma", n_sigma, 0.0, float("inf"), low_inclusive=False)
  _check_rank("confidence", confidence, 1, "[batch]")
  m = jax.lax.stop_gradient(_check_float("confidence", confidence))
  _check_shape("mean", mean, (), "[] (a scalar)")
  _check_shape("variance", variance, (), "[] (a scalar)")
  below = jnp.minimum(m - _check_float("mean", mean), 0.0)
  return jnp.exp(-(below ** 2) / (2 * _check_float("variance", variance) / n_sigma ** 2))


# ---------------------------------------------------------------------------
# AdaMatch: relative threshold
# ---------------------------------------------------------------------------


def relative_threshold(probs_labeled: jax.typing.ArrayLike, *, threshold: float = 0.95
                       ) -> jax.Array:
  r"""AdaMatch's relative confidence threshold
  :math:`c_\tau = \tau \cdot \tfrac{1}{B_l} \sum_b \max_c p^{l}_{bc}`.

  Args:
    probs_labeled: ``[batch_l, num_classes]`` probabilities of the weak labeled views.
    threshold: the relative cut-off :math:`\tau` (USB ``p_cutoff``).

  Returns:
    A float32 scalar threshold (no gradient).
  """
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  _check_rank("probs_labeled", probs_labeled, 2, "[batch, num_classes]")
  p = jax.lax.stop_gradient(_check_float("probs_labeled", probs_labeled))
  return threshold * jnp.mean(jnp.max(p, axis=-1))


# ---------------------------------------------------------------------------
# Dash: dynamic threshold on the loss
# ---------------------------------------------------------------------------


def dash_threshold(ssl_step: jax.typing.ArrayLike, rho_init: jax.typing.ArrayLike, *,
                   c: float = 1.0001, gamma: float = 1.27, rho_min: float = 0.05,
                   update_every: int = 10240) -> jax.Array:
  r"""Dash's dynamic loss threshold (USB's ``DashThresholdingHook.update``).

  .. math::
    \rho_t = \max\bigl(C\, \gamma^{-\lfloor t / n \rfloor}\, \hat\rho,\ \rho_{min}\bigr)

  with :math:`t` the step of the semi-supervised stage (0 after warm-up) and :math:`n` the
  update period (USB: every 10 epochs, ``10 * num_iter_per_epoch``); the paper's
  :math:`\gamma^{-(t-1)}` counts updates from 1. USB keeps a counter of updates; the
  closed form here gives the same sequence and needs no state.

  Args:
    ssl_step: int scalar :math:`t \ge 0`.
    rho_init: scalar :math:`\hat\rho`, the loss of the warmed-up model.
    c, gamma: the schedule's constants (:math:`C > 0`, :math:`\gamma > 1`).
    rho_min: the floor of the threshold (> 0).
    update_every: the period :math:`n` in steps (>= 1).

  Returns:
    A float32 scalar :math:`\rho_t`.
  """
  _check_scalar_in_range("c", c, 0.0, float("inf"), low_inclusive=False)
  _check_scalar_in_range("gamma", gamma, 1.0, float("inf"))
  _check_scalar_in_range("rho_min", rho_min, 0.0, float("inf"), low_inclusive=False)
  if not isinstance(update_every, int) or update_every < 1:
    raise ValueError(f"`update_every` must be an int >= 1, got {update_every!r}.")
  _check_shape("ssl_step", ssl_step, (), "[] (a scalar)")
  _check_shape("rho_init", rho_init, (), "[] (a scalar)")
  updates = jnp.maximum(jnp.asarray(ssl_step, jnp.int32), 0) // update_every
  rho = c * jnp.power(jnp.float32(gamma), -updates.astype(jnp.float32)) * _check_float(
      "rho_init", rho_init)
  return jnp.maximum(rho, rho_min)


def dash_selection(logits_weak: jax.typing.ArrayLike, rho: jax.typing.ArrayLike, *,
                   hard_label: jax.typing.ArrayLike, temperature: float = 0.5
                   ) -> tuple[jax.Array, jax.Array]:
  r"""Dash's pseudo-label targets and mask: keep an example when its weak-view loss is at
  most :math:`\rho_t` (USB's ``DashThresholdingHook.masking``).

  .. math::
    t_b = \mathrm{onehot}(\arg\max z_b) \text{ (hard) or } \mathrm{softmax}(z_b / T),
    \qquad \mathrm{mask}_b = \mathbb{1}[\mathrm{H}(t_b, \mathrm{softmax}(z_b)) \le \rho_t]

  USB switches to hard labels once :math:`\rho_t` reaches :math:`\rho_{min}`; pass that as
  ``hard_label`` (a traced bool is fine).

  Args:
    logits_weak: ``[batch, num_classes]`` weak-view logits (no gradient).
    rho: scalar threshold :math:`\rho_t`.
    hard_label: bool scalar, one-hot targets instead of sharpened ones.
    temperature: :math:`T > 0` of the soft targets (USB 0.5).

  Returns:
    ``(mask, targets)``: ``[batch]`` float32 0/1 and ``[batch, num_classes]`` float32.
  """
  _check_scalar_in_range("temperature", temperature, 0.0, float("inf"), low_inclusive=False)
  _check_rank("logits_weak", logits_weak, 2, "[batch, num_classes]")
  z = jax.lax.stop_gradient(_check_float("logits_weak", logits_weak))
  _check_shape("rho", rho, (), "[] (a scalar)")
  hard = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=jnp.float32)
  targets = jnp.where(jnp.asarray(hard_label, bool), hard, jax.nn.softmax(z / temperature, -1))
  loss_w = -jnp.sum(targets * jax.nn.log_softmax(z, axis=-1), axis=-1)
  return (loss_w <= rho).astype(jnp.float32), targets
