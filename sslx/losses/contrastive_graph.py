"""Pseudo-labels and embeddings trained together: SimMatch's and CoMatch's pieces.

Both methods keep memories of l2-normalised embeddings (SimMatch: one per labeled
example, with its label; CoMatch: a queue of past weak-view embeddings with their class
probabilities), use embedding similarity to calibrate the class pseudo-labels, and train
the embeddings against targets built from the pseudo-labels. Pure functions: the memories
are kept by the caller and passed in; the update functions return the new values.
Formulas follow USB (microsoft/Semi-supervised-learning, ``semilearn/algorithms/simmatch``,
``semilearn/algorithms/comatch``, ``semilearn/algorithms/hooks/dist_align.py``); where that
code differs from the papers the docstring says so.

Shapes: ``[batch, num_classes]`` probabilities, ``[batch, dim]`` embeddings (rows of unit
norm), ``[bank, dim]`` memories (one row per entry; USB stores SimMatch's bank transposed,
``[dim, bank]``), ``[bank]`` int labels. Everything is computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslx.losses.adaptive import _check_int, _check_shape
from sslx.losses.classification import (_check_float, _check_rank, _check_same_shape,
                                        _check_scalar_in_range)


def _l2_normalize(x: jax.Array) -> jax.Array:
  """``F.normalize``: ``x / max(||x||, 1e-12)`` along the last axis."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _check_positive(name: str, value) -> None:
  _check_scalar_in_range(name, value, 0.0, float("inf"), low_inclusive=False)


def _check_memory(name: str, memory, dim: int) -> jax.Array:
  _check_rank(name, memory, 2, "[bank, dim]")
  if jnp.shape(memory)[1] != dim:
    raise ValueError(f"`{name}` must be [bank, dim = {dim}], got shape "
                     f"{tuple(jnp.shape(memory))}.")
  return _check_float(name, memory)


# ---------------------------------------------------------------------------
# Distribution alignment with a queue of batch means (USB's DistAlignQueueHook)
# ---------------------------------------------------------------------------


def distribution_queue_update(queue: jax.typing.ArrayLike, pointer: jax.typing.ArrayLike,
                              probs: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""Writes this batch's mean prediction into the queue of USB's ``DistAlignQueueHook``.

  .. math::
    Q_{\text{pointer}} \leftarrow \tfrac{1}{B} \textstyle\sum_i q_i, \qquad
    \text{pointer} \leftarrow (\text{pointer} + 1) \bmod L

  The model distribution is then ``queue.mean(0)``, **the zero rows of a queue not yet
  full included** (USB starts from zeros; distribution alignment renormalises each row, so
  only the ``1e-6`` of :func:`sslx.losses.align_distribution` sees the scale). USB updates
  the queue before aligning the batch with it; SimMatch and CoMatch align to a uniform
  target.

  Args:
    queue: ``[L, num_classes]`` float32, past batch means (``da_len`` rows).
    pointer: int32 scalar, the next row to overwrite.
    probs: ``[batch, num_classes]`` weak-view probabilities (no gradient).

  Returns:
    ``(new queue, new pointer)``.
  """
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  q = jax.lax.stop_gradient(_check_float("probs", probs))
  _check_rank("queue", queue, 2, "[queue_length, num_classes]")
  if jnp.shape(queue)[1] != q.shape[1]:
    raise ValueError(f"`queue` must be [queue_length, num_classes = {q.shape[1]}], got shape "
                     f"{tuple(jnp.shape(queue))}.")
  ptr = _check_int("pointer", pointer, (), "[] (a scalar)")
  length = jnp.shape(queue)[0]
  new = _check_float("queue", queue).at[ptr].set(jnp.mean(q, axis=0))
  return new, ((ptr + 1) % length).astype(jnp.int32)


# ---------------------------------------------------------------------------
# SimMatch (Zheng et al., CVPR 2022)
# ---------------------------------------------------------------------------


def simmatch_pseudo_labels(probs: jax.typing.ArrayLike, embeddings: jax.typing.ArrayLike,
                           bank: jax.typing.ArrayLike, bank_labels: jax.typing.ArrayLike, *,
                           temperature: float = 0.1, smoothing_alpha: float = 0.9
                           ) -> tuple[jax.Array, jax.Array]:
  r"""SimMatch's label propagation between class and instance similarities.

  With the weak-view class probabilities :math:`p_i` (distribution-aligned), the
  instance similarities to the labeled bank
  :math:`q_{ik} = \mathrm{softmax}_k(z_i \cdot b_k / T)` and :math:`y_k` the label of bank
  entry :math:`k`:

  .. math::
    \hat q_{ik} = \frac{q_{ik}\, p_{i, y_k}}{\sum_{k'} q_{ik'}\, p_{i, y_{k'}}}
    \quad\text{(unfolding)}, \qquad
    \hat p_{ic} = \alpha\, p_{ic} + (1 - \alpha) \sum_{k: y_k = c} q_{ik}
    \quad\text{(aggregation)}

  :math:`\hat q` is the target of the in-loss (:func:`simmatch_in_loss`), :math:`\hat p`
  the pseudo-label of FixMatch's consistency term. As USB (and the authors' code) write
  it, the aggregation mixes with the *unscaled* :math:`q` and a fixed weight
  :math:`\alpha` (``smoothing_alpha``), where the paper (Eq. 7) renormalises
  :math:`p \cdot \text{aggregated}\ q`; ``smoothing_alpha = 1`` leaves :math:`p`.

  Args:
    probs: ``[batch, num_classes]`` weak-view class probabilities.
    embeddings: ``[batch, dim]`` l2-normalised weak-view embeddings.
    bank: ``[bank, dim]`` l2-normalised labeled embeddings.
    bank_labels: ``[bank]`` int labels of the bank entries.
    temperature: :math:`T` (0.1 in USB's configs).
    smoothing_alpha: :math:`\alpha` in [0, 1] (0.9 in USB).

  Returns:
    ``(unfolded [batch, bank], aggregated [batch, num_classes])``, float32, no gradient.
  """
  _check_positive("temperature", temperature)
  _check_scalar_in_range("smoothing_alpha", smoothing_alpha, 0.0, 1.0)
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  p = jax.lax.stop_gradient(_check_float("probs", probs))
  b, c = p.shape
  _check_rank("embeddings", embeddings, 2, "[batch, dim]")
  z = jax.lax.stop_gradient(_check_float("embeddings", embeddings))
  if z.shape[0] != b:
    raise ValueError(f"`embeddings` must be [batch = {b}, dim], got shape {z.shape}.")
  memory = jax.lax.stop_gradient(_check_memory("bank", bank, z.shape[1]))
  labels = _check_int("bank_labels", bank_labels, (memory.shape[0],), "[bank]")
  q = jax.nn.softmax(z @ memory.T / temperature, axis=-1)
  unfolded = q * p[:, labels]
  unfolded = unfolded / jnp.sum(unfolded, axis=-1, keepdims=True)
  aggregated = q @ jax.nn.one_hot(labels, c, dtype=jnp.float32)
  smoothed = smoothing_alpha * p + (1.0 - smoothing_alpha) * aggregated
  return unfolded, smoothed


def simmatch_in_loss(embeddings_strong: jax.typing.ArrayLike, bank: jax.typing.ArrayLike,
                     unfolded: jax.typing.ArrayLike, *, temperature: float = 0.1) -> jax.Array:
  r"""SimMatch's instance consistency: the strong view's bank similarities against the
  unfolded weak-view targets.

  .. math::
    \mathcal{L}_{in} = \frac{1}{B} \sum_i \mathrm{H}\big(\hat q_i,\
      \mathrm{softmax}_k(z^s_i \cdot b_k / T)\big)

  over all B unlabeled examples (no confidence mask). The bank and the targets get no
  gradient; the strong embeddings do.

  Args:
    embeddings_strong: ``[batch, dim]`` l2-normalised strong-view embeddings.
    bank: ``[bank, dim]`` labeled embeddings.
    unfolded: ``[batch, bank]`` targets from :func:`simmatch_pseudo_labels`.
    temperature: :math:`T`.

  Returns:
    The float32 scalar loss.
  """
  _check_positive("temperature", temperature)
  _check_rank("embeddings_strong", embeddings_strong, 2, "[batch, dim]")
  z = _check_float("embeddings_strong", embeddings_strong)
  memory = jax.lax.stop_gradient(_check_memory("bank", bank, z.shape[1]))
  _check_shape("unfolded", unfolded, (z.shape[0], memory.shape[0]), "[batch, bank]")
  t = jax.lax.stop_gradient(_check_float("unfolded", unfolded))
  log_q = jax.nn.log_softmax(z @ memory.T / temperature, axis=-1)
  return jnp.mean(-jnp.sum(t * log_q, axis=-1))


def simmatch_bank_update(bank: jax.typing.ArrayLike, bank_labels: jax.typing.ArrayLike,
                         embeddings: jax.typing.ArrayLike, labels: jax.typing.ArrayLike,
                         indices: jax.typing.ArrayLike, *, momentum: float = 0.0
                         ) -> tuple[jax.Array, jax.Array]:
  r"""Writes the labeled batch into SimMatch's bank at its examples' indices.

  .. math::
    b_{idx_j} \leftarrow z_j \ \ (\text{momentum} = 0), \qquad
    b_{idx_j} \leftarrow \frac{m\, b_{idx_j} + (1 - m) z_j}{\lVert m\, b_{idx_j}
      + (1 - m) z_j \rVert} \ \ (\text{momentum} = m > 0),
    \qquad y_{idx_j} \leftarrow y_j

  USB replaces the rows with the EMA teacher's embeddings (its default), and for the
  datasets of its classic-CV list (CIFAR, SVHN, STL-10, ...) mixes the online embeddings
  in with ``m = 0.7`` instead. An index repeated in the batch keeps one of its rows
  (which one is unspecified, as in PyTorch's indexed assignment).

  Args:
    bank: ``[bank, dim]`` float32.
    bank_labels: ``[bank]`` int32.
    embeddings: ``[batch, dim]`` labeled embeddings (no gradient).
    labels: ``[batch]`` int labels.
    indices: ``[batch]`` int positions of the batch in the labeled pool.
    momentum: :math:`m` in [0, 1).

  Returns:
    ``(new bank, new bank_labels)``.
  """
  _check_scalar_in_range("momentum", momentum, 0.0, 1.0)
  if isinstance(momentum, (int, float)) and momentum >= 1.0:
    raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
  _check_rank("embeddings", embeddings, 2, "[batch, dim]")
  z = jax.lax.stop_gradient(_check_float("embeddings", embeddings))
  memory = _check_memory("bank", bank, z.shape[1])
  b = z.shape[0]
  y = _check_int("labels", labels, (b,), "[batch]")
  idx = _check_int("indices", indices, (b,), "[batch]")
  old_labels = _check_int("bank_labels", bank_labels, (memory.shape[0],), "[bank]")
  rows = z if momentum == 0 else _l2_normalize(momentum * memory[idx] + (1.0 - momentum) * z)
  return memory.at[idx].set(rows), old_labels.at[idx].set(y)


# ---------------------------------------------------------------------------
# CoMatch (Li et al., ICCV 2021)
# ---------------------------------------------------------------------------


def comatch_memory_smoothing(probs: jax.typing.ArrayLike, embeddings: jax.typing.ArrayLike,
                             queue_embeddings: jax.typing.ArrayLike,
                             queue_probs: jax.typing.ArrayLike, *, temperature: float = 0.2,
                             alpha: float = 0.9) -> jax.Array:
  r"""CoMatch's memory-smoothed pseudo-labels.

  .. math::
    \hat p_i = \alpha\, p_i + (1 - \alpha) \sum_k a_{ik}\, p^{queue}_k, \qquad
    a_{ik} = \mathrm{softmax}_k(z_i \cdot z^{queue}_k / T)

  Args:
    probs: ``[batch, num_classes]`` weak-view probabilities (distribution-aligned).
    embeddings: ``[batch, dim]`` l2-normalised weak-view embeddings.
    queue_embeddings: ``[queue, dim]`` past embeddings (unlabeled weak + labeled).
    queue_probs: ``[queue, num_classes]`` their probabilities (labeled: one-hot).
    temperature: :math:`T` (0.2 in USB's configs).
    alpha: :math:`\alpha` in [0, 1] (``smoothing_alpha``, 0.9).

  Returns:
    ``[batch, num_classes]`` float32 smoothed probabilities (no gradient).
  """
  _check_positive("temperature", temperature)
  _check_scalar_in_range("alpha", alpha, 0.0, 1.0)
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  p = jax.lax.stop_gradient(_check_float("probs", probs))
  _check_rank("embeddings", embeddings, 2, "[batch, dim]")
  z = jax.lax.stop_gradient(_check_float("embeddings", embeddings))
  if z.shape[0] != p.shape[0]:
    raise ValueError(f"`embeddings` must be [batch = {p.shape[0]}, dim], got shape {z.shape}.")
  memory = jax.lax.stop_gradient(_check_memory("queue_embeddings", queue_embeddings, z.shape[1]))
  _check_shape("queue_probs", queue_probs, (memory.shape[0], p.shape[1]),
               "[queue, num_classes]")
  memory_probs = jax.lax.stop_gradient(_check_float("queue_probs", queue_probs))
  a = jax.nn.softmax(z @ memory.T / temperature, axis=-1)
  return alpha * p + (1.0 - alpha) * a @ memory_probs


def comatch_pseudo_label_graph(probs: jax.typing.ArrayLike, *, threshold: float = 0.8
                               ) -> jax.Array:
  r"""CoMatch's pseudo-label graph: thresholded agreement of pseudo-labels with self-loops.

  .. math::
    W_{ij} = \begin{cases} 1 & i = j \\ p_i \cdot p_j & i \ne j \end{cases},\qquad
    \hat W_{ij} = \frac{W_{ij}\, \mathbb{1}[W_{ij} \ge \tau_c]}
      {\sum_{j'} W_{ij'}\, \mathbb{1}[W_{ij'} \ge \tau_c]}

  Args:
    probs: ``[batch, num_classes]`` (memory-smoothed) pseudo-labels.
    threshold: :math:`\tau_c` in [0, 1] (``contrast_p_cutoff``, 0.8).

  Returns:
    ``[batch, batch]`` float32 row-stochastic targets (no gradient).
  """
  _check_scalar_in_range("threshold", threshold, 0.0, 1.0)
  _check_rank("probs", probs, 2, "[batch, num_classes]")
  p = jax.lax.stop_gradient(_check_float("probs", probs))
  w = p @ p.T
  w = jnp.where(jnp.eye(p.shape[0], dtype=bool), 1.0, w)
  w = w * (w >= threshold).astype(jnp.float32)
  return w / jnp.sum(w, axis=-1, keepdims=True)


def comatch_contrastive_loss(embeddings_0: jax.typing.ArrayLike,
                             embeddings_1: jax.typing.ArrayLike, graph: jax.typing.ArrayLike, *,
                             temperature: float = 0.2) -> jax.Array:
  r"""CoMatch's graph-contrastive loss: the embedding graph of two strong views against the
  pseudo-label graph.

  .. math::
    \mathcal{L}_{ctr} = -\frac{1}{B} \sum_i \sum_j \hat W_{ij}
      \log\big(\mathrm{softmax}_j(z^0_i \cdot z^1_j / T) + 10^{-7}\big)

  (USB's ``comatch_contrastive_loss``: one direction, the ``1e-7`` inside the log; the
  paper writes the symmetric form over the 2B views). ``graph`` gets no gradient.

  Args:
    embeddings_0, embeddings_1: ``[batch, dim]`` l2-normalised embeddings of two strong
      views of the same images.
    graph: ``[batch, batch]`` targets from :func:`comatch_pseudo_label_graph`.
    temperature: :math:`T` (0.2).

  Returns:
    The float32 scalar loss.
  """
  _check_positive("temperature", temperature)
  _check_rank("embeddings_0", embeddings_0, 2, "[batch, dim]")
  _check_same_shape("embeddings_0", embeddings_0, "embeddings_1", embeddings_1)
  z0 = _check_float("embeddings_0", embeddings_0)
  z1 = _check_float("embeddings_1", embeddings_1)
  b = z0.shape[0]
  _check_shape("graph", graph, (b, b), "[batch, batch]")
  w = jax.lax.stop_gradient(_check_float("graph", graph))
  sim = jax.nn.softmax(z0 @ z1.T / temperature, axis=-1)
  return jnp.mean(-jnp.sum(jnp.log(sim + 1e-7) * w, axis=-1))


def comatch_enqueue(queue_embeddings: jax.typing.ArrayLike, queue_probs: jax.typing.ArrayLike,
                    pointer: jax.typing.ArrayLike, embeddings: jax.typing.ArrayLike,
                    probs: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""CoMatch's ``update_bank``: the newest rows replace the oldest.

  Rows ``pointer, pointer + 1, ...`` (mod ``queue``) take ``embeddings`` and ``probs``; the
  pointer advances by their number. USB sizes the queue as a whole number of steps
  (``queue_batch * (uratio + 1) * batch_size``), where its truncation at the end and this
  wrap-around write the same rows. (:func:`sslx.losses.moco_enqueue` is the same ring
  buffer but l2-normalises what it writes, which probabilities must not be.)

  Args:
    queue_embeddings: ``[queue, dim]`` float32.
    queue_probs: ``[queue, num_classes]`` float32.
    pointer: int32 scalar, the next row to overwrite.
    embeddings: ``[n, dim]`` rows to write (n <= queue), no gradient.
    probs: ``[n, num_classes]`` their probabilities.

  Returns:
    ``(queue_embeddings, queue_probs, pointer)`` after the write.
  """
  _check_rank("embeddings", embeddings, 2, "[n, dim]")
  z = jax.lax.stop_gradient(_check_float("embeddings", embeddings))
  n = z.shape[0]
  memory = _check_memory("queue_embeddings", queue_embeddings, z.shape[1])
  size = memory.shape[0]
  if n > size:
    raise ValueError(f"`queue_embeddings` of {size} rows cannot take {n} rows at once; make the "
                     f"queue at least one step's rows (unlabeled + labeled batch).")
  _check_rank("probs", probs, 2, "[n, num_classes]")
  p = jax.lax.stop_gradient(_check_float("probs", probs))
  _check_shape("queue_probs", queue_probs, (size, p.shape[1]), "[queue, num_classes]")
  if p.shape[0] != n:
    raise ValueError(f"`probs` must be [n = {n}, num_classes], got shape {p.shape}.")
  ptr = _check_int("pointer", pointer, (), "[] (a scalar)")
  rows = (ptr + jnp.arange(n)) % size
  return (memory.at[rows].set(z), _check_float("queue_probs", queue_probs).at[rows].set(p),
          ((ptr + n) % size).astype(jnp.int32))
