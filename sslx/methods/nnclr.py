"""NNCLR (Dwibedi et al., ICCV 2021): the positive is the nearest neighbour in a support set.

Two views ``x_1, x_2`` of each unlabeled image go through the shared online encoder +
projection head (``z = g(f(x))``, sslx's one forward pass) and a predictor MLP ``q`` (an
extra module of this method, trained with the model). Each l2-normalised projection is
replaced by its nearest neighbour in a support queue ``Q`` of projections of earlier
steps (under stop-gradient), which is contrasted with the *other* view's prediction::

  NN(z, Q) = argmax_{s in Q} <z / |z|, s>
  L = ( ctr(NN(z_1, Q), q(z_2)) + ctr(NN(z_2, Q), q(z_1)) ) / 2
  ctr(u, v) = CE(cos(u, v^T) / T, labels = diagonal)      (:func:`sslx.losses.nnclr_loss`)

then the normalised ``z_1`` of the batch are enqueued (first in, first out).

Follows the official implementation the paper points to (solo-learn ``methods/nnclr.py``
and ``losses/nnclr.py``; lightly's ``NNCLR`` is the same up to its loss):

* only view 1's projections are enqueued, after the lookup of both views, so a step
  never finds this step's own projections; the queue starts as random unit vectors (``randn`` then
  normalise; here from a fixed key) and holds ``queue_size`` rows (solo-learn and the
  paper's ImageNet runs: 65536 / 98304);
* the neighbours are the rows of the logits and the predictions the columns, and the
  two directions are averaged (``/ 2``), as ``nnclr_loss_func`` (the paper's Eq. 2 writes
  the sum over the symmetric pair);
* ``temperature`` 0.1: the paper and ``nnclr_loss_func``'s default (solo-learn's CIFAR
  recipe passes 0.2);
* the predictor is ``Dense(hidden) -> BatchNorm -> ReLU -> Dense(dim)``
  (``pred_hidden_dim`` 4096), the same module as :class:`sslx.methods.byol.Predictor`.

Where sslx differs: the projector is sslx's projection head (``model.projection_layers``
Dense layers, BN + ReLU between, a linear output; solo-learn's has three layers and an
output BatchNorm); both views (and the labeled batch of the online probe) share one
forward pass, so BatchNorm statistics span both views. The queue is not required to be
a multiple of the batch (writes wrap around, :func:`sslx.losses.moco_enqueue`), but must
hold at least one global batch. Under sslx's jit over the device mesh the batch is the
global batch, so every device looks up in and writes the same replicated queue: the
official ``gather`` before the enqueue is what jnp does on the full array.

State (``state.method_state['nnclr']``): ``queue [K, dim]`` (unit rows), ``labels [K]``
(the true label of each queued image where the pool knows it, else -1; only for the
diagnostic), ``pointer`` (the next row to write).

Diagnostics: ``nn_accuracy`` (solo-learn's ``nn_acc``: the fraction of view-1 neighbours
whose queued label is the image's own, over images with a known label; a queue row
without a label counts as a miss) and ``nn_similarity`` (the mean cosine to the
neighbour).
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.momentum_contrast import moco_enqueue
from sslx.losses.nearest_neighbour import nearest_neighbours, nnclr_loss
from sslx.methods.base import Context, Extra, Method, TWO_VIEWS, register, two_views
from sslx.methods.byol import Predictor
from sslx.methods.checks import check, integer, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    temperature=0.1,  # paper / nnclr_loss_func default (solo-learn's CIFAR yaml: 0.2)
    queue_size=65536,  # --queue_size (paper's ImageNet runs: 98304)
    predictor_hidden_dim=4096,  # --pred_hidden_dim
    views="simclr",  # 'simclr': two SimCLR views; 'strong': two RandAugment views
))

_VIEW_PAIRS = TWO_VIEWS


def init_state(options, info):
  queue = jax.random.normal(jax.random.key(0), (options.queue_size, info.projection_dim))
  return {"queue": queue / jnp.linalg.norm(queue, axis=-1, keepdims=True),
          "labels": jnp.full((options.queue_size,), -1, jnp.int32),
          "pointer": jnp.zeros((), jnp.int32)}


def enqueue_labels(labels, pointer, new_labels):
  """The label queue after writing `new_labels` at rows ``pointer, ...`` (mod ``K``), as
  :func:`moco_enqueue` writes the projections."""
  rows = (pointer + jnp.arange(new_labels.shape[0])) % labels.shape[0]
  return labels.at[rows].set(new_labels.astype(jnp.int32))


def nnclr_method_loss(ctx: Context):
  o = ctx.options
  first, second = _VIEW_PAIRS[o.views]
  z1, z2 = ctx.outputs[first]["projection"], ctx.outputs[second]["projection"]
  p1, p2 = ctx.extra("predictor", z1), ctx.extra("predictor", z2)
  n = z1.shape[0]
  if o.queue_size < n:  # static shapes: raised when the step is traced, before training
    raise ValueError(f"nnclr.queue_size ({o.queue_size}) must be at least the unlabeled batch "
                     f"({n} images), the projections one step enqueues")
  queue = ctx.state["queue"]
  idx1, nn1 = nearest_neighbours(z1, queue)
  _, nn2 = nearest_neighbours(z2, queue)
  loss = (nnclr_loss(nn1, p2, temperature=o.temperature)
          + nnclr_loss(nn2, p1, temperature=o.temperature)) / 2.0
  truth = ctx.batch.get("unlabeled_labels")
  if truth is None:  # streamed batches may carry no labels
    truth = jnp.full((n,), -1, jnp.int32)
  known = truth >= 0
  hits = known & (ctx.state["labels"][idx1] == truth)
  unit = z1 / jnp.maximum(jnp.linalg.norm(z1, axis=-1, keepdims=True), 1e-12)
  metrics = {
      "nn_accuracy": jnp.sum(hits) / jnp.maximum(jnp.sum(known), 1),
      "nn_similarity": jnp.mean(jnp.sum(jax.lax.stop_gradient(unit) * nn1, -1)),
  }
  new_queue, pointer = moco_enqueue(queue, ctx.state["pointer"], z1)
  state = {"queue": new_queue,
           "labels": enqueue_labels(ctx.state["labels"], ctx.state["pointer"], truth),
           "pointer": pointer}
  return loss, metrics, state


def option_errors(options) -> list[str]:
  return check("nnclr", options, {
      "temperature": number(0, low_open=True),
      "queue_size": integer(1),
      "predictor_hidden_dim": integer(1),
      "views": one_of(*_VIEW_PAIRS),
  })


METHOD = register(Method(
    name="nnclr", loss=nnclr_method_loss, options=OPTIONS, option_errors=option_errors,
    views=two_views, needs_projection=True, init_state=init_state,
    extras=lambda options, info: {"predictor": Extra(
        Predictor(options.predictor_hidden_dim, info.projection_dim), input="projection")}))
