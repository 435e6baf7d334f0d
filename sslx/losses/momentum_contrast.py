"""Momentum contrast (MoCo v3): InfoNCE of online queries against momentum-encoder keys.

Pure functions over embeddings ``[batch, dim]``, computed in float32 whatever the
floating dtype of the inputs. The keys are negatives for every other query, so the batch
they span matters: under ``jax.jit`` with globally sharded arrays (sslx's trainer) it is
the global batch (leave ``axis_name`` None); inside ``jax.shard_map`` / ``jax.pmap`` over a
named batch axis pass ``axis_name`` and the keys are all-gathered (the official code's
``concat_all_gather``), giving the value and gradient of the whole batch on every device.
"""

from __future__ import annotations

from typing import Hashable, Optional

import jax
import jax.numpy as jnp

from sslx.losses.contrastive import _check_pair, _check_temperature, _l2_normalize


def moco_logits(query: jax.Array, key: jax.Array, *, temperature=1.0,
                axis_name: Optional[Hashable] = None) -> tuple[jax.Array, jax.Array]:
  """``[n, N]`` logits ``cos(q_i, k_j) / T`` of the local queries against all keys, and
  the ``[n]`` column of each query's positive (its own image's key)."""
  q, k = _l2_normalize(query), _l2_normalize(jax.lax.stop_gradient(key))
  if axis_name is None:
    offset = 0
  else:
    k = jax.lax.all_gather(k, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * q.shape[0]
  logits = (q / jnp.asarray(temperature, jnp.float32)) @ k.T
  return logits, offset + jnp.arange(q.shape[0])


def moco_infonce(query: jax.typing.ArrayLike, key: jax.typing.ArrayLike, *,
                 temperature: float | jax.typing.ArrayLike = 1.0,
                 axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""MoCo v3's contrastive loss (Chen, Xie & He, ICCV 2021, Alg. 1), scaled by ``2T``.

  With :math:`u_i = q_i / \|q_i\|` the online queries (the predictor's output for one
  view) and :math:`v_j = k_j / \|k_j\|` the momentum encoder's keys of the *other* view
  (under stop-gradient), the positive of query ``i`` is key ``i`` and the other ``N - 1``
  keys of the batch are its negatives:

  .. math::
    \mathcal{L} = 2T \cdot \frac{1}{N} \sum_i -\log
      \frac{\exp(u_i^\top v_i / T)}{\sum_j \exp(u_i^\top v_j / T)}

  The ``2T`` factor is the official code's (``facebookresearch/moco-v3``,
  ``builder.py``: ``CrossEntropyLoss()(logits, labels) * (2 * T)``); it makes the
  gradient's scale independent of T. The method symmetrises:
  ``moco_infonce(q1, k2) + moco_infonce(q2, k1)``.

  Args:
    query: ``[batch, dim]`` online predictions.
    key: ``[batch, dim]`` momentum-encoder projections of the other view (no gradient
      flows); row ``i`` is query ``i``'s positive.
    temperature: :math:`T > 0` (official default 1.0 for ResNets, 0.2 for ViTs).
    axis_name: mapped batch axis to gather keys over (module docstring), or None.

  Returns:
    A scalar float32 >= 0.

  Example::

    loss = moco_infonce(q1, k2, temperature=0.2) + moco_infonce(q2, k1, temperature=0.2)
  """
  query, key = _check_pair("moco_infonce", query, key)
  _check_temperature(temperature)
  logits, positive = moco_logits(query, key, temperature=temperature, axis_name=axis_name)
  nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(
      logits, positive[:, None], axis=-1)[:, 0]
  loss = jnp.mean(nll)
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
  return 2.0 * jnp.asarray(temperature, jnp.float32) * loss


def moco_v2_infonce(query: jax.typing.ArrayLike, key: jax.typing.ArrayLike,
                    queue: jax.typing.ArrayLike, *,
                    temperature: float | jax.typing.ArrayLike = 0.2,
                    axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""MoCo's InfoNCE with a queue (He et al., CVPR 2020, Eq. 1; v2: Chen et al. 2020).

  .. math::
    \mathcal{L} = \frac{1}{N} \sum_i -\log \frac{\exp(u_i^\top v_i / T)}
      {\exp(u_i^\top v_i / T) + \sum_{j=1}^{K} \exp(u_i^\top m_j / T)}

  with :math:`u, v` the l2-normalised queries and keys (keys under stop-gradient) and
  :math:`m_j` the ``K`` queued keys of earlier steps (``facebookresearch/moco``,
  ``builder.py``: logits ``[l_pos, l_neg] / T``, cross-entropy at label 0; no ``2T``
  factor; ``T = 0.2`` in v2). Other keys of the batch are *not* negatives.

  Args:
    query: ``[batch, dim]`` online embeddings.
    key: ``[batch, dim]`` momentum-encoder embeddings of the other view (no gradient).
    queue: ``[K, dim]`` earlier keys (l2-normalised, as :func:`moco_enqueue` stores them;
      no gradient). Replicated: every device holds the same queue.
    temperature: :math:`T > 0`.
    axis_name: mapped batch axis, or None; with it the value is the mean over the whole
      batch (the queue needs no gather: it is the same everywhere).

  Returns:
    A scalar float32 >= 0.
  """
  query, key = _check_pair("moco_v2_infonce", query, key)
  _check_temperature(temperature)
  queue = jnp.asarray(queue, jnp.float32)
  if queue.ndim != 2 or queue.shape[1] != query.shape[1] or queue.shape[0] < 1:
    raise ValueError(f"`queue` must be [K >= 1, dim = {query.shape[1]}], got shape "
                     f"{queue.shape}.")
  inv_t = 1.0 / jnp.asarray(temperature, jnp.float32)
  q = _l2_normalize(query) * inv_t
  k = _l2_normalize(jax.lax.stop_gradient(key))
  positive = jnp.sum(q * k, axis=-1)  # [n]
  negatives = q @ jax.lax.stop_gradient(queue).T  # [n, K]
  logits = jnp.concatenate([positive[:, None], negatives], axis=-1)
  loss = jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive)
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
  return loss


def _gather_replicated(x, axis_name):
  """``all_gather(x, tiled=True)`` as a psum of zero-padded shards: the same values, but
  typed as replicated over `axis_name` (``shard_map``'s ``out_specs=P()`` accepts it; an
  all-gather's result is typed per-device), so a replicated queue can be returned."""
  n = x.shape[0]
  devices = jax.lax.psum(1, axis_name)
  rows = jax.lax.axis_index(axis_name) * n + jnp.arange(n)
  return jax.lax.psum(jnp.zeros((devices * n,) + x.shape[1:], x.dtype).at[rows].set(x),
                      axis_name)


def moco_enqueue(queue: jax.Array, pointer: jax.Array, keys: jax.typing.ArrayLike, *,
                 axis_name: Optional[Hashable] = None) -> tuple[jax.Array, jax.Array]:
  """MoCo's ``_dequeue_and_enqueue``: the newest keys replace the oldest rows of the queue.

  ``keys`` (l2-normalised here, under stop-gradient) are written at rows ``pointer,
  pointer + 1, ...`` modulo ``K`` and the pointer advances by their number. With
  `axis_name` the keys of every device are gathered first (in device order, as the
  official ``concat_all_gather``), so every device writes the same rows and the
  replicated queue stays identical across devices (and is typed as replicated, so
  ``shard_map(..., out_specs=P())`` can return it). Unlike the official code ``K`` need
  not be a multiple of the batch (writes wrap around).

  Args:
    queue: ``[K, dim]`` float32.
    pointer: int32 scalar, the next row to overwrite.
    keys: ``[batch, dim]`` this step's keys (the local shard with `axis_name`).
    axis_name: mapped batch axis, or None.

  Returns:
    ``(new queue, new pointer)``.
  """
  keys = _l2_normalize(jax.lax.stop_gradient(jnp.asarray(keys, jnp.float32)))
  if axis_name is not None:
    keys = _gather_replicated(keys, axis_name)
  size = queue.shape[0]
  if keys.ndim != 2 or keys.shape[1] != queue.shape[1]:
    raise ValueError(f"`keys` must be [batch, dim = {queue.shape[1]}], got shape {keys.shape}.")
  if keys.shape[0] > size:
    raise ValueError(f"`queue` of {size} rows cannot take a batch of {keys.shape[0]} keys; "
                     f"make the queue at least as large as the (global) batch of keys.")
  rows = (pointer + jnp.arange(keys.shape[0])) % size
  return queue.at[rows].set(keys), ((pointer + keys.shape[0]) % size).astype(jnp.int32)
