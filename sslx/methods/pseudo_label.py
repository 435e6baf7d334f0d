"""Pseudo-Label (Lee, ICML-W 2013): train on the model's own confident predictions.

Each unlabeled image gets the argmax of the model's prediction as its label when the
prediction's confidence reaches ``threshold``; the cross-entropy against that label is
computed on the SAME logits (the target under stop-gradient), averaged over all
unlabeled images (:func:`sslx.losses.pseudo_label_loss`), and its weight ramps up
linearly over the first ``warmup`` fraction of training. With ``loss.terms =
{'supervised': 1.0, 'pseudo_label': lambda_u}`` this is USB's ``pseudolabel``:

    loss = CE(labeled) + lambda_u * min(step / (warmup * num_steps), 1)
           * mean_i 1[max p_i >= threshold] * CE(p_i, argmax p_i)

Differences: Lee's paper has no confidence threshold and ramps the weight from step
T1 = 100 epochs to T2 = 600 epochs; sslx follows USB's code (threshold 0.95, ramp from
step 0 over the first 40%). USB runs the unlabeled batch in a second pass with the
BatchNorm running statistics frozen; here the weak unlabeled view shares the one online
pass with the labeled images, as in every sslx method.
Diagnostics: mask rate, ramp, mean confidence, pseudo-label accuracy (all and confident)
where the unlabeled labels are known.
"""

import jax.numpy as jnp
import ml_collections

from sslx.losses.semi_supervised import pseudo_label_loss
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, number
from sslx.methods.mean_teacher import ramp

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # confidence a pseudo-label needs (USB p_cutoff)
    warmup=0.4,  # fraction of training over which the weight ramps 0 -> 1 (USB unsup_warm_up)
))


def pseudo_label_method_loss(ctx: Context):
  loss, aux = pseudo_label_loss(ctx.outputs["unlabeled_weak"]["logits"],
                                threshold=ctx.options.threshold)
  weight = ramp(ctx.step, ctx.num_steps, ctx.options.warmup)
  metrics = {"mask_rate": aux["mask_rate"], "ramp": weight,
             "confidence": jnp.mean(aux["confidence"])}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    known = truth >= 0
    correct = (aux["pseudo_labels"] == truth) & known
    metrics["pseudo_label_accuracy"] = jnp.sum(correct) / jnp.maximum(jnp.sum(known), 1)
    confident = known & (aux["mask"] > 0)
    metrics["confident_pseudo_label_accuracy"] = (
        jnp.sum(correct & confident) / jnp.maximum(jnp.sum(confident), 1))
  return weight * loss, metrics


def option_errors(options) -> list[str]:
  return check("pseudo_label", options, {"threshold": number(0, 1), "warmup": number(0, 1)})


METHOD = register(Method(
    name="pseudo_label", loss=pseudo_label_method_loss, options=OPTIONS,
    option_errors=option_errors, views={"unlabeled_weak": View("unlabeled", "weak")}))
