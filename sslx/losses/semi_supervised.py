"""The classic semi-supervised baselines: Pseudo-Label, the Pi-model, UDA, VAT, MixMatch.

Pure functions over logits (and, for VAT, a logits function), written to match USB's
implementations (microsoft/Semi-supervised-learning, ``semilearn/algorithms/<name>``)
or, where USB departs from the authors' code, the authors' code; each docstring says
which. The Pi-model's squared error is :func:`sslx.losses.softmax_mse`.

Computed in float32 whatever the floating dtype of the inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.classification import (_check_float, _check_rank, _check_same_shape,
                                        _check_scalar_in_range)


def pseudo_label_loss(logits: jax.typing.ArrayLike, *, threshold: float = 0.95
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  r"""Pseudo-Label (Lee, 2013): cross-entropy against the model's own confident argmax.

  With :math:`p_i = \mathrm{softmax}(z_i)` under stop-gradient, pseudo-label
  :math:`\hat y_i = \arg\max_c p_{ic}` and mask :math:`m_i = \mathbb{1}[\max_c p_{ic}
  \ge \tau]`,

  .. math::
    \mathcal{L}_u = \frac{1}{B} \sum_i m_i \, (-\log \mathrm{softmax}(z_i)_{\hat y_i}),

  the same logits giving the target (no gradient) and the prediction, averaged over all
  B unlabeled examples: USB's ``pseudolabel`` (``consistency_loss(logits, argmax,
  'ce', mask)`` with ``FixedThresholdingHook``, mask ``max_prob >= p_cutoff``). Lee's
  paper has no threshold (``threshold=0``); USB adds one (0.95) and the ramp-up is the
  caller's (USB: linear over the first 40% of training).

  Args:
    logits: ``[batch, num_classes]`` logits on the (weakly augmented) unlabeled images.
    threshold: confidence :math:`\tau \in [0, 1]` a pseudo-label needs.

  Returns:
    ``(loss, aux)``: the scalar loss and ``'mask'`` ``[batch]``, ``'mask_rate'``,
    ``'pseudo_labels'`` ``[batch]`` int32, ``'confidence'`` ``[batch]``.

  References:
    D.-H. Lee, `Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method
    for Deep Neural Networks <https://www.kaggle.com/blobs/download/forum-message-attachment-files/746/pseudo_label_final.pdf>`_,
    ICML Workshop 2013.

  Example:
    >>> import jax.numpy as jnp
    >>> loss, aux = pseudo_label_loss(jnp.array([[4.0, 0.0], [0.0, 0.0]]), threshold=0.9)
    >>> print(aux['mask'], f"{loss:.4f}")  # -log(sigmoid(4)) / 2
    [1. 0.] 0.0091
  """
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  log_p = jax.nn.log_softmax(logits, -1)
  target_log_p = jax.lax.stop_gradient(log_p)
  pseudo_labels = jnp.argmax(target_log_p, -1).astype(jnp.int32)
  confidence = jnp.exp(jnp.max(target_log_p, -1))
  mask = (confidence >= threshold).astype(jnp.float32)
  nll = -jnp.take_along_axis(log_p, pseudo_labels[:, None], -1)[:, 0]
  loss = jnp.mean(mask * nll)
  return loss, {"mask": mask, "mask_rate": jnp.mean(mask), "pseudo_labels": pseudo_labels,
                "confidence": confidence}


TSA_SCHEDULES = ("none", "linear", "exp", "log")


def tsa_threshold(step, num_steps: int, *, schedule: str, num_classes: int) -> jax.Array:
  r"""Training Signal Annealing's threshold :math:`\eta_t` (UDA, Xie et al. 2020, Sec. 3.3).

  With training progress :math:`t = \text{step} / \text{num\_steps}` and :math:`K`
  classes, :math:`\eta_t = \alpha_t (1 - 1/K) + 1/K` where :math:`\alpha_t` is

  * ``'linear'``: :math:`t`;
  * ``'exp'``: :math:`\exp(5 (t - 1))` (releases the labeled signal late);
  * ``'log'``: :math:`1 - \exp(-5 t)` (releases it early);
  * ``'none'``: TSA off, :math:`\eta_t = 1` (no labeled example is ever dropped).

  As ``get_tsa_threshold`` of the authors' code and USB's ``UDA.TSA`` (both use scale 5).

  Args:
    step: the current step (scalar, may be traced).
    num_steps: total training steps, > 0.
    schedule: one of ``'none', 'linear', 'exp', 'log'``.
    num_classes: :math:`K \ge 1`.

  Returns:
    A float32 scalar in :math:`[1/K, 1]` (for step in [0, num_steps]).
  """
  if schedule not in TSA_SCHEDULES:
    raise ValueError(f"`schedule` must be one of {TSA_SCHEDULES}, got {schedule!r}.")
  if num_steps <= 0:
    raise ValueError(f"`num_steps` must be positive, got {num_steps}.")
  if num_classes < 1:
    raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
  if schedule == "none":
    return jnp.ones((), jnp.float32)
  t = jnp.asarray(step, jnp.float32) / num_steps
  if schedule == "linear":
    alpha = t
  elif schedule == "exp":
    alpha = jnp.exp((t - 1.0) * 5.0)
  else:
    alpha = 1.0 - jnp.exp(-t * 5.0)
  return alpha * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def tsa_cross_entropy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike, *,
                      threshold) -> tuple[jax.Array, dict[str, jax.Array]]:
  r"""Labeled cross-entropy under Training Signal Annealing (UDA).

  Examples the model already fits, :math:`p(y_i \mid x_i) > \eta_t`, are dropped:

  .. math::
    \mathcal{L}_s = \frac{\sum_i m_i \, (-\log p(y_i \mid x_i))}{\max(\sum_i m_i, 1)},
    \qquad m_i = \mathbb{1}[p(y_i \mid x_i) \le \eta_t],

  as ``anneal_sup_loss`` of the authors' code (google-research/uda, image/main.py):
  the probability of the *correct* class, the mean over the kept examples. USB's
  ``uda`` instead keeps examples whose *largest* probability is ``<= tsa`` and
  averages over the whole batch; sslx follows the authors (and the paper).
  With :math:`\eta_t = 1` (schedule ``'none'``) this is the plain mean cross-entropy.

  Args:
    logits: ``[batch, num_classes]`` logits on the labeled images.
    labels: ``[batch]`` integer labels.
    threshold: :math:`\eta_t` (from :func:`tsa_threshold`), scalar.

  Returns:
    ``(loss, aux)``: the scalar loss and ``'mask'`` ``[batch]`` (1 = trained on),
    ``'trained_ratio'`` (its mean).
  """
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"`labels` must be integers of shape [batch] = {logits.shape[:1]}, got "
                     f"{labels.dtype} {labels.shape}.")
  log_p = jax.nn.log_softmax(logits, -1)
  log_p_true = jnp.take_along_axis(log_p, labels[:, None].astype(jnp.int32), -1)[:, 0]
  mask = jax.lax.stop_gradient((jnp.exp(log_p_true) <= threshold).astype(jnp.float32))
  loss = jnp.sum(-log_p_true * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return loss, {"mask": mask, "trained_ratio": jnp.mean(mask)}


def uda_consistency(logits_weak: jax.typing.ArrayLike, logits_strong: jax.typing.ArrayLike, *,
                    threshold: float = 0.8, temperature: float = 0.4
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  r"""UDA's consistency: KL from sharpened weak-view targets to the strong view.

  With :math:`q_i = \mathrm{softmax}(z^{w}_i)` and the sharpened target
  :math:`t_i = \mathrm{softmax}(z^{w}_i / T)` (both under stop-gradient),

  .. math::
    \mathcal{L}_u = \frac{1}{B} \sum_i \mathbb{1}[\max_c q_{ic} > \tau]\,
      \mathrm{KL}(t_i \,\|\, \mathrm{softmax}(z^{s}_i)),

  the mean over all B unlabeled examples, as the authors' code (google-research/uda,
  image/main.py: ``uda_softmax_temp``, ``uda_confidence_thresh``, strict ``>``, mask on
  the unsharpened :math:`q`). Its gradient equals that of
  :func:`sslx.losses.fixmatch_consistency` with ``soft_targets=True``, which returns the
  cross-entropy :math:`H(t, p)` (the KL plus the target's entropy). USB's ``uda`` passes
  the probabilities to its pseudo-labeling hook with ``softmax=False``, which returns
  them unchanged: its targets are NOT sharpened (its ``T`` has no effect); sslx sharpens,
  as the paper and the authors' code.

  Args:
    logits_weak: ``[batch, num_classes]`` logits on the original (weak) images; targets.
    logits_strong: same shape, logits on their strong augmentations.
    threshold: :math:`\tau \in [0, 1]`; 0 keeps every example whose max is above 0.
    temperature: :math:`T > 0`; 1 is no sharpening.

  Returns:
    ``(loss, aux)``: the scalar loss and ``'mask'`` ``[batch]``, ``'mask_rate'``,
    ``'pseudo_labels'`` ``[batch]`` int32 (argmax of :math:`q`), ``'confidence'``
    ``[batch]`` (:math:`\max_c q_{ic}`).

  References:
    Q. Xie et al., `Unsupervised Data Augmentation for Consistency Training
    <https://arxiv.org/abs/1904.12848>`_, NeurIPS 2020.
  """
  _check_same_shape("logits_weak", logits_weak, "logits_strong", logits_strong)
  _check_rank("logits_weak", logits_weak, 2, "[batch, num_classes]")
  weak = jax.lax.stop_gradient(_check_float("logits_weak", logits_weak))
  strong = _check_float("logits_strong", logits_strong)
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  _check_scalar_in_range("temperature", temperature, 0.0, float("inf"), low_inclusive=False)
  log_q = jax.nn.log_softmax(weak, -1)
  confidence = jnp.exp(jnp.max(log_q, -1))
  mask = (confidence > threshold).astype(jnp.float32)
  log_t = jax.nn.log_softmax(weak / temperature, -1)
  kl = jnp.sum(jnp.exp(log_t) * (log_t - jax.nn.log_softmax(strong, -1)), -1)
  return jnp.mean(mask * kl), {"mask": mask, "mask_rate": jnp.mean(mask),
                               "pseudo_labels": jnp.argmax(log_q, -1).astype(jnp.int32),
                               "confidence": confidence}


def kl_with_logits(target_logits: jax.typing.ArrayLike, logits: jax.typing.ArrayLike) -> jax.Array:
  r"""Batch-mean :math:`\mathrm{KL}(\mathrm{softmax}(z^t) \,\|\, \mathrm{softmax}(z))` (VAT).

  .. math::
    \frac{1}{B} \sum_i \sum_c q_{ic} (\log q_{ic} - \log p_{ic}),\quad
    q = \mathrm{softmax}(z^t),\ p = \mathrm{softmax}(z),

  as USB's ``VAT.kl_div_with_logit``. ``target_logits`` get no gradient.

  Args:
    target_logits: ``[batch, num_classes]``, the clean prediction.
    logits: ``[batch, num_classes]``, the perturbed prediction.
  """
  _check_same_shape("target_logits", target_logits, "logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  log_q = jax.nn.log_softmax(jax.lax.stop_gradient(_check_float("target_logits", target_logits)))
  log_p = jax.nn.log_softmax(_check_float("logits", logits))
  return jnp.mean(jnp.sum(jnp.exp(log_q) * (log_q - log_p), -1))


def entropy_loss(logits: jax.typing.ArrayLike) -> jax.Array:
  r"""Batch-mean entropy :math:`-\frac{1}{B}\sum_i \sum_c p_{ic} \log p_{ic}` (entropy
  minimisation, Grandvalet & Bengio 2005; VAT's "+EntMin"; USB's ``VAT.entropy_loss``).

  Args:
    logits: ``[batch, num_classes]``; the gradient flows into them.
  """
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  log_p = jax.nn.log_softmax(logits, -1)
  return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, -1))


def _l2_normalize(d: jax.Array) -> jax.Array:
  """Each example (axis 0) scaled to unit L2 norm; USB adds 1e-16 to the norm."""
  norm = jnp.sqrt(jnp.sum(d * d, axis=tuple(range(1, d.ndim)), keepdims=True))
  return d / (norm + 1e-16)


def vat_perturbation(logits_fn, inputs: jax.typing.ArrayLike, target_logits: jax.typing.ArrayLike,
                     key: jax.Array, *, xi: float = 1e-6, eps: float = 6.0,
                     num_iters: int = 1) -> jax.Array:
  r"""VAT's adversarial perturbation :math:`r_{adv}` by power iteration (Miyato et al. 2018).

  Starting from a random Gaussian :math:`d`, ``num_iters`` times

  .. math::
    d \leftarrow \nabla_{d'} \mathrm{KL}(q \,\|\, p(\cdot \mid x + d'))\big|_{d' = \xi\,
    \bar d},

  with :math:`\bar d = d / \|d\|_2` per example and :math:`q` the clean prediction
  (``target_logits``, no gradient); then :math:`r_{adv} = \epsilon\, \bar d`. For small
  :math:`\xi` this approximates the dominant eigenvector of the KL's Hessian in the
  input, the direction the prediction is most sensitive to. As USB's ``VAT.vat_loss``
  (defaults xi 1e-6, eps 6, one iteration; the norm is over every non-batch axis, plus
  1e-16). The result carries no gradient (``r_adv.detach()`` in USB).

  Args:
    logits_fn: ``inputs -> [batch, num_classes]`` logits (the model; jittable).
    inputs: ``[batch, ...]`` model inputs (normalised images).
    target_logits: ``[batch, num_classes]`` clean logits on `inputs`.
    key: PRNG key for the initial direction.
    xi: finite-difference step :math:`\xi > 0`.
    eps: perturbation norm :math:`\epsilon \ge 0`.
    num_iters: power iterations, >= 1.

  Returns:
    ``[batch, ...]`` float32 perturbation of L2 norm ``eps`` per example.
  """
  inputs = _check_float("inputs", inputs)
  _check_rank("target_logits", target_logits, 2, "[batch, num_classes]")
  if jnp.shape(target_logits)[0] != inputs.shape[0]:
    raise ValueError(f"`target_logits` must have the batch size of `inputs` ({inputs.shape[0]}),"
                     f" got shape {tuple(jnp.shape(target_logits))}.")
  _check_scalar_in_range("xi", xi, 0.0, float("inf"), low_inclusive=False)
  _check_scalar_in_range("eps", eps, 0.0, float("inf"))
  if not isinstance(num_iters, int) or num_iters < 1:
    raise ValueError(f"`num_iters` must be an int >= 1, got {num_iters!r}.")
  target_logits = jax.lax.stop_gradient(target_logits)
  kl_at = lambda r: kl_with_logits(target_logits, logits_fn(inputs + r))
  d = jax.random.normal(key, inputs.shape, jnp.float32)
  for _ in range(num_iters):
    d = jax.grad(kl_at)(xi * _l2_normalize(d))
  return jax.lax.stop_gradient(eps * _l2_normalize(d))


def sharpen(probs: jax.typing.ArrayLike, *, temperature: float = 0.5) -> jax.Array:
  r"""Temperature sharpening :math:`p_c^{1/T} / \sum_k p_k^{1/T}` (MixMatch, Eq. 7).

  Args:
    probs: ``[batch, num_classes]`` probabilities (non-negative rows).
    temperature: :math:`T > 0`; below 1 sharpens, 1 is the identity on normalised rows.
  """
  probs = _check_float("probs", probs)
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  _check_scalar_in_range("temperature", temperature, 0.0, float("inf"), low_inclusive=False)
  # In log space: p^(1/T) underflows for small p and T.
  logits = jnp.log(jnp.maximum(probs, 1e-30)) / temperature
  return jax.nn.softmax(logits, -1)


def mixup_lambda(key: jax.Array, *, alpha: float = 0.5) -> jax.Array:
  r""":math:`\lambda' = \max(\lambda, 1 - \lambda)`, :math:`\lambda \sim
  \mathrm{Beta}(\alpha, \alpha)`: MixMatch's mixing weight (Eq. 8-9), one per batch as
  USB's ``mixup_one_target(..., is_bias=True)``; 1 (no mixing) when ``alpha`` is 0."""
  _check_scalar_in_range("alpha", alpha, 0.0, float("inf"))
  if alpha == 0:
    return jnp.ones((), jnp.float32)
  lam = jax.random.beta(key, alpha, alpha)
  return jnp.maximum(lam, 1.0 - lam).astype(jnp.float32)


def mixup(inputs: jax.typing.ArrayLike, targets: jax.typing.ArrayLike, *, lam,
          permutation: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""MixUp with a given weight and partner order: :math:`\lambda x + (1 - \lambda)
  x_{\pi}`, the same for the targets (as USB's ``mixup_one_target``).

  Args:
    inputs: ``[batch, ...]``.
    targets: ``[batch, num_classes]`` (one-hot or soft).
    lam: scalar weight of the original example.
    permutation: ``[batch]`` int, the partner of each example.

  Returns:
    ``(mixed_inputs, mixed_targets)``, float32, shapes of the inputs.
  """
  inputs = _check_float("inputs", inputs)
  targets = _check_float("targets", targets)
  _check_rank("targets", targets, 2, "[batch, num_classes]")
  permutation = jnp.asarray(permutation)
  n = inputs.shape[0]
  if targets.shape[0] != n or permutation.shape != (n,):
    raise ValueError(f"`targets` and `permutation` must have the batch size of `inputs` ({n}), "
                     f"got {targets.shape} and {permutation.shape}.")
  lam = jnp.asarray(lam, jnp.float32)
  return (lam * inputs + (1 - lam) * inputs[permutation],
          lam * targets + (1 - lam) * targets[permutation])


def mixmatch_loss(logits: jax.typing.ArrayLike, mixed_targets: jax.typing.ArrayLike, *,
                  num_labeled: int) -> tuple[jax.Array, jax.Array]:
  r"""MixMatch's two losses on a mixed batch whose first ``num_labeled`` rows are X'.

  .. math::
    \mathcal{L}_X = \frac{1}{|X'|} \sum_{i \in X'} H(\tilde y_i, \mathrm{softmax}(z_i)),
    \qquad
    \mathcal{L}_U = \frac{1}{|U'|} \sum_{i \in U'} \frac{1}{K}
      \| \tilde y_i - \mathrm{softmax}(z_i) \|_2^2,

  as USB's ``mixmatch`` (``ce_loss`` with soft targets; ``consistency_loss(..., 'mse')``,
  the mean over the K classes, the paper's Eq. 4 divides by the class count too).
  The targets get no gradient.

  Args:
    logits: ``[batch, num_classes]`` logits on the mixed inputs.
    mixed_targets: same shape, the mixed (soft) targets.
    num_labeled: rows of the labeled part X', ``0 < num_labeled < batch``.

  Returns:
    ``(labeled_loss, unlabeled_loss)``, two scalars.
  """
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  _check_same_shape("logits", logits, "mixed_targets", mixed_targets)
  if not 0 < num_labeled < logits.shape[0]:
    raise ValueError(f"`num_labeled` must be in (0, {logits.shape[0]}), got {num_labeled}.")
  targets = jax.lax.stop_gradient(_check_float("mixed_targets", mixed_targets))
  log_p = jax.nn.log_softmax(logits, -1)
  labeled = jnp.mean(-jnp.sum(targets[:num_labeled] * log_p[:num_labeled], -1))
  unlabeled = jnp.mean((jnp.exp(log_p[num_labeled:]) - targets[num_labeled:]) ** 2)
  return labeled, unlabeled
