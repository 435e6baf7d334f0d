"""AdaMatch (Berthelot et al., ICLR 2022): relative threshold and distribution alignment.

The confidence threshold is relative to how confident the model is on labeled data, and
the weak-view predictions are aligned to the labeled class distribution:

  q~_b propto q_b * (p_target + 1e-6) / (p_model + 1e-6)     (distribution alignment)
  c_tau = tau * mean_{b in labeled} max_c p^l_bc                (relative threshold)
  L = (1/B) sum_b 1[max_c q~_bc >= c_tau] CE(argmax q~_b, strong_b)

with p_model an EMA of the mean unlabeled weak prediction and p_target an EMA of the mean
labeled weak prediction (decay ``ema_p``). This is USB's ``adamatch`` (its semi-supervised
form), which differs from the paper's domain-adaptation recipe: no random logit
interpolation and no separate batch-norm statistics for the source batch, a constant
lambda_u (the paper ramps it up), and EMAs instead of the paper's batch estimates:
- p_model is set to the first batch's mean, then updated; p_target starts uniform; both are
  updated with the current batch before the alignment;
- the labeled logits come from the shared train-mode forward pass (the ``labeled_weak`` view
  of the supervised term), as USB's concatenated forward;
- hard pseudo-labels from the *aligned* probabilities (USB's soft-label variant is not
  implemented).

State (``state.method_state['adamatch']``, checkpointed): ``p_model``, ``p_target``
([num_classes]), ``da_updates`` (int32). Diagnostics: mask rate, pseudo-label accuracy where
labels are known, the relative threshold.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (align_distribution, distribution_alignment_update,
                                  masked_pseudo_label_loss, pseudo_label_diagnostics,
                                  relative_threshold)
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, number

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # tau, relative to the mean labeled confidence (USB p_cutoff)
    ema_p=0.999,  # decay of the distribution-alignment EMAs
))


def init_state(options, info):
  del options
  k = info.num_classes
  return {"p_model": jnp.zeros((k,), jnp.float32),
          "p_target": jnp.full((k,), 1.0 / k, jnp.float32),
          "da_updates": jnp.zeros((), jnp.int32)}


def adamatch_loss(ctx: Context):
  opts, state = ctx.options, ctx.state

  def probs(view):
    logits = jax.lax.stop_gradient(ctx.outputs[view]["logits"].astype(jnp.float32))
    return jax.nn.softmax(logits, axis=-1)

  probs_labeled, probs_weak = probs("labeled_weak"), probs("unlabeled_weak")
  p_model, p_target, da_updates = distribution_alignment_update(
      state["p_model"], state["p_target"], state["da_updates"], probs_weak, probs_labeled,
      momentum=opts.ema_p)
  aligned = align_distribution(probs_weak, p_model, p_target)
  cutoff = relative_threshold(probs_labeled, threshold=opts.threshold)
  mask = (jnp.max(aligned, axis=-1) >= cutoff).astype(jnp.float32)
  pseudo_labels = jnp.argmax(aligned, axis=-1).astype(jnp.int32)
  loss = masked_pseudo_label_loss(ctx.outputs["unlabeled_strong"]["logits"], pseudo_labels, mask)
  metrics = pseudo_label_diagnostics(pseudo_labels, mask, ctx.batch.get("unlabeled_labels"))
  metrics["relative_threshold"] = cutoff
  new_state = {"p_model": p_model, "p_target": p_target, "da_updates": da_updates}
  return loss, metrics, new_state


def option_errors(options) -> list[str]:
  return check("adamatch", options, {
      "threshold": number(0, 1),
      "ema_p": number(0, 1, high_open=True),
  })


METHOD = register(Method(
    name="adamatch", loss=adamatch_loss, options=OPTIONS, option_errors=option_errors,
    views={"labeled_weak": View("labeled", "weak"),
           "unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")},
    init_state=init_state))
