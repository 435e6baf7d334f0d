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
