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
