"""Graph pseudo-label loss: certainty- and class-weighted cross-entropy.

The loss of deep label propagation (Iscen, Tolias, Avrithis and Chum, "Label
Propagation for Deep Semi-supervised Learning", CVPR 2019). Its targets come
from the graph engines in :mod:`sslx.graph` (:func:`sslx.graph.lp_pseudo_labels`
over :func:`sslx.graph.propagate` scores, or
:func:`sslx.graph.batch_label_propagation` inside a step).

The engines used to live here; their old names (``sslx.losses.graph.knn_graph``
and the rest) still resolve, with a ``DeprecationWarning`` naming the new home.
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp

from sslx.graph import _checks

# Engine names that lived in this module before sslx.graph: old imports keep working.
_MOVED = {"knn_graph": "sslx.graph", "knn_search": "sslx.graph", "propagate": "sslx.graph",
          "lp_pseudo_labels": "sslx.graph", "batch_label_propagation": "sslx.graph",
          "GraphTargets": "sslx.graph"}


def _moved(module_name: str, name: str):
  """The engine `name` from sslx.graph, with a DeprecationWarning (PEP 562 hook)."""
  if name not in _MOVED:
    raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
  warnings.warn(
      f"`{module_name}.{name}` moved to `sslx.graph.{name}` (graph engines are not losses); "
      f"import it from there.", DeprecationWarning, stacklevel=3)
  import sslx.graph  # pylint: disable=import-outside-toplevel
  return getattr(sslx.graph, name)


def __getattr__(name: str):
  return _moved(__name__, name)


def weighted_pseudo_label_loss(
    logits: chex.Array,
    pseudo_labels: chex.Array,
    sample_weights: chex.Array,
    class_weights: chex.Array,
) -> jax.Array:
  r"""Certainty- and class-weighted cross-entropy on pseudo-labels.

  .. math::
    L = \frac{1}{B} \sum_{i=1}^{B} \omega_i \, \zeta_{\hat y_i} \,
        \bigl(-\log \mathrm{softmax}(\mathrm{logits}_i)_{\hat y_i}\bigr)

  (Iscen et al. 2019, eq. 9; averaged over the whole batch as in their code).
  Entries with ``pseudo_labels == -1`` contribute zero but still count in B.

  Example::

    >>> loss = weighted_pseudo_label_loss(logits, pseudo, omega, zeta)

  Args:
    logits: ``[B, C]`` unnormalised predictions.
    pseudo_labels: ``[B]`` int in ``[-1, C)``.
    sample_weights: ``[B]`` per-example weights :math:`\omega`.
    class_weights: ``[C]`` per-class weights :math:`\zeta`.

  Returns:
    Scalar float32 loss, differentiable in ``logits``.
  """
  if jnp.ndim(logits) != 2:
    raise ValueError(
        f"`logits` must have rank 2 ([batch, num_classes]), got shape "
        f"{tuple(jnp.shape(logits))}.")
  b, num_classes = jnp.shape(logits)
  labels = _checks.check_labels(pseudo_labels, b, num_classes, require_labeled=False,
                         require_all_classes=False, name="pseudo_labels",
                         points="examples")
  if jnp.shape(sample_weights) != (b,):
    raise ValueError(
        f"`sample_weights` must have shape [batch] = ({b},), got "
        f"{tuple(jnp.shape(sample_weights))}.")
  if jnp.shape(class_weights) != (num_classes,):
    raise ValueError(
        f"`class_weights` must have shape [num_classes] = ({num_classes},), "
        f"got {tuple(jnp.shape(class_weights))}.")
  logits = jnp.asarray(logits, jnp.float32)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0)
  nll = -jnp.take_along_axis(log_p, safe[:, None], axis=1)[:, 0]
  w = (jnp.asarray(sample_weights, jnp.float32)
       * jnp.asarray(class_weights, jnp.float32)[safe])
  return jnp.sum(jnp.where(valid, w * nll, 0.0)) / b

