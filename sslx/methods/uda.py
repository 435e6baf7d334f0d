"""UDA (Xie et al., NeurIPS 2020): sharpened weak-view targets for strong views, and TSA.

Labeled images: cross-entropy under Training Signal Annealing
(:func:`sslx.losses.tsa_cross_entropy`: examples whose correct-class probability
exceeds eta_t (:func:`sslx.losses.tsa_threshold`) are left out). Unlabeled
images: the KL divergence from the weak view's prediction sharpened by ``temperature``
to the strong (RandAugment) view's, where the weak prediction's confidence exceeds
``threshold`` (:func:`sslx.losses.uda_consistency`):

    loss = TSA-CE(labeled) + unsup_weight * mean_i 1[max q_i > threshold]
                                            * KL(softmax(z_w,i / T) || softmax(z_s,i))

The method owns its labeled term (TSA changes it), so a run uses ``loss.terms =
{'uda': 1.0}`` alone, not ``supervised``. Labeled, weak and strong images share one
forward pass, as the authors' code (and USB with ``use_cat``).

Differences: options follow USB's defaults (T 0.4, threshold 0.8, TSA off, weight 1);
the formulas follow the authors' code (google-research/uda), which USB departs from in
two places: USB's targets are not sharpened (its hook returns the probabilities as
they are when ``softmax=False``), and its TSA keeps examples by their *largest*
probability and averages over the batch, where the authors keep by the correct-class
probability and average over the kept examples. See the loss docstrings.
Diagnostics: the two loss parts, mask rate, TSA threshold and trained ratio, labeled
accuracy, pseudo-label accuracy (all and confident) where the unlabeled labels are known.
"""

import jax.numpy as jnp
import ml_collections

from sslx.losses.classification import accuracy
from sslx.losses.semi_supervised import (TSA_SCHEDULES, tsa_cross_entropy, tsa_threshold,
                                         uda_consistency)
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    temperature=0.4,  # sharpening T of the targets (USB T, authors' uda_softmax_temp)
    threshold=0.8,  # confidence the weak prediction needs (USB p_cutoff)
    tsa="none",  # 'none' | 'linear' | 'exp' | 'log' (USB tsa_schedule)
    unsup_weight=1.0,  # weight of the unlabeled term (USB lambda_u / ulb_loss_ratio)
))


def uda_loss(ctx: Context):
  opts = ctx.options
  logits = ctx.outputs["labeled_weak"]["logits"]
  labels = ctx.batch["labeled_labels"]
  eta = tsa_threshold(ctx.step, ctx.num_steps, schedule=opts.tsa, num_classes=ctx.num_classes)
  sup, sup_aux = tsa_cross_entropy(logits, labels, threshold=eta)
  unsup, aux = uda_consistency(ctx.outputs["unlabeled_weak"]["logits"],
                               ctx.outputs["unlabeled_strong"]["logits"],
                               threshold=opts.threshold, temperature=opts.temperature)
  metrics = {"sup_loss": sup, "unsup_loss": unsup, "mask_rate": aux["mask_rate"],
             "tsa_threshold": eta, "tsa_trained_ratio": sup_aux["trained_ratio"],
             "accuracy": accuracy(logits, labels), "confidence": jnp.mean(aux["confidence"])}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    known = truth >= 0
    correct = (aux["pseudo_labels"] == truth) & known
    metrics["pseudo_label_accuracy"] = jnp.sum(correct) / jnp.maximum(jnp.sum(known), 1)
    confident = known & (aux["mask"] > 0)
    metrics["confident_pseudo_label_accuracy"] = (
        jnp.sum(correct & confident) / jnp.maximum(jnp.sum(confident), 1))
  return sup + opts.unsup_weight * unsup, metrics


def option_errors(options) -> list[str]:
  return check("uda", options, {
      "temperature": number(0, low_open=True),
      "threshold": number(0, 1),
      "tsa": one_of(*TSA_SCHEDULES),
      "unsup_weight": number(0),
  })


METHOD = register(Method(
    name="uda", loss=uda_loss, options=OPTIONS, option_errors=option_errors,
    views={"labeled_weak": View("labeled", "weak"),
           "unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")}))
