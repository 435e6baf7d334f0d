"""Nearest-neighbour contrastive learning (NNCLR): support-set lookup and its InfoNCE.

Pure functions over embeddings ``[batch, dim]`` and a support queue ``[K, dim]``,
computed in float32. Under ``jax.jit`` with globally sharded arrays (sslx's trainer) the
batch is the global batch and ``axis_name`` stays None; inside ``jax.shard_map`` /
``jax.pmap`` over a named batch axis pass ``axis_name`` and the predictions are
all-gathered as the official code's ``gather(p)``. The queue itself is written with
:func:`sslx.losses.moco_enqueue` (the same FIFO, gathered over ``axis_name``).
"""

from __future__ import annotations

from typing import Hashable, Optional

import jax
import jax.numpy as jnp

from sslx.losses.classification import _check_float, _check_rank, _check_same_shape
from sslx.losses.contrastive import _check_temperature, _l2_normalize


def nearest_neighbours(embeddings: jax.typing.ArrayLike,
                       support: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""The most similar support row of each embedding (NNCLR's ``find_nn``).

  .. math:: \mathrm{NN}(z_i) = s_{j^*}, \quad j^* = \arg\max_j z_i^\top s_j

  The embeddings are l2-normalised here; the support rows are used as stored (NNCLR's
  queue holds l2-normalised projections, so the score is the cosine). Ties go to the
  lowest index (``argmax``). No gradient flows to the result (the official lookup is
  under ``torch.no_grad``).

  Args:
    embeddings: ``[batch, dim]`` projections.
    support: ``[K, dim]`` the support set (queue), ``K >= 1``.

  Returns:
    ``(indices [batch] int32, neighbours [batch, dim] float32)``.
  """
  _check_rank("embeddings", embeddings, 2, "[batch, dim]")
  z = _check_float("embeddings", embeddings)
  s = _check_float("support", support)
  if s.ndim != 2 or s.shape[1] != z.shape[1] or s.shape[0] < 1:
    raise ValueError(f"`support` must be [K >= 1, dim = {z.shape[1]}], got shape {s.shape}.")
  z = _l2_normalize(jax.lax.stop_gradient(z.astype(jnp.float32)))
  s = jax.lax.stop_gradient(s.astype(jnp.float32))
  indices = jnp.argmax(z @ s.T, axis=-1).astype(jnp.int32)
  return indices, s[indices]


def nnclr_loss(neighbours: jax.typing.ArrayLike, predictions: jax.typing.ArrayLike, *,
               temperature: float | jax.typing.ArrayLike = 0.1,
               axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""NNCLR's InfoNCE (Dwibedi et al., ICCV 2021, Eq. 2, with the predictor of Sec. 3.3).

  With :math:`u_i = \mathrm{NN}(z_i) / \|\cdot\|` the nearest support neighbour of view
  1's projection (under stop-gradient) and :math:`v_j = p_j / \|p_j\|` the predictor's
  output for view 2, row ``i``'s positive is column ``i`` and the other predictions of
  the batch are its negatives:

  .. math::
    \mathcal{L} = \frac{1}{N} \sum_i -\log
      \frac{\exp(u_i^\top v_i / T)}{\sum_{j} \exp(u_i^\top v_j / T)}

  As the official code (solo-learn ``nnclr_loss_func``): logits ``nn @ p.T / T`` and a
  cross-entropy at the diagonal; the neighbours are the anchors (rows), the predictions
  the candidates (columns). The method symmetrises with weights 1/2:
  ``(nnclr_loss(nn_1, p_2) + nnclr_loss(nn_2, p_1)) / 2``.

  Args:
    neighbours: ``[batch, dim]`` support neighbours of one view (no gradient flows).
    predictions: ``[batch, dim]`` predictor outputs of the other view.
    temperature: :math:`T > 0` (paper and ``nnclr_loss_func``: 0.1).
    axis_name: mapped batch axis over which the predictions are all-gathered (module
      docstring), or None.

  Returns:
    A scalar float32 >= 0.

  Example::

    _, nn1 = nearest_neighbours(z1, queue)
    _, nn2 = nearest_neighbours(z2, queue)
    loss = (nnclr_loss(nn1, p2) + nnclr_loss(nn2, p1)) / 2
  """
  _check_same_shape("neighbours", neighbours, "predictions", predictions)
  _check_rank("neighbours", neighbours, 2, "[batch, dim]")
  neighbours = _check_float("neighbours", neighbours)
  predictions = _check_float("predictions", predictions)
  if neighbours.shape[0] == 0:
    raise ValueError(f"nnclr_loss: `neighbours`/`predictions` must have a batch of at least 1, "
                     f"got shape {neighbours.shape}.")
  _check_temperature(temperature)
  u = _l2_normalize(jax.lax.stop_gradient(neighbours))
  v = _l2_normalize(predictions)
  if axis_name is None:
    offset = 0
  else:
    v = jax.lax.all_gather(v, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * u.shape[0]
  logits = (u / jnp.asarray(temperature, jnp.float32)) @ v.T
  positive = offset + jnp.arange(u.shape[0])
  nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(
      logits, positive[:, None], axis=-1)[:, 0]
  loss = jnp.mean(nll)
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
  return loss
