"""CoMatch (Li et al., ICCV 2021): class probabilities and embeddings trained together.

Paper: "CoMatch: Semi-supervised Learning with Contrastive Graph Regularization",
arXiv:2011.11183. Code followed: USB's ``semilearn/algorithms/comatch``
(microsoft/Semi-supervised-learning), from the authors' salesforce/CoMatch.

With weak-view probabilities :math:`p` (distribution-aligned), l2-normalised weak
embeddings :math:`z^w`, a queue of past embeddings :math:`z^{queue}_k` with their
probabilities :math:`p^{queue}_k`, and two strong views :math:`s^0, s^1` of each image:

  phat_i = alpha p_i + (1 - alpha) sum_k softmax_k(z^w_i . z^queue_k / T) p^queue_k
  W_ij   = 1 if i = j else phat_i . phat_j;   What = W 1[W >= tau_c], rows normalised
  L = 1/B sum_i 1[max phat_i >= tau] H(phat_i, softmax(logits(s^0_i)))
      + lambda_c 1/B sum_i H(What_i, softmax_j(z(s^0_i) . z(s^1_j) / T))

and the labeled term is ``supervised`` (``loss.terms = {'supervised': 1, 'comatch':
lambda_u}``). After the step the queue takes this step's weak unlabeled embeddings with
their aligned (unsmoothed) probabilities, and the labeled embeddings with their one-hot
labels.

Where USB's code differs from the paper (followed here):
- the contrastive loss is one direction (``s^0`` rows against ``s^1`` columns, ``+1e-7``
  inside the log), not the paper's symmetric loss over the 2B views;
- the consistency target is the soft smoothed ``phat`` (USB's ``hard_label`` is unused by
  its train_step), thresholded at ``tau``; the same temperature T = 0.2 serves the memory
  smoothing and the contrastive loss;
- memory smoothing starts after the first epoch (``warmup_steps``: 1,024 steps in USB's
  classic-CV configs) and once the queue has been filled (USB: ``it > queue_batch`` with a
  queue of ``queue_batch`` steps; here: more than ``queue_size`` rows enqueued so far);
- distribution alignment to uniform with a queue of ``da_len`` batch means
  (``DistAlignQueueHook``), before the smoothing;
- the embedding head is Linear-ReLU-Linear (``proj_size`` 64 in USB's configs), the mean
  of three with ``epass``, l2-normalised.

Composition: the sslx pieces whose math is exactly CoMatch's are reused:
``masked_pseudo_label_loss`` (USB's masked soft CE, mean over the batch),
``align_distribution`` (USB's ``(p_target + 1e-6) / (p_model + 1e-6)`` alignment),
``pseudo_label_diagnostics``, and SimMatch's ``distribution_queue_update`` and embedding
head. Not reused, because the math differs: ``fixmatch_consistency`` (its targets come from
the weak logits, so memory-smoothed probabilities cannot be put in between alignment and
the threshold), ``nt_xent``/``contrastive_accuracy`` (one hard positive per row, symmetric,
self-similarity excluded; CoMatch's targets are a soft graph), ``moco_enqueue`` (it
l2-normalises the rows it writes, which probabilities must not be) and ``sslx.graph`` (kNN
engines and label propagation over a sparse graph; CoMatch's graph is a dense thresholded
agreement of pseudo-labels within the batch).

State (``state.method_state['comatch']``, checkpointed): ``queue_embeddings`` [queue_size,
proj_size], ``queue_probs`` [queue_size, num_classes], ``queue_pointer``, ``num_enqueued``
(saturating at queue_size + 1), ``p_model_queue`` [da_len, num_classes], ``p_model_pointer``.
Diagnostics: mask rate, pseudo-label accuracy (true labels of the unlabeled pool where
known), the two loss parts, whether smoothing is on, graph neighbours per row (self
excluded).
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (align_distribution, masked_pseudo_label_loss,
                                  pseudo_label_diagnostics)
from sslx.losses.contrastive_graph import (comatch_contrastive_loss, comatch_enqueue,
                                           comatch_memory_smoothing, comatch_pseudo_label_graph,
                                           distribution_queue_update)
from sslx.methods.base import Context, Extra, Method, View, register
from sslx.methods.checks import boolean, check, integer, number
from sslx.methods.simmatch import EmbeddingHead

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # tau of the consistency mask (USB p_cutoff)
    contrast_threshold=0.8,  # tau_c of the pseudo-label graph (USB contrast_p_cutoff)
    temperature=0.2,  # T of the memory smoothing and the contrastive loss (USB T)
    smoothing_alpha=0.9,  # alpha: weight of the model's own probabilities
    contrast_weight=1.0,  # lambda_c (USB contrast_loss_ratio)
    proj_size=64,  # embedding size (USB classic-CV configs)
    epass=True,  # mean of three embedding heads (USB use_epass)
    queue_size=2560,  # rows; USB: queue_batch 5 x (uratio 7 + 1) x batch 64
    da_len=32,  # batch means in the distribution-alignment queue
    warmup_steps=1024,  # USB's first epoch: no memory smoothing
))


def init_state(options, info):
  q, k = options.queue_size, info.num_classes
  return {"queue_embeddings": jnp.zeros((q, options.proj_size), jnp.float32),
          "queue_probs": jnp.zeros((q, k), jnp.float32),
          "queue_pointer": jnp.zeros((), jnp.int32),
          "num_enqueued": jnp.zeros((), jnp.int32),
          "p_model_queue": jnp.zeros((options.da_len, k), jnp.float32),
          "p_model_pointer": jnp.zeros((), jnp.int32)}


def comatch_loss(ctx: Context):
  opts, state, batch = ctx.options, ctx.state, ctx.batch
  out = ctx.outputs
  n_lab, n = out["labeled_weak"]["features"].shape[0], out["unlabeled_weak"]["features"].shape[0]
  z = ctx.extra("head", jnp.concatenate([out[v]["features"] for v in (
      "labeled_weak", "unlabeled_weak", "unlabeled_strong", "unlabeled_strong_2")]))
  z_labeled, z_weak = jax.lax.stop_gradient(z[:n_lab]), jax.lax.stop_gradient(z[n_lab:n_lab + n])
  z_strong_0, z_strong_1 = z[n_lab + n:n_lab + 2 * n], z[n_lab + 2 * n:]

  probs = jax.nn.softmax(jax.lax.stop_gradient(
      out["unlabeled_weak"]["logits"].astype(jnp.float32)), axis=-1)
  da_queue, da_pointer = distribution_queue_update(state["p_model_queue"],
                                                   state["p_model_pointer"], probs)
  k = probs.shape[-1]
  probs = align_distribution(probs, jnp.mean(da_queue, axis=0), jnp.full((k,), 1.0 / k))
  smoothed = comatch_memory_smoothing(probs, z_weak, state["queue_embeddings"],
                                      state["queue_probs"], temperature=opts.temperature,
                                      alpha=opts.smoothing_alpha)
  smoothing = (ctx.step >= opts.warmup_steps) & (state["num_enqueued"] > opts.queue_size)
  targets = jnp.where(smoothing, smoothed, probs)
  mask = (jnp.max(targets, axis=-1) >= opts.threshold).astype(jnp.float32)
  consistency = masked_pseudo_label_loss(out["unlabeled_strong"]["logits"], targets, mask)
  graph = comatch_pseudo_label_graph(targets, threshold=opts.contrast_threshold)
  contrast = comatch_contrastive_loss(z_strong_0, z_strong_1, graph,
                                      temperature=opts.temperature)
  loss = consistency + opts.contrast_weight * contrast

  rows = jnp.concatenate([probs, jax.nn.one_hot(batch["labeled_labels"], k)])
  queue_embeddings, queue_probs, pointer = comatch_enqueue(
      state["queue_embeddings"], state["queue_probs"], state["queue_pointer"],
      jnp.concatenate([z_weak, z_labeled]), rows)
  new_state = {"queue_embeddings": queue_embeddings, "queue_probs": queue_probs,
               "queue_pointer": pointer,
               "num_enqueued": jnp.minimum(state["num_enqueued"] + n + n_lab,
                                           opts.queue_size + 1).astype(jnp.int32),
               "p_model_queue": da_queue, "p_model_pointer": da_pointer}
  metrics = pseudo_label_diagnostics(jnp.argmax(targets, axis=-1).astype(jnp.int32), mask,
                                     batch.get("unlabeled_labels"))
  metrics.update(consistency=consistency, contrastive=contrast,
                 smoothing=smoothing.astype(jnp.float32),
                 graph_neighbours=jnp.mean(jnp.sum((graph > 0).astype(jnp.float32), -1)) - 1.0)
  return loss, metrics, new_state


def option_errors(options) -> list[str]:
  return check("comatch", options, {
      "threshold": number(0, 1),
      "contrast_threshold": number(0, 1),
      "temperature": number(0, low_open=True),
      "smoothing_alpha": number(0, 1),
      "contrast_weight": number(0),
      "proj_size": integer(1),
      "queue_size": integer(1),
      "da_len": integer(1),
      "warmup_steps": integer(0),
      "epass": boolean(),
  })


METHOD = register(Method(
    name="comatch", loss=comatch_loss, options=OPTIONS, option_errors=option_errors,
    views={"labeled_weak": View("labeled", "weak"),
           "unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong"),
           "unlabeled_strong_2": View("unlabeled", "strong")},
    extras=lambda options, info: {"head": Extra(EmbeddingHead(options.proj_size,
                                                              3 if options.epass else 1))},
    init_state=init_state))
