"""Clustering / self-distillation objectives: DINO and SwAV.

Pure functions over multi-crop scores, computed in float32 whatever the floating dtype
of the inputs. Crops are stacked on a leading axis: ``[num_crops, batch, num_prototypes]``
(every crop has the same batch; global crops first, as both official codes order them).

Both normalise over the batch (DINO's centre is a batch mean; SwAV's Sinkhorn-Knopp
normalises each prototype's mass over the batch), so the batch they see matters:

* under ``jax.jit`` with globally sharded arrays (sslx's trainer) the batch is the
  global batch: leave ``axis_name`` as None;
* inside ``jax.shard_map`` / ``jax.pmap`` over a named batch axis, pass ``axis_name``:
  every batch sum is a ``psum`` over that axis (the official codes' ``dist.all_reduce``).

References: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers"
(DINO, ICCV 2021; facebookresearch/dino ``DINOLoss``); Caron et al., "Unsupervised
Learning of Visual Features by Contrasting Cluster Assignments" (SwAV, NeurIPS 2020;
facebookresearch/swav ``main_swav.py``).
"""

from __future__ import annotations

from typing import Hashable, Optional

import jax
import jax.numpy as jnp

from sslx.losses.classification import _concrete


def _batch_sum(x, axis_name):
  s = jnp.sum(x, axis=0)
  return s if axis_name is None else jax.lax.psum(s, axis_name)


def _check_positive(name: str, value) -> None:
  v = _concrete(value)
  if v is not None and not (v.ndim == 0 and v > 0):
    raise ValueError(f"`{name}` must be a scalar > 0, got {v!r}.")


def _check_crops(fn_name: str, name: str, x, rank: int = 3):
  x = jnp.asarray(x)
  if x.ndim != rank or x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"{fn_name}: `{name}` must be [num_crops, batch, num_prototypes], got "
                     f"shape {x.shape}.")
  return x.astype(jnp.float32)


# ---------------------------------------------------------------------------
# DINO
# ---------------------------------------------------------------------------


def dino_teacher_temperature(step, *, warmup_temperature: float, temperature: float,
                             warmup_steps: int) -> jax.Array:
  r"""DINO's teacher temperature: linear warm-up, then constant.

  The official schedule is ``linspace(warmup_temperature, temperature, warmup_epochs)``
  per epoch then ``temperature``; here per step:
  :math:`\tau_t(s) = \tau_w + (\tau - \tau_w) \min(1, s / \max(1, W - 1))`.
  """
  if warmup_steps <= 0:
    return jnp.asarray(temperature, jnp.float32)
  frac = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / max(1, warmup_steps - 1))
  return jnp.asarray(warmup_temperature + (temperature - warmup_temperature) * frac,
                     jnp.float32)


def dino_loss(student: jax.typing.ArrayLike, teacher: jax.typing.ArrayLike,
              center: jax.typing.ArrayLike, *, teacher_temperature,
              student_temperature: float = 0.1,
              axis_name: Optional[Hashable] = None) -> tuple[jax.Array, dict]:
  r"""DINO's self-distillation cross-entropy over every (teacher crop, other student crop).

  .. math::
    P_t^{(i)} = \mathrm{softmax}((g_t^{(i)} - c) / \tau_t), \quad
    \ell = \frac{1}{|\mathcal{P}|} \sum_{(i, v) \in \mathcal{P}}
      \frac{1}{B} \sum_b -P_t^{(i)}[b] \cdot \log\mathrm{softmax}(g_s^{(v)}[b] / \tau_s)

  with :math:`\mathcal{P} = \{(i, v): i < G, v \ne i\}` (``G`` teacher = global crops,
  student crop ``v`` over all crops) and the teacher under stop-gradient, exactly as
  ``DINOLoss.forward``. The centre is updated by the caller from ``aux['batch_center']``
  (:func:`dino_center_update`): the official code updates it after the loss.

  Args:
    student: ``[num_crops, batch, out_dim]`` head outputs of the student, global crops first.
    teacher: ``[num_global, batch, out_dim]`` head outputs of the teacher (global crops).
    center: ``[out_dim]`` the running centre ``c``.
    teacher_temperature: :math:`\tau_t` (official 0.04, warmed up to 0.04-0.07).
    student_temperature: :math:`\tau_s` (official 0.1).
    axis_name: mapped batch axis (module docstring), or None.

  Returns:
    ``(loss, aux)``; ``aux``: ``batch_center`` ``[out_dim]`` (mean teacher output over
    the global batch and the global crops), ``teacher_entropy`` (mean entropy of the
    teacher's targets) and ``num_pairs``.
  """
  student = _check_crops("dino_loss", "student", student)
  teacher = _check_crops("dino_loss", "teacher", teacher)
  center = jnp.asarray(center, jnp.float32)
  g, b, k = teacher.shape
  if student.shape[1:] != (b, k) or student.shape[0] < g or (student.shape[0] == 1 and g == 1):
    raise ValueError(f"dino_loss: `student` must be [num_crops >= num_global, {b}, {k}] with "
                     f"at least one pair, got shape {student.shape} for `teacher` of shape "
                     f"{teacher.shape}.")
  if center.shape != (k,):
    raise ValueError(f"dino_loss: `center` must be [{k}], got shape {center.shape}.")
  _check_positive("student_temperature", student_temperature)
  _check_positive("teacher_temperature", teacher_temperature)
  teacher = jax.lax.stop_gradient(teacher)
  targets = jax.nn.softmax((teacher - center) / teacher_temperature, axis=-1)  # [G, B, K]
  log_p = jax.nn.log_softmax(student / student_temperature, axis=-1)  # [V, B, K]
  # ce[i, v] = mean_b -targets[i, b] . log_p[v, b]
  ce = -jnp.einsum("ibk,vbk->iv", targets, log_p) / b
  if axis_name is not None:
    ce = jax.lax.pmean(ce, axis_name)
  pairs = jnp.ones((g, student.shape[0]), bool).at[jnp.arange(g), jnp.arange(g)].set(False)
  num_pairs = g * student.shape[0] - g
  loss = jnp.sum(jnp.where(pairs, ce, 0.0)) / num_pairs
  rows = g * b if axis_name is None else jax.lax.psum(g * b, axis_name)
  batch_center = _batch_sum(teacher.reshape(g * b, k), axis_name) / rows
  entropy = -jnp.sum(targets * jnp.log(jnp.maximum(targets, 1e-30)), -1)
  entropy = _batch_sum(entropy.reshape(-1), axis_name) / rows
  return loss, {"batch_center": batch_center, "teacher_entropy": entropy,
                "num_pairs": num_pairs}


def dino_center_update(center: jax.typing.ArrayLike, batch_center: jax.typing.ArrayLike, *,
                       momentum: float = 0.9) -> jax.Array:
  r"""DINO's centre EMA: :math:`c \leftarrow m c + (1 - m) \bar g_t` (official m = 0.9)."""
  center, batch_center = jnp.asarray(center), jnp.asarray(batch_center)
  if center.shape != batch_center.shape or center.ndim != 1:
    raise ValueError(f"dino_center_update: `center` and `batch_center` must both be "
                     f"[out_dim], got shapes {center.shape} and {batch_center.shape}.")
  return momentum * center + (1.0 - momentum) * jax.lax.stop_gradient(batch_center)


# ---------------------------------------------------------------------------
# SwAV
# ---------------------------------------------------------------------------


def sinkhorn_knopp(scores: jax.typing.ArrayLike, *, epsilon: float = 0.05,
                   num_iterations: int = 3,
                   axis_name: Optional[Hashable] = None) -> jax.Array:
  r"""SwAV's equipartitioned soft assignments of a batch to prototypes (no gradient).

  ``Q = exp(scores / epsilon)``, scaled to total mass 1, then ``num_iterations`` times:
  every prototype's mass over the **global** batch set to ``1/K``, every example's mass
  to ``1/B``; finally scaled by ``B`` so each example's assignment sums to 1
  (``distributed_sinkhorn`` of the official code, written ``[batch, K]`` rather than
  ``[K, batch]``). The exponent is shifted by the batch maximum first, which the first
  normalisation cancels exactly (the official code does not shift; with cosine scores
  and epsilon 0.05 it need not).

  Args:
    scores: ``[batch, num_prototypes]`` prototype scores (cosines in SwAV).
    epsilon: entropy regularisation (official 0.05).
    num_iterations: Sinkhorn iterations (official 3).
    axis_name: mapped batch axis (module docstring), or None.

  Returns:
    ``[batch, num_prototypes]`` assignments, rows summing to 1, under stop-gradient.
  """
  scores = jnp.asarray(scores, jnp.float32)
  if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
    raise ValueError(f"sinkhorn_knopp: `scores` must be [batch, num_prototypes], got shape "
                     f"{scores.shape}.")
  _check_positive("epsilon", epsilon)
  if not isinstance(num_iterations, int) or isinstance(num_iterations, bool) or num_iterations < 0:
    raise ValueError(f"`num_iterations` must be an int >= 0, got {num_iterations!r}.")
  scores = jax.lax.stop_gradient(scores)
  top = jnp.max(scores)
  if axis_name is not None:
    top = jax.lax.pmax(top, axis_name)
  q = jnp.exp((scores - top) / epsilon)
  k = scores.shape[1]
  b = scores.shape[0] if axis_name is None else jax.lax.psum(scores.shape[0], axis_name)
  total = jnp.sum(q) if axis_name is None else jax.lax.psum(jnp.sum(q), axis_name)
  q = q / total
  for _ in range(num_iterations):
    q = q / _batch_sum(q, axis_name) / k  # each prototype: mass 1/K over the global batch
    q = q / jnp.sum(q, axis=1, keepdims=True) / b  # each example: mass 1/B
  return q * b


def swav_loss(scores: jax.typing.ArrayLike, *, num_assign: int = 2, temperature: float = 0.1,
              epsilon: float = 0.05, num_iterations: int = 3,
              queue_scores: Optional[jax.typing.ArrayLike] = None,
              axis_name: Optional[Hashable] = None) -> tuple[jax.Array, dict]:
  r"""SwAV's swapped prediction: each crop predicts the Sinkhorn codes of the others.

  .. math::
    q^{(i)} = \mathrm{SK}(s^{(i)}), \quad
    \ell = \frac{1}{A} \sum_{i < A} \frac{1}{V - 1} \sum_{v \ne i}
      \frac{1}{B} \sum_b -q^{(i)}[b] \cdot \log\mathrm{softmax}(s^{(v)}[b] / T)

  for the ``A = num_assign`` crops the codes are computed from (``crops_for_assign``,
  the global crops) and all ``V`` crops, as ``main_swav.py`` writes it.

  Args:
    scores: ``[num_crops, batch, num_prototypes]``: cosines between the l2-normalised
      projections and the l2-normalised prototypes, assignment crops first.
    num_assign: crops whose codes are computed (official ``crops_for_assign = [0, 1]``).
    temperature: ``T`` of the prediction softmax (official 0.1).
    epsilon, num_iterations: of :func:`sinkhorn_knopp` (official 0.05, 3).
    queue_scores: optional ``[num_assign, queue_len, num_prototypes]`` scores of queued
      embeddings, prepended to crop ``i``'s scores before Sinkhorn-Knopp (the official
      queue for small batches); the codes of the batch are the last ``batch`` rows.
    axis_name: mapped batch axis (module docstring), or None.

  Returns:
    ``(loss, aux)``; ``aux['codes']``: ``[num_assign, batch, num_prototypes]``.
  """
  scores = _check_crops("swav_loss", "scores", scores)
  v, b, k = scores.shape
  if not isinstance(num_assign, int) or isinstance(num_assign, bool) or not 1 <= num_assign <= v \
      or v < 2:
    raise ValueError(f"swav_loss: `num_assign` must be an int in [1, num_crops] with at least "
                     f"2 crops, got {num_assign!r} for `scores` of shape {scores.shape}.")
  _check_positive("temperature", temperature)
  if queue_scores is not None:
    queue_scores = jnp.asarray(queue_scores, jnp.float32)
    if queue_scores.ndim != 3 or queue_scores.shape[0] != num_assign or queue_scores.shape[2] != k:
      raise ValueError(f"swav_loss: `queue_scores` must be [{num_assign}, queue_len, {k}], got "
                       f"shape {queue_scores.shape}.")
  log_p = jax.nn.log_softmax(scores / temperature, axis=-1)  # [V, B, K]
  codes, loss = [], 0.0
  for i in range(num_assign):
    s = scores[i] if queue_scores is None else jnp.concatenate([queue_scores[i], scores[i]])
    q = sinkhorn_knopp(s, epsilon=epsilon, num_iterations=num_iterations,
                       axis_name=axis_name)[-b:]
    codes.append(q)
    ce = -jnp.einsum("bk,vbk->v", q, log_p) / b  # [V]
    if axis_name is not None:
      ce = jax.lax.pmean(ce, axis_name)
    loss = loss + (jnp.sum(ce) - ce[i]) / (v - 1)
  return loss / num_assign, {"codes": jnp.stack(codes)}
