"""SimMatch (Zheng et al., CVPR 2022): semantic and instance similarity, propagated both ways.

Paper: "SimMatch: Semi-supervised Learning with Similarity Matching", arXiv:2203.06915.
Code followed: USB's ``semilearn/algorithms/simmatch`` (microsoft/Semi-supervised-learning),
itself from the authors' KyleZheng1997/simmatch.

A labeled memory bank holds one l2-normalised embedding per labeled example, with its
label (``K`` = the size of the labeled pool). For the unlabeled batch, with weak-view class
probabilities :math:`p` (distribution-aligned), weak embeddings :math:`z^w`, strong
embeddings :math:`z^s` and bank entries :math:`b_k` of label :math:`y_k`:

  q_ik   = softmax_k(z^w_i . b_k / T)                         instance similarity
  qhat_ik = q_ik p_{i,y_k} / sum_k' q_ik' p_{i,y_k'}          unfolding (in-loss target)
  phat_i = alpha p_i + (1 - alpha) sum_{k: y_k = c} q_ik      aggregation (pseudo-label)
  L = 1/B sum_i 1[max phat_i >= tau] H(phat_i, softmax(logits^s_i))
      + lambda_in 1/B sum_i H(qhat_i, softmax_k(z^s_i . b_k / T))

and the labeled term is ``supervised`` (``loss.terms = {'supervised': 1, 'simmatch':
lambda_u}``). After the step the bank rows of the labeled batch are replaced by the
embeddings of the EMA teacher (model and head: this method's ``teacher`` target tree).

Where USB's code differs from the paper (followed here):
- the aggregation mixes with a fixed weight ``smoothing_alpha`` (paper Eq. 7 multiplies and
  renormalises); the pseudo-labels are soft and FixMatch-thresholded on ``phat``;
- the weak view is the *online* model's (one shared pass), distribution-aligned to uniform
  with a queue of the last ``da_len`` batch means (USB's ``DistAlignQueueHook``; the paper
  has no alignment); only the labeled bank embeddings come from the EMA teacher;
- during the first epoch (``warmup_steps``: USB's classic-CV epoch is 1,024 steps) the
  in-loss is multiplied by 0 and the pseudo-labels are not aggregated;
- the embedding head is two Linear layers with a ReLU (``proj_size`` out), and with
  ``epass`` (USB's classic-CV configs) the mean of three such heads, l2-normalised;
- for CIFAR/SVHN/STL-10 USB does not use the teacher for the bank but mixes the online
  labeled embeddings in, ``b <- normalize(0.7 b + 0.3 z)``: ``bank_momentum=0.7`` here.
The bank starts as unit-norm Gaussian rows (a fixed key) with labels 0, as USB's.

State (``state.method_state['simmatch']``, checkpointed): ``bank`` [K, proj_size],
``bank_labels`` [K] int32, ``p_model_queue`` [da_len, num_classes], ``p_model_pointer``.
Diagnostics: mask rate, pseudo-label accuracy (against the true labels of the unlabeled
pool where known), the consistency and in-loss parts, the share of the bank's labels that
are right for their rows (labels 0 until written).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (align_distribution, masked_pseudo_label_loss,
                                  pseudo_label_diagnostics)
from sslx.losses.contrastive_graph import (distribution_queue_update, simmatch_bank_update,
                                           simmatch_in_loss, simmatch_pseudo_labels)
from sslx.methods.base import Context, Extra, Method, Target, View, register
from sslx.methods.checks import boolean, check, integer, number

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # tau (USB p_cutoff)
    temperature=0.1,  # T of the instance similarities (USB classic-CV configs: 0.1)
    smoothing_alpha=0.9,  # alpha: weight of the class probabilities in the aggregation
    in_loss_weight=1.0,  # lambda_in (USB in_loss_ratio)
    proj_size=128,  # embedding size
    epass=True,  # mean of three embedding heads (USB use_epass, on in its classic-CV configs)
    da_len=32,  # batch means in the distribution-alignment queue (USB classic-CV configs)
    warmup_steps=1024,  # USB's first epoch: no in-loss, no aggregation
    bank_momentum=0.0,  # 0: bank rows <- EMA teacher embeddings; m > 0: online, mixed with m
    teacher_momentum=0.999,  # EMA decay of the teacher (USB ema_m), used when bank_momentum=0
))

_BANK_KEY = 0  # the bank's random initial rows: a fixed key (USB: torch.randn at init)


class EmbeddingHead(nn.Module):
  """USB's SimMatch/CoMatch embedding: ``Dense(d) -> ReLU -> Dense(out)``, l2-normalised;
  with ``num_heads = 3`` (EPASS) the mean of three such heads before normalising."""
  out_dim: int
  num_heads: int = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train  # no BatchNorm or dropout
    outs = [nn.Dense(self.out_dim, name=f"out{i}")(
        nn.relu(nn.Dense(x.shape[-1], name=f"hidden{i}")(x))) for i in range(self.num_heads)]
    z = sum(outs) / self.num_heads
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def _heads(options) -> int:
  return 3 if options.epass else 1


def init_state(options, info):
  k = info.pool_sizes["labeled"]
  bank = jax.random.normal(jax.random.key(_BANK_KEY), (k, options.proj_size), jnp.float32)
  return {"bank": bank / jnp.linalg.norm(bank, axis=-1, keepdims=True),
          "bank_labels": jnp.zeros((k,), jnp.int32),
          "p_model_queue": jnp.zeros((options.da_len, info.num_classes), jnp.float32),
          "p_model_pointer": jnp.zeros((), jnp.int32)}


def _teacher_source(params):
  """The teacher follows the model and this method's head."""
  return {"model": params["model"], "simmatch": {"head": params["simmatch"]["head"]}}


def simmatch_loss(ctx: Context):
  opts, state, batch = ctx.options, ctx.state, ctx.batch
  if "labeled_indices" not in batch:  # streamed batches carry no pool positions
    raise ValueError("simmatch keeps one bank row per labeled example and needs the pool on "
                     "the devices (data.streaming=False): the batch has no 'labeled_indices'")
  weak, strong = ctx.outputs["unlabeled_weak"], ctx.outputs["unlabeled_strong"]
  n = weak["features"].shape[0]
  z = ctx.extra("head", jnp.concatenate([weak["features"], strong["features"]]))
  z_weak, z_strong = jax.lax.stop_gradient(z[:n]), z[n:]
  if opts.bank_momentum == 0:
    teacher = ctx.forward(ctx.images["labeled_weak"], params="teacher", train=True)
    z_labeled = ctx.extra("head", teacher["features"], params="teacher")
  else:
    z_labeled = ctx.extra("head", ctx.outputs["labeled_weak"]["features"])
  z_labeled = jax.lax.stop_gradient(z_labeled)

  probs = jax.nn.softmax(jax.lax.stop_gradient(weak["logits"].astype(jnp.float32)), axis=-1)
  queue, pointer = distribution_queue_update(state["p_model_queue"], state["p_model_pointer"],
                                             probs)
  k = probs.shape[-1]
  probs = align_distribution(probs, jnp.mean(queue, axis=0), jnp.full((k,), 1.0 / k))
  bank, bank_labels = state["bank"], state["bank_labels"]
  unfolded, aggregated = simmatch_pseudo_labels(probs, z_weak, bank, bank_labels,
                                                temperature=opts.temperature,
                                                smoothing_alpha=opts.smoothing_alpha)
  in_loss = simmatch_in_loss(z_strong, bank, unfolded, temperature=opts.temperature)
  started = ctx.step >= opts.warmup_steps
  in_loss = jnp.where(started, in_loss, 0.0)  # USB: in_loss * 0 in the first epoch
  targets = jnp.where(started, aggregated, probs)
  mask = (jnp.max(targets, axis=-1) >= opts.threshold).astype(jnp.float32)
  consistency = masked_pseudo_label_loss(strong["logits"], targets, mask)
  loss = consistency + opts.in_loss_weight * in_loss

  new_bank, new_labels = simmatch_bank_update(bank, bank_labels, z_labeled,
                                              batch["labeled_labels"], batch["labeled_indices"],
                                              momentum=opts.bank_momentum)
  new_state = {"bank": new_bank, "bank_labels": new_labels, "p_model_queue": queue,
               "p_model_pointer": pointer}
  metrics = pseudo_label_diagnostics(jnp.argmax(targets, axis=-1).astype(jnp.int32), mask,
                                     batch.get("unlabeled_labels"))
  metrics.update(consistency=consistency, in_loss=in_loss,
                 confidence=jnp.mean(jnp.max(targets, axis=-1)))
  return loss, metrics, new_state


def option_errors(options) -> list[str]:
  return check("simmatch", options, {
      "threshold": number(0, 1),
      "temperature": number(0, low_open=True),
      "smoothing_alpha": number(0, 1),
      "in_loss_weight": number(0),
      "proj_size": integer(1),
      "da_len": integer(1),
      "warmup_steps": integer(0),
      "bank_momentum": number(0, 1, high_open=True),
      "teacher_momentum": number(0, 1),
      "epass": boolean(),
  })


METHOD = register(Method(
    name="simmatch", loss=simmatch_loss, options=OPTIONS, option_errors=option_errors,
    views={"labeled_weak": View("labeled", "weak"),
           "unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")},
    extras=lambda options, info: {"head": Extra(EmbeddingHead(options.proj_size,
                                                              _heads(options)))},
    targets=lambda options: ({"teacher": Target(
        momentum=lambda step, n: options.teacher_momentum, source=_teacher_source)}
        if options.bank_momentum == 0 else {}),
    init_state=init_state,
    needs_pool_indices=True))  # reads ctx.batch["labeled_indices"]: no data.streaming
