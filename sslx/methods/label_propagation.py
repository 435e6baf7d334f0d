"""Graph label propagation as loss terms: in-batch (`graph`) and deep LP (`deep_lp`).

``graph`` (every step): the kNN graph over the batch's weak-view features
(labeled + unlabeled), labels spread with conjugate gradient
(:func:`sslx.graph.batch_label_propagation`); the unlabeled images' pseudo-labels,
weighted by certainty and class balance, are targets for their *strong* views. It
composes with FixMatch: the graph supplies targets where the classifier is unsure.
``memory_size > 0`` adds a first-in-first-out memory of the weak-view features (and
labels, -1 for unlabeled) of the last ``memory_size`` batch images to the graph's
nodes, as CoMatch's memory bank widens its graph: the batch's pseudo-labels then come
from a graph of ``batch + memory`` points instead of the batch alone. The memory is
state (``state.method_state['graph']``: ``features [M, D]`` unit rows, ``labels [M]``,
-2 for a row not yet written, ``pointer``), written after the loss under stop-gradient;
unwritten rows are zero vectors (no edge weight) and count in no class weight. The loss
sees the global batch, so the memory is the same on every device.

``deep_lp`` (Iscen et al., CVPR 2019): every ``refresh_every`` steps from
``start_step``, embed the labeled and unlabeled pools with the current network (eval
mode), build the kNN graph (k = 50, weights ``sim ** 3``), propagate by CG, and keep
per-example pseudo-labels, certainty weights omega and class weights zeta in the term's
state; each step then trains on ``omega_i * zeta_{y_i} * CE`` for the sampled unlabeled
images (weak views, as in the paper), looked up by their pool indices. The refresh runs
inside one jitted function of the state, so it is checkpointed and resumes exactly.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.graph import batch_label_propagation, knn_graph, lp_pseudo_labels, propagate
from sslx.graph.propagation import class_weights
from sslx.losses import weighted_pseudo_label_loss
from sslx.losses.momentum_contrast import moco_enqueue
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, integer, number
from sslx.methods.nnclr import enqueue_labels

GRAPH_OPTIONS = ml_collections.ConfigDict(dict(
    k=10,  # neighbours per example in the batch graph
    alpha=0.99,
    gamma=3.0,  # edge weight = max(cosine similarity, 0) ** gamma
    num_iters=20,  # CG iterations
    memory_size=0,  # > 0: graph nodes also include the last memory_size batch images
))

DEEP_LP_OPTIONS = ml_collections.ConfigDict(dict(
    k=50,
    alpha=0.99,
    gamma=3.0,
    num_iters=20,
    refresh_every=500,  # steps between graph rebuilds (Iscen et al.: every epoch)
    start_step=0,  # the term is off (and no graph is built) before this step
    embed_batch_size=512,
))


def _pseudo_label_accuracy(pseudo, truth):
  known = truth >= 0
  return jnp.sum((pseudo == truth) & known) / jnp.maximum(jnp.sum(known), 1)


_EMPTY = -2  # label of a memory row not yet written


def _graph_init(options, info):
  if not options.memory_size:
    return {}
  return {"features": jnp.zeros((options.memory_size, info.feature_dim), jnp.float32),
          "labels": jnp.full((options.memory_size,), _EMPTY, jnp.int32),
          "pointer": jnp.zeros((), jnp.int32)}


def graph_loss(ctx: Context):
  opts = ctx.options
  labeled = ctx.outputs["labeled_weak"]["features"]
  unlabeled = ctx.outputs["unlabeled_weak"]["features"]
  n_l, n_u = labeled.shape[0], unlabeled.shape[0]
  labels = jnp.concatenate([ctx.batch["labeled_labels"], jnp.full((n_u,), -1, jnp.int32)])
  features = jnp.concatenate([labeled, unlabeled])
  if opts.memory_size:
    if opts.memory_size < n_l + n_u:  # static shapes: raised when the step is traced
      raise ValueError(f"graph.memory_size ({opts.memory_size}) must be at least the batch "
                       f"({n_l} labeled + {n_u} unlabeled images), the rows one step writes")
    memory = ctx.state
    graph_features = jnp.concatenate([features, memory["features"]])
    graph_labels = jnp.concatenate([labels, jnp.maximum(memory["labels"], -1)])
  else:
    graph_features, graph_labels = features, labels
  targets = batch_label_propagation(
      graph_features, graph_labels, num_classes=ctx.num_classes,
      k=opts.k, alpha=opts.alpha, gamma=opts.gamma, num_iters=opts.num_iters)
  pseudo = targets.pseudo_labels[n_l:n_l + n_u]
  omega = targets.certainty_weights[n_l:n_l + n_u]
  zeta = targets.class_weights
  if opts.memory_size:  # unwritten memory rows count in no class
    written = jnp.concatenate([jnp.ones((n_l + n_u,), bool), memory["labels"] != _EMPTY])
    zeta = class_weights(targets.pseudo_labels, ctx.num_classes, written)
  loss = weighted_pseudo_label_loss(ctx.outputs["unlabeled_strong"]["logits"], pseudo,
                                    omega, zeta)
  metrics = {"mean_certainty": jnp.mean(omega)}
  if "unlabeled_labels" in ctx.batch:
    metrics["pseudo_label_accuracy"] = _pseudo_label_accuracy(pseudo,
                                                              ctx.batch["unlabeled_labels"])
  if not opts.memory_size:
    return loss, metrics
  new_features, pointer = moco_enqueue(memory["features"], memory["pointer"], features)
  new_labels = enqueue_labels(memory["labels"], memory["pointer"], labels)
  return loss, metrics, {"features": new_features, "labels": new_labels, "pointer": pointer}


def _deep_lp_init(options, info):
  del options
  u, num_classes = info.pool_sizes["unlabeled"], info.num_classes
  return {"pseudo_labels": jnp.full((u,), -1, jnp.int32),  # -1: no graph built yet
          "certainty_weights": jnp.zeros((u,), jnp.float32),
          "class_weights": jnp.ones((num_classes,), jnp.float32)}


def deep_lp_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  idx = ctx.batch["unlabeled_indices"]
  pseudo = state["pseudo_labels"][idx]
  omega = state["certainty_weights"][idx]
  loss = weighted_pseudo_label_loss(ctx.outputs["unlabeled_weak"]["logits"], pseudo, omega,
                                    state["class_weights"])
  loss = jnp.where(ctx.step >= opts.start_step, loss, 0.0)
  metrics = {"mean_certainty": jnp.mean(omega)}
  if "unlabeled_labels" in ctx.batch:
    metrics["pseudo_label_accuracy"] = _pseudo_label_accuracy(pseudo,
                                                              ctx.batch["unlabeled_labels"])
  return loss, metrics, state


def embed_pool(embed, images, batch_size: int):
  """``embed`` over all `images` in fixed-size chunks (one compiled shape): ``[N, D]``."""
  n = images.shape[0]
  chunks = -(-n // batch_size)
  padded = jnp.concatenate(
      [images, jnp.zeros((chunks * batch_size - n, *images.shape[1:]), images.dtype)])
  out = jax.lax.map(embed, padded.reshape(chunks, batch_size, *images.shape[1:]))
  return out.reshape(chunks * batch_size, -1)[:n]


def deep_lp_refresh(options, embed, arrays, state, num_classes):
  """Rebuilds the pseudo-labels of the unlabeled pool from the current features."""
  del state
  # Pool sizes come from the labels: sharded image arrays may carry padding rows.
  n_lab, n_u = arrays["labeled_labels"].shape[0], arrays["unlabeled_labels"].shape[0]
  labeled = embed_pool(embed, arrays["labeled_images"][:n_lab], options.embed_batch_size)
  unlabeled = embed_pool(embed, arrays["unlabeled_images"][:n_u], options.embed_batch_size)
  features = jnp.concatenate([labeled, unlabeled])
  labels = jnp.concatenate([arrays["labeled_labels"], jnp.full((n_u,), -1, jnp.int32)])
  indices, sims = knn_graph(features, k=options.k)
  scores = propagate(indices, jnp.maximum(sims, 0.0) ** options.gamma, labels,
                     num_classes=num_classes, alpha=options.alpha, num_iters=options.num_iters,
                     method="cg", normalize_by_class_size=True)
  pseudo, omega, zeta = lp_pseudo_labels(scores, labels)
  return {"pseudo_labels": pseudo[n_lab:], "certainty_weights": omega[n_lab:],
          "class_weights": zeta}


# The graph's options; deep LP adds its refresh period.
_GRAPH_CHECKS = {
    "k": integer(1),
    "alpha": number(0, 1, low_open=True, high_open=True),
    "gamma": number(0, low_open=True),
    "num_iters": integer(1),
}


def graph_option_errors(options) -> list[str]:
  return check("graph", options, {**_GRAPH_CHECKS,
                                  "memory_size": integer(0, hint="0: the batch alone")})


def deep_lp_option_errors(options) -> list[str]:
  return check("deep_lp", options, {**_GRAPH_CHECKS, "refresh_every": integer(1),
                                     "start_step": integer(0), "embed_batch_size": integer(1)})


_WEAK = View("unlabeled", "weak")
GRAPH = register(Method(
    name="graph", loss=graph_loss, options=GRAPH_OPTIONS, option_errors=graph_option_errors,
    init_state=_graph_init,
    views={"labeled_weak": View("labeled", "weak"), "unlabeled_weak": _WEAK,
           "unlabeled_strong": View("unlabeled", "strong")}))
DEEP_LP = register(Method(
    name="deep_lp", loss=deep_lp_loss, options=DEEP_LP_OPTIONS,
    option_errors=deep_lp_option_errors,
    views={"unlabeled_weak": _WEAK}, init_state=_deep_lp_init, refresh=deep_lp_refresh))
