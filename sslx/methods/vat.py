"""VAT (Miyato et al., TPAMI 2018): consistency under the most damaging small perturbation.

For each unlabeled image x (one weak view, prediction q = softmax(f(x)) held fixed),
the adversarial direction is found by power iteration on the KL divergence
(:func:`sslx.losses.vat_perturbation`: a random unit direction d, scaled by ``xi``, and
``d <- grad_d KL(q || p(x + xi d))``), and the loss is the KL at ``x + eps d/||d||``
(:func:`sslx.losses.kl_with_logits`), ramped up linearly over the first ``warmup`` of
training, plus entropy minimisation of the clean prediction
(:func:`sslx.losses.entropy_loss`, weight ``entropy_weight``, not ramped). With
``loss.terms = {'supervised': 1.0, 'vat': lambda_u}`` and lambda_u = 1 this is USB's
``vat`` (VAT + EntMin):

    loss = CE(labeled) + ramp(step) * KL(q || p(x + r_adv)) + entropy_weight * H(p(x))

(the term weight multiplies both parts; USB's lambda_u, 1 by default, multiplies only the
KL). The clean and the perturbed passes run on the unlabeled images alone, in train mode
with the BatchNorm running statistics left alone, as USB (``bn_controller.freeze_bn``);
the weak view's share of the one shared online pass (with the labeled images) only
updates the running statistics. The clean prediction must come from a pass like the
adversarial one: taken from the shared pass, its BatchNorm batch differs (labeled +
unlabeled against unlabeled only) and the KL between the two passes collapsed training
(digits, 20 labels, 500 steps, seed 0: test accuracy 10.0% with eps 1, 29.2% with eps 0,
against 89.7% with the clean pass of its own and 82.5% for the labeled term alone).
Gradient flows into the model through the adversarial pass and the entropy term, not
through the clean target or r_adv.

Differences: the paper's perturbation norm is per dataset (eps 6 on ZCA-normalised
CIFAR-10 is USB's default; the digits config scales it to 8x8 inputs) and its VAT+EntMin
weights the entropy by 1; sslx follows USB's code (xi 1e-6, one power iteration,
entropy weight 0.06, linear ramp over 40%). Diagnostics: the KL, the entropy, the ramp,
the norm of r_adv and the accuracy of the clean prediction where labels are known.
"""

import jax.numpy as jnp
import ml_collections

from sslx.losses.semi_supervised import entropy_loss, kl_with_logits, vat_perturbation
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, integer, number
from sslx.methods.mean_teacher import ramp

OPTIONS = ml_collections.ConfigDict(dict(
    xi=1e-6,  # finite-difference scale of the power iteration (USB xi)
    eps=6.0,  # L2 norm of the adversarial perturbation per image (USB vat_eps)
    num_iters=1,  # power iterations (USB num_iters)
    entropy_weight=0.06,  # entropy minimisation weight, 0 = plain VAT (USB ent_loss_ratio)
    warmup=0.4,  # fraction of training over which the KL weight ramps 0 -> 1 (USB unsup_warm_up)
))


def _frozen_bn_logits(ctx: Context, images, rng: str):
  """Online logits in train mode (batch statistics) WITHOUT updating the running statistics,
  as USB's VAT (freeze_bn); an update would also leak a tracer out of the power
  iteration's ``jax.grad``."""
  return ctx.forward(images, params="online", train=True, rng=rng, update_stats=False)["logits"]


def vat_loss(ctx: Context):
  opts = ctx.options
  images = ctx.images["unlabeled_weak"]
  # The clean prediction in its own unlabeled-only pass, as USB: the adversarial pass then
  # differs from it by r_adv only, not also by the batch its BatchNorm statistics come from.
  clean = _frozen_bn_logits(ctx, images, "vat/clean")
  r_adv = vat_perturbation(lambda x: _frozen_bn_logits(ctx, x, "vat/power_iteration"),
                           images, clean, ctx.rng("direction"), xi=opts.xi, eps=opts.eps,
                           num_iters=opts.num_iters)
  adversarial = _frozen_bn_logits(ctx, images + r_adv, "vat/adversarial")
  kl = kl_with_logits(clean, adversarial)
  entropy = entropy_loss(clean)
  weight = ramp(ctx.step, ctx.num_steps, opts.warmup)
  r_norm = jnp.sqrt(jnp.sum(r_adv.reshape(r_adv.shape[0], -1) ** 2, -1))
  metrics = {"kl": kl, "entropy": entropy, "ramp": weight, "r_adv_norm": jnp.mean(r_norm)}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    known = truth >= 0
    metrics["unlabeled_accuracy"] = (jnp.sum((jnp.argmax(clean, -1) == truth) & known)
                                     / jnp.maximum(jnp.sum(known), 1))
  return weight * kl + opts.entropy_weight * entropy, metrics


def option_errors(options) -> list[str]:
  return check("vat", options, {
      "xi": number(0, low_open=True),
      "eps": number(0),
      "num_iters": integer(1),
      "entropy_weight": number(0),
      "warmup": number(0, 1),
  })


METHOD = register(Method(
    name="vat", loss=vat_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_weak": View("unlabeled", "weak")}))
