"""The Pi-model (Laine & Aila, ICLR 2017): two stochastic passes should agree.

Each unlabeled image is augmented twice (two *weak* views; the dropout draws of the
model differ too, where it has dropout) and the loss is the squared difference of the
two class-probability vectors, :func:`sslx.losses.softmax_mse`, its weight ramped up
linearly over the first ``warmup`` fraction of training. With ``loss.terms =
{'supervised': 1.0, 'pi_model': lambda_u}`` this is USB's ``pimodel``:

    loss = CE(labeled) + lambda_u * min(step / (warmup * num_steps), 1)
           * mean_i mean_k (softmax(z2_i)_k - stopgrad(softmax(z1_i))_k)^2

Differences from the paper, following USB's code: the first pass is a fixed target
(stop-gradient; the paper's squared difference sends gradient into both passes), the
ramp is linear over 40% of training (the paper: a Gaussian ``exp(-5 (1 - t)^2)`` over
the first 80 epochs), and lambda_u is 10 (the paper: w_max = 100 scaled by the labeled
share). USB runs the unlabeled passes with the BatchNorm running statistics frozen; here
both weak views share the one online pass with the labeled images, as in every sslx
method. Diagnostics: the consistency error, the ramp, the agreement of the two passes'
argmax and the first pass's accuracy where the unlabeled labels are known.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.consistency import softmax_mse
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, number
from sslx.methods.mean_teacher import ramp

OPTIONS = ml_collections.ConfigDict(dict(
    warmup=0.4,  # fraction of training over which the weight ramps 0 -> 1 (USB unsup_warm_up)
))


def pi_model_loss(ctx: Context):
  target_logits = ctx.outputs["unlabeled_weak"]["logits"]
  student_logits = ctx.outputs["unlabeled_weak_2"]["logits"]
  probs = jax.nn.softmax(jax.lax.stop_gradient(target_logits), -1)
  consistency = softmax_mse(student_logits, probs)
  weight = ramp(ctx.step, ctx.num_steps, ctx.options.warmup)
  first = jnp.argmax(target_logits, -1)
  metrics = {"consistency": consistency, "ramp": weight,
             "agreement": jnp.mean(first == jnp.argmax(student_logits, -1))}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    known = truth >= 0
    metrics["unlabeled_accuracy"] = (jnp.sum((first == truth) & known)
                                     / jnp.maximum(jnp.sum(known), 1))
  return weight * consistency, metrics


def option_errors(options) -> list[str]:
  return check("pi_model", options, {"warmup": number(0, 1)})


METHOD = register(Method(
    name="pi_model", loss=pi_model_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_weak_2": View("unlabeled", "weak")}))
