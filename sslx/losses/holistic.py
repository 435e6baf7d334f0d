"""ReMixMatch's losses (Berthelot et al., ICLR 2020), after MixMatch's in semi_supervised.py.

Pure functions over logits and (soft) targets, written as USB writes ReMixMatch
(microsoft/Semi-supervised-learning, ``semilearn/algorithms/remixmatch``). The pieces
ReMixMatch shares with MixMatch (:func:`sslx.losses.sharpen`, :func:`sslx.losses.mixup`,
:func:`sslx.losses.mixup_lambda`) and with AdaMatch/SoftMatch (the distribution-alignment
EMA, :func:`sslx.losses.distribution_alignment_update`, :func:`sslx.losses.align_distribution`)
are reused from there.

Shapes: ``[batch, num_classes]`` logits/targets, ``[batch]`` labels. Computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.classification import _check_float, _check_rank, _check_same_shape


def soft_cross_entropy(logits: jax.typing.ArrayLike, targets: jax.typing.ArrayLike) -> jax.Array:
  r"""Mean cross-entropy against soft targets, :math:`\frac1B \sum_i -\sum_c t_{ic} \log
  \mathrm{softmax}(z_i)_c` (USB's ``ce_loss`` with soft targets). Targets get no gradient.

  Args:
    logits: ``[batch, num_classes]``.
    targets: ``[batch, num_classes]``, rows summing to 1.

  Returns:
    A float32 scalar.
  """
  logits = _check_float("logits", logits)
  _check_rank("logits", logits, 2, "[batch, num_classes]")
  _check_same_shape("logits", logits, "targets", targets)
  targets = jax.lax.stop_gradient(_check_float("targets", targets))
  return jnp.mean(-jnp.sum(targets * jax.nn.log_softmax(logits, -1), -1))


def remixmatch_loss(logits_mixed: jax.typing.ArrayLike, mixed_targets: jax.typing.ArrayLike,
                    logits_strong: jax.typing.ArrayLike, guess: jax.typing.ArrayLike, *,
                    num_labeled: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""ReMixMatch's three class losses.

  .. math::
    \mathcal{L}_X = H(\tilde y_{X'}, p(\tilde x_{X'})), \quad
    \mathcal{L}_U = H(\tilde y_{U'}, p(\tilde x_{U'})), \quad
    \mathcal{L}_{U_1} = H(q, p(\hat u_1)),

  each a mean over its rows: the mixed labeled rows (the first ``num_labeled``), the
  mixed unlabeled rows (the rest), and the first strong view of every unlabeled image
  before mixing against its guess :math:`q` (sharpened, aligned weak prediction). Unlike
  MixMatch the unlabeled mixed term is a cross-entropy, not a squared error (paper Eq. in
  Algorithm 1; USB ``ce_loss(logits_u, mixed_y[num_lb:])``).

  Args:
    logits_mixed: ``[batch, num_classes]`` logits on the mixed batch.
    mixed_targets: same shape, the mixed targets.
    logits_strong: ``[batch_u, num_classes]`` logits of the first strong view (unmixed).
    guess: ``[batch_u, num_classes]`` its targets.
    num_labeled: rows of the labeled part, ``0 < num_labeled < batch``.

  Returns:
    ``(labeled_loss, unlabeled_loss, strong_loss)``, float32 scalars.
  """
  _check_rank("logits_mixed", logits_mixed, 2, "[batch, num_classes]")
  n = jnp.shape(logits_mixed)[0]
  if not 0 < num_labeled < n:
    raise ValueError(f"`num_labeled` must be in (0, {n}) (rows of `logits_mixed`), "
                     f"got {num_labeled}.")
  _check_same_shape("logits_mixed", logits_mixed, "mixed_targets", mixed_targets)
  _check_same_shape("logits_strong", logits_strong, "guess", guess)
  logits_mixed, mixed_targets = jnp.asarray(logits_mixed), jnp.asarray(mixed_targets)
  labeled = soft_cross_entropy(logits_mixed[:num_labeled], mixed_targets[:num_labeled])
  unlabeled = soft_cross_entropy(logits_mixed[num_labeled:], mixed_targets[num_labeled:])
  return labeled, unlabeled, soft_cross_entropy(logits_strong, guess)


def class_prior(labels: jax.typing.ArrayLike, num_classes: int) -> jax.Array:
  r"""The class distribution of ``labels``, :math:`n_c / \sum_k n_k` (ReMixMatch's target
  for distribution alignment: USB's ``p_target_type='gt'`` from the labeled set).

  Args:
    labels: ``[n]`` int labels in ``[0, num_classes)``; negative entries are ignored.
    num_classes: K.

  Returns:
    ``[num_classes]`` float32; uniform when no label is known.
  """
  labels = jnp.asarray(labels)
  if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"`labels` must be a [n] int array, got shape {labels.shape} and dtype "
                     f"{labels.dtype}.")
  counts = jnp.sum((labels[:, None] == jnp.arange(num_classes)[None, :]), 0).astype(jnp.float32)
  total = jnp.sum(counts)
  return jnp.where(total > 0, counts / jnp.maximum(total, 1.0), 1.0 / num_classes)
