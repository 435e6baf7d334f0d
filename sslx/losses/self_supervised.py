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
  # x / max(||x||, eps) through the squared norm: ||x||'s gradient is NaN at x = 0.
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), _EPS * _EPS))


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


def simsiam_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """SimSiam's negative cosine similarity, ``-mean_i cos(p_i, z_i)``, target under stop-gradient.

  .. math::
    \\mathcal{D}(p, z) = -\\frac{1}{B} \\sum_i \\frac{p_i}{\\|p_i\\|} \\cdot
    \\frac{\\mathrm{sg}(z_i)}{\\|z_i\\|}

  Chen & He, CVPR 2021, Eq. 1 with the stop-gradient of Eq. 3. The method symmetrises,
  ``(D(p_1, z_2) + D(p_2, z_1)) / 2``, as the official ``main_simsiam.py`` does; with that
  halving its loss lies in ``[-1, 1]`` and is -1 at perfect agreement. It is BYOL's
  loss up to ``2 - 2 cos`` (:func:`byol_loss`), without a momentum target.

  Args:
    prediction: ``[batch, dim]`` predictor outputs ``h(f(x_1))``.
    target: ``[batch, dim]`` projections ``f(x_2)`` of the other view (no gradient flows).

  Returns:
    A scalar in ``[-1, 1]``.

  Example::

    loss = 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
  """
  prediction, target = _check_pair(prediction, target)
  cos = jnp.sum(_normalize(prediction) * _normalize(jax.lax.stop_gradient(target)), axis=-1)
  return -jnp.mean(cos)
