"""Self-supervised objectives without negatives: BYOL (and its predictor-based family).

Pure functions over embeddings ``[batch, dim]``; the caller decides which network made
which embedding. Computed in float32 whatever the floating dtype of the inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.classification import _check_float

_EPS = 1e-12  # floor of a vector's norm (torch's F.normalize uses the same)


def _check_pair(prediction, target):
  prediction = _check_float("prediction", prediction)
  target = _check_float("target", target)
  if prediction.ndim != 2:
    raise ValueError(f"`prediction` must be [batch, dim], got shape {prediction.shape}.")
  if prediction.shape != target.shape:
    raise ValueError(f"`prediction` and `target` must have the same shape, got "
                     f"{prediction.shape} and {target.shape}.")
  return prediction, target


def _normalize(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def byol_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """BYOL's regression loss, ``mean_i (2 - 2 cos(p_i, z_i))``, target under stop-gradient.

  .. math::
    \\mathcal{L} = \\frac{1}{B} \\sum_i \\left\\| \\frac{p_i}{\\|p_i\\|} -
    \\frac{z_i}{\\|z_i\\|} \\right\\|_2^2 = \\frac{1}{B} \\sum_i (2 - 2 \\cos(p_i, z_i))

  The online network's prediction ``p`` regresses the target network's projection
  ``z`` of the *other* view; the method symmetrises over the two views (Grill et al.,
  NeurIPS 2020, Eq. 2; the official code's ``regression_loss`` and solo-learn's
  ``byol_loss_func`` compute the same per-pair value).

  Args:
    prediction: ``[batch, dim]`` online predictions ``q(g(f(x)))``.
    target: ``[batch, dim]`` target projections of the other view (no gradient flows).

  Returns:
    A scalar in ``[0, 4]``.

  Example::

    loss = byol_loss(p1, z2_target) + byol_loss(p2, z1_target)
  """
  prediction, target = _check_pair(prediction, target)
  cos = jnp.sum(_normalize(prediction) * _normalize(jax.lax.stop_gradient(target)), axis=-1)
  return jnp.mean(2.0 - 2.0 * cos)
