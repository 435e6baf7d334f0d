"""Self-training and co-training: networks teaching networks with their own predictions.

Co-training (Blum & Mitchell, COLT 1998; the deep form of Qiao et al., ECCV 2018): two
networks, each one's confident predictions on its view supervise the other
(:func:`cross_pseudo_label_loss`), and Deep Co-Training's agreement term, the
Jensen-Shannon divergence of the two predictions (:func:`co_training_js_divergence`),
and its view-difference term on adversarial examples (:func:`fgsm_perturbation`,
:func:`co_training_view_difference`), ramped up by :func:`exp_rampup`.

Self-training / Noisy Student (Xie et al., CVPR 2020): a frozen teacher labels the
unlabeled pool once per round, a noised student learns from labels + pseudo-labels, the
student becomes the next round's teacher (:func:`round_index`,
:func:`round_boundary_momentum`, :func:`teacher_targets`, :func:`pool_targets`).

Shapes: ``[batch, num_classes]`` logits/probabilities, ``[batch]`` per-example values,
``[pool, ...]`` per-example state of the unlabeled pool. Computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.classification import (_check_float, _check_rank, _check_same_shape,
                                        _check_scalar_in_range)


def cross_pseudo_label_loss(logits_teacher: jax.typing.ArrayLike,
                            logits_student: jax.typing.ArrayLike, *,
                            threshold: float = 0.95) -> tuple[jax.Array, jax.Array]:
  r"""One network's confident hard labels as targets for another.

  .. math::
    \mathcal{L} = \frac1B \sum_i \mathbb{1}[\max_c p^{t}_{ic} \ge \tau]\,
      \mathrm{CE}(z^{s}_i, \arg\max_c p^{t}_{ic})

  with :math:`p^t = \mathrm{softmax}(z^t)` under stop-gradient; the mean is over all B
  rows (as FixMatch's), so an unconfident batch contributes little.

  Args:
    logits_teacher: ``[batch, num_classes]`` the teaching network on its view.
    logits_student: ``[batch, num_classes]`` the taught network on its view of the same images.
    threshold: :math:`\tau \in [0, 1]`.

  Returns:
    ``(loss, mask)``: a scalar and the ``[batch]`` float32 mask.
  """
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  teacher = jax.lax.stop_gradient(_check_float("logits_teacher", logits_teacher))
  _check_rank("logits_teacher", teacher, 2, "[batch, num_classes]")
  _check_same_shape("logits_teacher", logits_teacher, "logits_student", logits_student)
  probs = jax.nn.softmax(teacher, -1)
  mask = (jnp.max(probs, -1) >= threshold).astype(jnp.float32)
  log_p = jax.nn.log_softmax(_check_float("logits_student", logits_student), -1)
  ce = -jnp.take_along_axis(log_p, jnp.argmax(probs, -1)[:, None], -1)[:, 0]
  return jnp.mean(mask * ce), mask


def co_training_js_divergence(logits_1: jax.typing.ArrayLike,
                              logits_2: jax.typing.ArrayLike) -> jax.Array:
  r"""Deep Co-Training's :math:`\mathcal{L}_{cot}` (Qiao et al. 2018): the
  Jensen-Shannon divergence of the two networks' predictions on the same images,

  .. math::
    \mathcal{L}_{cot} = \frac1B \sum_i H\!\left(\tfrac12 (p_{1i} + p_{2i})\right)
      - \tfrac12 \left(H(p_{1i}) + H(p_{2i})\right),

  gradients flowing into both networks. Zero when they agree, at most :math:`\log 2`.

  Args:
    logits_1, logits_2: ``[batch, num_classes]``.

  Returns:
    A float32 scalar.
  """
  z1 = _check_float("logits_1", logits_1)
  _check_rank("logits_1", z1, 2, "[batch, num_classes]")
  _check_same_shape("logits_1", logits_1, "logits_2", logits_2)
  z2 = _check_float("logits_2", logits_2)
  logp1, logp2 = jax.nn.log_softmax(z1, -1), jax.nn.log_softmax(z2, -1)
  p1, p2 = jnp.exp(logp1), jnp.exp(logp2)
  mean = 0.5 * (p1 + p2)
  # log of the mixture from the log-probabilities: finite where both underflow.
  log_mean = jnp.logaddexp(logp1, logp2) - jnp.log(2.0)
  entropy = lambda p, logp: -jnp.sum(p * logp, -1)
  return jnp.mean(entropy(mean, log_mean) - 0.5 * (entropy(p1, logp1) + entropy(p2, logp2)))


def fgsm_perturbation(loss_fn, inputs: jax.typing.ArrayLike, *, epsilon: float) -> jax.Array:
  r"""The fast gradient sign perturbation :math:`\epsilon\, \mathrm{sign}(\nabla_x
  \ell(x))` (Goodfellow et al. 2015), under stop-gradient: Deep Co-Training's
  adversarial view :math:`g(x) = x + \epsilon\, \mathrm{sign}(\nabla_x \ell(f(x), y))`.

  Args:
    loss_fn: ``inputs -> scalar`` (a network's cross-entropy against its labels).
    inputs: ``[batch, ...]`` float inputs.
    epsilon: :math:`\epsilon \ge 0` (Qiao et al.: 0.02 on CIFAR-10).

  Returns:
    The perturbation, shaped like ``inputs``.
  """
  _check_scalar_in_range("epsilon", epsilon, 0.0, float("inf"))
  x = _check_float("inputs", inputs)
  return jax.lax.stop_gradient(epsilon * jnp.sign(jax.grad(loss_fn)(x)))


def co_training_view_difference(logits_1: jax.typing.ArrayLike, logits_2: jax.typing.ArrayLike,
                                logits_1_on_adv_2: jax.typing.ArrayLike,
                                logits_2_on_adv_1: jax.typing.ArrayLike) -> jax.Array:
  r"""Deep Co-Training's view-difference term :math:`\mathcal{L}_{dif}` (Qiao et al. 2018):
  each network should keep its prediction on the other's adversarial examples,

  .. math::
    \mathcal{L}_{dif} = \frac1B \sum_i H\big(p_1(x_i), p_2(g_1(x_i))\big)
      + H\big(p_2(x_i), p_1(g_2(x_i))\big),

  :math:`H(p, q) = -\sum_c p_c \log q_c`; as the PyTorch re-implementation, the clean
  predictions are not stopped (gradients reach both networks through both arguments).

  Args:
    logits_1, logits_2: ``[batch, num_classes]`` the networks on clean images.
    logits_1_on_adv_2: network 1 on network 2's adversarial images :math:`g_2(x)`.
    logits_2_on_adv_1: network 2 on :math:`g_1(x)`.

  Returns:
    A float32 scalar.
  """
  z1 = _check_float("logits_1", logits_1)
  _check_rank("logits_1", z1, 2, "[batch, num_classes]")
  for name, z in (("logits_2", logits_2), ("logits_1_on_adv_2", logits_1_on_adv_2),
                  ("logits_2_on_adv_1", logits_2_on_adv_1)):
    _check_same_shape("logits_1", logits_1, name, z)
  p1, p2 = jax.nn.softmax(z1, -1), jax.nn.softmax(_check_float("logits_2", logits_2), -1)
  log_q2 = jax.nn.log_softmax(_check_float("logits_2_on_adv_1", logits_2_on_adv_1), -1)
  log_q1 = jax.nn.log_softmax(_check_float("logits_1_on_adv_2", logits_1_on_adv_2), -1)
  return jnp.mean(-jnp.sum(p1 * log_q2, -1) - jnp.sum(p2 * log_q1, -1))


def exp_rampup(step: jax.typing.ArrayLike, num_steps: int, *, warmup: float) -> jax.Array:
  r"""The sigmoid-shaped ramp-up :math:`\exp(-5 (1 - t)^2)`, :math:`t = \min(\mathrm{step}
  / (\mathrm{warmup} \cdot \mathrm{num\_steps}), 1)` (Laine & Aila 2017; Deep Co-Training's
  weights over the first 80 of 600 epochs); 1 throughout when ``warmup`` is 0."""
  _check_scalar_in_range("warmup", warmup, 0.0, 1.0)
  if warmup == 0:
    return jnp.ones((), jnp.float32)
  t = jnp.clip(jnp.asarray(step, jnp.float32) / (warmup * num_steps), 0.0, 1.0)
  return jnp.exp(-5.0 * (1.0 - t) ** 2)


def round_index(step: jax.typing.ArrayLike, *, round_steps: int, num_rounds: int) -> jax.Array:
  """The self-training round of ``step``: ``min(step // round_steps, num_rounds - 1)`` (the
  last round takes the remainder of ``num_steps`` not divisible by ``num_rounds``)."""
  _check_positive_int("round_steps", round_steps)
  _check_positive_int("num_rounds", num_rounds)
  return jnp.minimum(jnp.asarray(step, jnp.int32) // round_steps, num_rounds - 1)


def round_boundary_momentum(step: jax.typing.ArrayLike, *, round_steps: int,
                            num_rounds: int) -> jax.Array:
  r"""The momentum of a teacher that is frozen within a round and becomes the student at
  its end: 0 after the update to a step that starts a round (``step + 1`` a multiple of
  ``round_steps`` below ``num_rounds * round_steps``), 1 otherwise. It is the
  ``momentum(step, num_steps)`` of a :class:`sslx.methods.Target`, applied after the
  update to ``step + 1``: ``m * teacher + (1 - m) * student``."""
  _check_positive_int("round_steps", round_steps)
  _check_positive_int("num_rounds", num_rounds)
  nxt = jnp.asarray(step, jnp.int32) + 1
  boundary = (nxt % round_steps == 0) & (nxt // round_steps < num_rounds)
  return jnp.where(boundary, 0.0, 1.0).astype(jnp.float32)


def _check_positive_int(name, x):
  if not isinstance(x, int) or isinstance(x, bool) or x < 1:
    raise ValueError(f"`{name}` must be an int >= 1, got {x!r}.")


def teacher_targets(logits: jax.typing.ArrayLike, *, temperature: float = 1.0,
                    soft: bool = True) -> jax.Array:
  r"""Noisy Student's pseudo-labels: :math:`\mathrm{softmax}(z / T)` (``soft``; the official
  scripts' ``teacher_softmax_temp=1``) or the one-hot argmax (its flag's -1). No gradient.

  Args:
    logits: ``[batch, num_classes]`` teacher logits.
    temperature: :math:`T > 0`, used when ``soft``.
    soft: soft or one-hot targets.

  Returns:
    ``[batch, num_classes]`` float32 rows summing to 1.
  """
  z = jax.lax.stop_gradient(_check_float("logits", logits))
  _check_rank("logits", z, 2, "[batch, num_classes]")
  if not soft:
    return jax.nn.one_hot(jnp.argmax(z, -1), z.shape[-1], dtype=jnp.float32)
  _check_scalar_in_range("temperature", temperature, 0.0, float("inf"), low_inclusive=False)
  return jax.nn.softmax(z / temperature, -1)


def pool_targets(pool_labels: jax.typing.ArrayLike, labelled_round: jax.typing.ArrayLike,
                 indices: jax.typing.ArrayLike, fresh_targets: jax.typing.ArrayLike,
                 round_index: jax.typing.ArrayLike
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  r"""Labels each pool example once per round: the first time an example is drawn in round
  ``r`` it takes the (frozen) teacher's targets, later draws in ``r`` reuse them.

  .. math::
    y_i \leftarrow \begin{cases} \hat y_i & \mathrm{round}_i \ne r \\ y_i & \text{otherwise}
      \end{cases}, \qquad \mathrm{round}_i \leftarrow r \quad (i \in \text{batch})

  Args:
    pool_labels: ``[pool, num_classes]`` stored targets.
    labelled_round: ``[pool]`` int, the round each was made in (-1: never).
    indices: ``[batch]`` int pool indices of the batch.
    fresh_targets: ``[batch, num_classes]`` the teacher's targets for the batch now.
    round_index: int scalar, the current round r.

  Returns:
    ``(batch_targets, pool_labels, labelled_round, fresh)`` with ``fresh`` the ``[batch]``
    bool of rows labelled now.
  """
  _check_rank("pool_labels", pool_labels, 2, "[pool, num_classes]")
  _check_rank("fresh_targets", fresh_targets, 2, "[batch, num_classes]")
  pool_labels = _check_float("pool_labels", pool_labels)
  fresh_targets = jax.lax.stop_gradient(_check_float("fresh_targets", fresh_targets))
  indices = jnp.asarray(indices)
  if indices.shape != fresh_targets.shape[:1] or not jnp.issubdtype(indices.dtype, jnp.integer):
    raise ValueError(f"`indices` must be [batch] = {fresh_targets.shape[:1]} ints, got shape "
                     f"{indices.shape} and dtype {indices.dtype}.")
  if (jnp.shape(labelled_round) != pool_labels.shape[:1]
      or fresh_targets.shape[1] != pool_labels.shape[1]):
    raise ValueError(f"`labelled_round` must be [pool] = {pool_labels.shape[:1]} and "
                     f"`fresh_targets` [batch, {pool_labels.shape[1]}], got "
                     f"{jnp.shape(labelled_round)} and {fresh_targets.shape}.")
  r = jnp.asarray(round_index, jnp.int32)
  fresh = jnp.asarray(labelled_round)[indices] != r
  batch = jnp.where(fresh[:, None], fresh_targets, pool_labels[indices])
  return (batch, pool_labels.at[indices].set(batch),
          jnp.asarray(labelled_round, jnp.int32).at[indices].set(r), fresh)
