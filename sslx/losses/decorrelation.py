"""Redundancy-reduction objectives: Barlow Twins and VICReg.

Pure functions over two views' projections ``z1, z2: [batch, dim]``, computed in float32
whatever the floating dtype of the inputs. Both normalise over the batch (means,
variances, a ``[dim, dim]`` correlation), so the batch they see matters:

* under ``jax.jit`` with globally sharded arrays (sslx's trainer) the batch is the
  global batch: leave ``axis_name`` as None;
* inside ``jax.shard_map`` / ``jax.pmap`` over a named batch axis, pass ``axis_name``:
  every batch sum is a ``psum`` over that axis, so the value (identical on every device)
  and its gradient are those of the whole, gathered batch (the official code's
  SyncBatchNorm + ``all_reduce`` for Barlow Twins, ``FullGatherLayer`` for VICReg).
  Sums, not all-gathers: the ``[dim, dim]`` matrices are reduced, never the embeddings.
"""

from __future__ import annotations

from typing import Hashable, Optional

import jax
import jax.numpy as jnp

from sslx.losses.classification import _concrete
from sslx.losses.contrastive import _check_pair

_BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, used by the official Barlow Twins code


def _batch_sum(x, axis_name):
  """Sum over axis 0, and over the mapped axis `axis_name` when given."""
  s = jnp.sum(x, axis=0)
  return s if axis_name is None else jax.lax.psum(s, axis_name)


def _global_batch(n: int, axis_name):
  return n if axis_name is None else jax.lax.psum(n, axis_name)


def _off_diagonal_sq_sum(m):
  """Sum of the squared off-diagonal entries of a square matrix."""
  return jnp.sum(m * m) - jnp.sum(jnp.diagonal(m) ** 2)


def _check_nonnegative(name: str, value) -> None:
  v = _concrete(value)
  if v is not None and not (v.ndim == 0 and v >= 0):
    raise ValueError(f"`{name}` must be a scalar >= 0, got {v!r}.")


def _check_batch(fn_name: str, z1, axis_name) -> None:
  if axis_name is None and z1.shape[0] < 2:
    raise ValueError(f"{fn_name}: batch statistics need a batch of at least 2, got `z1` of "
                     f"shape {z1.shape}.")


def cross_correlation(z1: jax.typing.ArrayLike, z2: jax.typing.ArrayLike, *,
                      axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""Barlow Twins' cross-correlation of batch-standardised projections, ``[dim, dim]``.

  .. math::
    \hat z = \frac{z - \mu_B}{\sqrt{\sigma^2_B + 10^{-5}}}, \qquad
    \mathcal{C} = \frac{1}{N} \hat z_1^\top \hat z_2

  with the batch mean and the *biased* batch variance (``BatchNorm1d(affine=False)`` in
  train mode, as the official code). ``N`` is the global batch with `axis_name`.

  Args:
    z1, z2: ``[batch, dim]`` projections of the two views.
    axis_name: mapped batch axis to reduce over, or None.

  Returns:
    ``[dim, dim]`` float32, ``C[i, j]`` the correlation of unit i of view 1 with unit j
    of view 2 (near 1 on the diagonal for identical views).
  """
  z1, z2 = _check_pair("cross_correlation", z1, z2)
  _check_batch("cross_correlation", z1, axis_name)
  n = _global_batch(z1.shape[0], axis_name)

  def standardise(z):
    mean = _batch_sum(z, axis_name) / n
    var = _batch_sum(jnp.square(z - mean), axis_name) / n  # biased, as BatchNorm's
    return (z - mean) * jax.lax.rsqrt(var + _BN_EPS)

  local = standardise(z1).T @ standardise(z2)
  return (local if axis_name is None else jax.lax.psum(local, axis_name)) / n


def barlow_twins_loss(z1: jax.typing.ArrayLike, z2: jax.typing.ArrayLike, *,
                      lambda_offdiag: float | jax.typing.ArrayLike = 0.0051,
                      axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""Barlow Twins' redundancy-reduction loss (Zbontar et al., ICML 2021, Eq. 1).

  .. math::
    \mathcal{L} = \sum_i (1 - \mathcal{C}_{ii})^2 + \lambda \sum_i \sum_{j \ne i}
    \mathcal{C}_{ij}^2

  with :math:`\mathcal{C}` from :func:`cross_correlation` (the official
  ``facebookresearch/barlowtwins`` code: ``bn(z1).T @ bn(z2) / batch_size``, summed over
  GPUs, ``lambd = 0.0051``). The invariance term pulls the diagonal to 1, the
  redundancy term the rest to 0. Symmetric in the two views.

  Args:
    z1, z2: ``[batch, dim]`` projections of the two views.
    lambda_offdiag: weight of the off-diagonal term, >= 0.
    axis_name: mapped batch axis to reduce over (module docstring), or None.

  Returns:
    A scalar >= 0: 0 only when the standardised views are identical and decorrelated.

  Example::

    loss = barlow_twins_loss(out['view_1']['projection'], out['view_2']['projection'])
  """
  _check_nonnegative("lambda_offdiag", lambda_offdiag)
  c = cross_correlation(z1, z2, axis_name=axis_name)
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
  return on_diag + jnp.asarray(lambda_offdiag, jnp.float32) * _off_diagonal_sq_sum(c)


def vicreg_terms(z1: jax.typing.ArrayLike, z2: jax.typing.ArrayLike, *,
                 axis_name: Optional[Hashable] = None) -> dict[str, jax.Array]:
  r"""VICReg's three unweighted terms: ``{'invariance', 'variance', 'covariance'}``.

  As the official ``facebookresearch/vicreg`` code (``main_vicreg.py``), with ``N`` the
  (global) batch and ``D`` the dimension:

  .. math::
    s = \frac{1}{N D} \sum_{n,d} (z_{1,nd} - z_{2,nd})^2, \qquad
    v = \sum_{k=1,2} \frac{1}{2D} \sum_d \max\Big(0, 1 - \sqrt{\mathrm{Var}(z_{k,\cdot d}) +
    10^{-4}}\Big), \qquad
    c = \sum_{k=1,2} \frac{1}{D} \sum_{i \ne j} C(z_k)_{ij}^2

  with the *unbiased* variance and ``C(z) = (z - \bar z)^\top (z - \bar z) / (N - 1)``.
  The official code takes ``s`` on each GPU's own rows (DDP averages its gradients) and
  ``v``, ``c`` on the all-gathered batch; with equal shards both are the whole batch's,
  which is what `axis_name` computes here.

  Args:
    z1, z2: ``[batch, dim]`` embeddings (expander outputs) of the two views.
    axis_name: mapped batch axis to reduce over (module docstring), or None.

  Returns:
    float32 scalars; ``variance`` in ``[0, 1]``.
  """
  z1, z2 = _check_pair("vicreg_loss", z1, z2)
  _check_batch("vicreg_loss", z1, axis_name)
  n = _global_batch(z1.shape[0], axis_name)
  d = z1.shape[1]
  invariance = jnp.sum(_batch_sum(jnp.square(z1 - z2), axis_name)) / (n * d)

  def variance_covariance(z):
    zc = z - _batch_sum(z, axis_name) / n
    std = jnp.sqrt(_batch_sum(jnp.square(zc), axis_name) / (n - 1) + 1e-4)
    local = zc.T @ zc
    cov = (local if axis_name is None else jax.lax.psum(local, axis_name)) / (n - 1)
    return jnp.mean(jax.nn.relu(1.0 - std)) / 2.0, _off_diagonal_sq_sum(cov) / d

  v1, c1 = variance_covariance(z1)
  v2, c2 = variance_covariance(z2)
  return {"invariance": invariance, "variance": v1 + v2, "covariance": c1 + c2}


def vicreg_loss(z1: jax.typing.ArrayLike, z2: jax.typing.ArrayLike, *,
                sim_coeff: float | jax.typing.ArrayLike = 25.0,
                std_coeff: float | jax.typing.ArrayLike = 25.0,
                cov_coeff: float | jax.typing.ArrayLike = 1.0,
                axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): invariance, variance and covariance terms.

  .. math::
    \mathcal{L} = \lambda\, s(z_1, z_2) + \mu\, v + \nu\, c

  with the terms of :func:`vicreg_terms` and the official defaults ``lambda = mu = 25``,
  ``nu = 1``. The variance hinge keeps every unit's std near 1 (no collapse), the
  covariance term decorrelates units; no negatives, predictor or momentum network.

  Args:
    z1, z2: ``[batch, dim]`` embeddings of the two views.
    sim_coeff, std_coeff, cov_coeff: weights of the three terms, each >= 0.
    axis_name: mapped batch axis to reduce over (module docstring), or None.

  Returns:
    A scalar >= 0.

  Example::

    loss = vicreg_loss(out['view_1']['projection'], out['view_2']['projection'])
  """
  for name, value in (("sim_coeff", sim_coeff), ("std_coeff", std_coeff),
                      ("cov_coeff", cov_coeff)):
    _check_nonnegative(name, value)
  t = vicreg_terms(z1, z2, axis_name=axis_name)
  f = lambda x: jnp.asarray(x, jnp.float32)
  return (f(sim_coeff) * t["invariance"] + f(std_coeff) * t["variance"]
          + f(cov_coeff) * t["covariance"])
