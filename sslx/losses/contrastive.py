"""Contrastive losses and representation diagnostics (SimCLR's NT-Xent).

Pure functions over arrays, jittable and differentiable, computed in float32
whatever the floating dtype of the inputs.

Data parallelism. Under ``jax.jit`` with globally sharded arrays (sslx's
trainer) the batch is the global batch and nothing needs to be passed: the
negatives are global. Inside a ``jax.shard_map`` or ``jax.pmap`` that maps a
named axis over the batch, pass ``axis_name``: the other devices' embeddings
are all-gathered as extra negatives (SimCLR's cross-replica negatives) and the
returned value is the loss of the whole, gathered batch, identical on every
device.
"""

from __future__ import annotations

from typing import Hashable, Optional

import jax
import jax.numpy as jnp

from sslx.losses.classification import (_check_float, _check_rank,
                                        _check_same_shape, _concrete)

_EPS = float(jnp.finfo(jnp.float32).eps)


def _l2_normalize(z: jax.Array) -> jax.Array:
  """z / max(||z||, eps) row-wise; finite gradient at z = 0."""
  sq_norm = jnp.sum(z * z, axis=-1, keepdims=True)
  return z * jax.lax.rsqrt(jnp.maximum(sq_norm, _EPS * _EPS))


def _check_pair(fn_name: str, z1, z2) -> tuple[jax.Array, jax.Array]:
  _check_same_shape("z1", z1, "z2", z2)
  _check_rank("z1", z1, 2, "[batch, dim]")
  z1 = _check_float("z1", z1)
  z2 = _check_float("z2", z2)
  if z1.shape[0] == 0:
    raise ValueError(f"{fn_name}: `z1`/`z2` must have a batch of at least 1, "
                     f"got shape {z1.shape}.")
  return z1, z2


def _check_temperature(temperature) -> None:
  value = _concrete(temperature)
  if value is None:
    return  # a traced (e.g. learned) temperature cannot be checked under jit
  if value.ndim != 0:
    raise ValueError(
        f"`temperature` must be a scalar, got shape {value.shape}.")
  if not value > 0:
    raise ValueError(f"`temperature` must be > 0, got {float(value)}.")


def _pair_logits(z1, z2, temperature, axis_name):
  """Similarity logits of the 2n local anchors against all 2N candidates.

  Returns (logits [2n, 2N] with the self-similarity at -inf,
  positive logits [2n], positive column indices [2n]). Local anchors are
  ``[z1; z2]``; candidates are ``[all z1; all z2]`` over the axis (N = n
  without `axis_name`).
  """
  z1 = _l2_normalize(z1)
  z2 = _l2_normalize(z2)
  n = z1.shape[0]
  if axis_name is None:
    all_z1, all_z2, offset = z1, z2, 0
  else:
    all_z1 = jax.lax.all_gather(z1, axis_name, tiled=True)
    all_z2 = jax.lax.all_gather(z2, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * n
  n_global = all_z1.shape[0]
  inv_t = 1.0 / jnp.asarray(temperature, jnp.float32)
  # Scale the [2n, d] anchors, not the [2n, 2N] product.
  anchors = jnp.concatenate([z1, z2], axis=0) * inv_t
  candidates = jnp.concatenate([all_z1, all_z2], axis=0)
  logits = anchors @ candidates.T  # [2n, 2N]

  row = jnp.arange(2 * n)
  first_view = row < n
  self_col = jnp.where(first_view, offset + row, n_global + offset + row - n)
  positive_col = jnp.where(first_view, n_global + offset + row,
                           offset + row - n)
  column = jnp.arange(2 * n_global)
  logits = jnp.where(column[None, :] == self_col[:, None], -jnp.inf, logits)
  positive = jnp.sum(z1 * z2, axis=-1) * inv_t  # [n]
  positive = jnp.concatenate([positive, positive])  # [2n]
  return logits, positive, positive_col


def nt_xent(
    z1: jax.typing.ArrayLike,
    z2: jax.typing.ArrayLike,
    *,
    temperature: float | jax.typing.ArrayLike = 0.1,
    axis_name: Optional[Hashable] = None,
) -> jax.Array:
  r"""NT-Xent, SimCLR's normalized temperature-scaled cross-entropy.

  ``z1[i]`` and ``z2[i]`` are embeddings of two augmented views of example
  :math:`i`. They are L2-normalised inside; with :math:`u_1..u_{2N}` the
  normalised ``[z1; z2]``, :math:`s_{ab} = u_a^\top u_b / \tau` and
  :math:`p(a)` the index of :math:`a`'s other view, each of the :math:`2N`
  anchors has one positive and :math:`2N - 2` negatives (itself excluded):

  .. math::
    \mathcal{L} = \frac{1}{2N} \sum_{a=1}^{2N}
      -\log \frac{\exp(s_{a,p(a)})}{\sum_{b \ne a} \exp(s_{ab})} .

  This is the paper's :math:`\mathcal{L}` (the mean over all :math:`2N`
  anchors). The official TensorFlow code (``google-research/simclr``,
  ``add_contrastive_loss``) sums the two directions' means, i.e. reports
  **twice** this value. It equals ``optax.losses.ntxent(concat([z1, z2]),
  labels=concat([arange(N), arange(N)]), temperature)``, which builds a
  ``[2N, 2N, dim]`` intermediate; this function uses one ``[2N, 2N]`` matmul.

  With `axis_name` (inside ``shard_map``/``pmap`` over the batch), each
  device's ``z1``/``z2`` are its shard; the other shards are all-gathered as
  negatives (:math:`N` is then the global batch) and the returned value is
  the loss of the whole gathered batch, the same on every device. Gradients
  flow back to the owning device through the all-gather. Under ``shard_map``
  (default ``check_vma=True``) gradients of replicated parameters come out
  already summed over devices, i.e. equal to the single-device gradient on the
  gathered batch; under ``pmap`` average them with ``jax.lax.pmean`` as usual.
  Under ``jax.jit`` with globally sharded arrays leave `axis_name` as None.

  Computed in float32 (bfloat16 inputs are upcast).

  Args:
    z1: embeddings of the first views, shape ``[batch, dim]``, floating point.
    z2: embeddings of the second views, same shape as `z1`.
    temperature: :math:`\tau > 0`, scalar (may be a traced, learned value).
    axis_name: mapped axis name to gather negatives over, or None.

  Returns:
    Scalar float32 loss.

  References:
    T. Chen et al., `A Simple Framework for Contrastive Learning of Visual
    Representations <https://arxiv.org/abs/2002.05709>`_, ICML 2020, Eq. (1).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from sslx.losses.contrastive import nt_xent
    >>> z1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> # Two identical views: each anchor's positive has similarity 1/tau.
    >>> print(f"{nt_xent(z1, z1, temperature=0.5):.4f}")
    0.2395
  """
  z1, z2 = _check_pair("nt_xent", z1, z2)
  _check_temperature(temperature)
  logits, positive, _ = _pair_logits(z1, z2, temperature, axis_name)
  loss = jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive)
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
  return loss


def contrastive_accuracy(
    z1: jax.typing.ArrayLike,
    z2: jax.typing.ArrayLike,
    *,
    axis_name: Optional[Hashable] = None,
) -> jax.Array:
  r"""Fraction of the 2N anchors whose positive is their most similar candidate.

  For each anchor of ``[z1; z2]`` (cosine similarity, itself excluded), a hit
  when the other view of the same example is the most similar of the other
  :math:`2N - 1` embeddings. SimCLR logs this as ``contrast_acc``. Chance level
  is :math:`1 / (2N - 1)`. With `axis_name` the candidates are gathered over
  the axis as in :func:`nt_xent` and the value is the global fraction.

  Args:
    z1: ``[batch, dim]`` embeddings of the first views, floating point.
    z2: ``[batch, dim]`` embeddings of the second views.
    axis_name: mapped axis name to gather candidates over, or None.

  Returns:
    Scalar float32 in [0, 1]. Not differentiable (a metric).

  Example:
    >>> import jax.numpy as jnp
    >>> from sslx.losses.contrastive import contrastive_accuracy
    >>> z = jnp.eye(3)
    >>> print(contrastive_accuracy(z, z))
    1.0
  """
  z1, z2 = _check_pair("contrastive_accuracy", z1, z2)
  logits, _, positive_col = _pair_logits(
      jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2), 1.0, axis_name)
  hits = jnp.argmax(logits, axis=-1) == positive_col
  acc = jnp.mean(hits.astype(jnp.float32))
  if axis_name is not None:
    acc = jax.lax.pmean(acc, axis_name)
  return acc


def alignment(
    z1: jax.typing.ArrayLike,
    z2: jax.typing.ArrayLike,
    *,
    alpha: float = 2.0,
) -> jax.Array:
  r"""Alignment of positive pairs (Wang & Isola, 2020); lower is better.

  With :math:`u, v` the L2-normalised rows of `z1`, `z2` (normalised inside),

  .. math::
    \mathcal{L}_{align} = \frac{1}{N} \sum_i \lVert u_i - v_i \rVert_2^{\alpha},

  in :math:`[0, 2^\alpha]`; 0 when both views map to the same point.

  Args:
    z1: ``[batch, dim]`` embeddings of the first views, floating point.
    z2: ``[batch, dim]`` embeddings of the second views.
    alpha: exponent :math:`\alpha > 0` (the paper uses 2).

  Returns:
    Scalar float32.

  References:
    T. Wang and P. Isola, `Understanding Contrastive Representation Learning
    through Alignment and Uniformity on the Hypersphere
    <https://arxiv.org/abs/2005.10242>`_, ICML 2020.

  Example:
    >>> import jax.numpy as jnp
    >>> from sslx.losses.contrastive import alignment
    >>> print(alignment(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 3.0]])))
    2.0
  """
  z1, z2 = _check_pair("alignment", z1, z2)
  value = _concrete(alpha)
  if value is not None and not value > 0:
    raise ValueError(f"`alpha` must be > 0, got {float(value)}.")
  diff = _l2_normalize(z1) - _l2_normalize(z2)
  sq_dist = jnp.sum(diff * diff, axis=-1)
  # d**alpha = (d^2)**(alpha/2); the where keeps the gradient finite at d = 0.
  safe = jnp.where(sq_dist > 0, sq_dist, 1.0)
  return jnp.mean(jnp.where(sq_dist > 0, safe ** (alpha / 2.0), 0.0))


def uniformity(z: jax.typing.ArrayLike, *, t: float = 2.0) -> jax.Array:
  r"""Uniformity of embeddings on the hypersphere (Wang & Isola, 2020).

  With :math:`u` the L2-normalised rows of `z` (normalised inside), the log of
  the mean Gaussian potential over all distinct pairs:

  .. math::
    \mathcal{L}_{uniform} = \log \frac{2}{N(N-1)} \sum_{i<j}
      \exp(-t \lVert u_i - u_j \rVert_2^2) .

  Lower is more uniform; 0 when all embeddings collapse to one point, about
  :math:`-2t` for well spread high-dimensional embeddings. Computed as a
  log-sum-exp over an ``[N, N]`` matrix, so it is safe for large `t`.

  Args:
    z: ``[batch, dim]`` embeddings, floating point, batch >= 2.
    t: :math:`t > 0` (the paper uses 2).

  Returns:
    Scalar float32.

  References:
    T. Wang and P. Isola, ICML 2020, https://arxiv.org/abs/2005.10242.

  Example:
    >>> import jax.numpy as jnp
    >>> from sslx.losses.contrastive import uniformity
    >>> # Antipodal points: squared distance 4, so the value is -4 t.
    >>> print(uniformity(jnp.array([[1.0, 0.0], [-1.0, 0.0]]), t=2.0))
    -8.0
  """
  _check_rank("z", z, 2, "[batch, dim]")
  z = _check_float("z", z)
  n = z.shape[0]
  if n < 2:
    raise ValueError(
        f"`z` must hold at least 2 embeddings (pairs), got shape {z.shape}.")
  value = _concrete(t)
  if value is not None and not value > 0:
    raise ValueError(f"`t` must be > 0, got {float(value)}.")
  u = _l2_normalize(z)
  # |u_i - u_j|^2 = |u_i|^2 + |u_j|^2 - 2 u_i.u_j, clipped at 0 for rounding.
  sq_norm = jnp.sum(u * u, axis=-1)
  sq_dist = jnp.maximum(
      sq_norm[:, None] + sq_norm[None, :] - 2.0 * (u @ u.T), 0.0)
  off_diagonal = ~jnp.eye(n, dtype=bool)
  # Mean over ordered pairs i != j equals the mean over i < j (symmetry).
  log_sum = jax.nn.logsumexp(jnp.where(off_diagonal, -t * sq_dist, -jnp.inf))
  return log_sum - jnp.log(n * (n - 1.0))
