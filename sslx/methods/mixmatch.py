"""MixMatch (Berthelot et al., NeurIPS 2019): guessed labels, sharpening and MixUp.

Each unlabeled image gets K weak views; their predictions (no gradient) are averaged and
sharpened with temperature ``temperature`` (:func:`sslx.losses.sharpen`) into a guessed
label shared by the K views. The weak labeled images (one-hot labels) and the K
unlabeled views (guesses) are concatenated and mixed with a random permutation of
themselves (:func:`sslx.losses.mixup`, lambda' = max(lambda, 1 - lambda), lambda ~
Beta(alpha, alpha), :func:`sslx.losses.mixup_lambda`); the mixed images go through the
online model in a pass of their own, and the loss is (:func:`sslx.losses.mixmatch_loss`)

    loss = CE(mixed labeled targets, p) + unsup_weight * min(step / (warmup * num_steps), 1)
           * mean_{mixed unlabeled} mean_k (p_k - target_k)^2

The method owns its labeled term (the mixed labels replace plain cross-entropy), so a
run uses ``loss.terms = {'mixmatch': 1.0}`` alone.

Follows USB's code (semilearn/algorithms/mixmatch): one lambda per batch (the authors'
code draws one per example), no interleaving (commented out in USB), K = 2, T 0.5,
alpha 0.5, lambda_u 100, ramp over the first 40% (USB's classic config). USB computes the
guesses and the mixed passes with BatchNorm in train mode and its running statistics
updated only by the first (labeled-sized) chunk of the mixed batch; here the guesses come
from the one shared online pass (which also sees the weak labeled images; they are
needed for mixing) and the mixed batch is one online pass, both updating the running
statistics. Diagnostics: the two losses, the ramp, lambda, the guesses' confidence and
their accuracy where the unlabeled labels are known.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.semi_supervised import mixmatch_loss, mixup, mixup_lambda, sharpen
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, integer, number
from sslx.methods.mean_teacher import ramp

OPTIONS = ml_collections.ConfigDict(dict(
    num_augmentations=2,  # K weak views per unlabeled image (USB: 2)
    temperature=0.5,  # sharpening T (USB T)
    alpha=0.5,  # Beta(alpha, alpha) of MixUp (USB mixup_alpha)
    unsup_weight=100.0,  # weight of the unlabeled L2 loss (USB lambda_u / ulb_loss_ratio)
    warmup=0.4,  # fraction of training over which that weight ramps 0 -> 1 (USB unsup_warm_up)
))


def _unlabeled_views(options) -> list[str]:
  k = options.num_augmentations
  return ["unlabeled_weak"] + [f"unlabeled_weak_{i}" for i in range(2, k + 1)]


def views(options):
  out = {"labeled_weak": View("labeled", "weak")}
  for name in _unlabeled_views(options):
    out[name] = View("unlabeled", "weak")
  return out


def mixmatch_method_loss(ctx: Context):
  opts = ctx.options
  names = _unlabeled_views(opts)
  probs = [jax.nn.softmax(jax.lax.stop_gradient(ctx.outputs[v]["logits"]), -1) for v in names]
  guess = sharpen(sum(probs) / len(probs), temperature=opts.temperature)
  labels = ctx.batch["labeled_labels"]
  num_labeled = labels.shape[0]
  inputs = jnp.concatenate([ctx.images["labeled_weak"]] + [ctx.images[v] for v in names])
  targets = jnp.concatenate([jax.nn.one_hot(labels, ctx.num_classes)] + [guess] * len(names))
  lam = mixup_lambda(ctx.rng("lambda"), alpha=opts.alpha)
  permutation = jax.random.permutation(ctx.rng("permutation"), inputs.shape[0])
  mixed, mixed_targets = mixup(inputs, targets, lam=lam, permutation=permutation)
  logits = ctx.forward(mixed, params="online", train=True, rng="mixed")["logits"]
  labeled, unlabeled = mixmatch_loss(logits, mixed_targets, num_labeled=num_labeled)
  weight = ramp(ctx.step, ctx.num_steps, opts.warmup)
  metrics = {"labeled_loss": labeled, "unlabeled_loss": unlabeled, "ramp": weight,
             "lambda": lam, "guess_confidence": jnp.mean(jnp.max(guess, -1))}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    known = truth >= 0
    metrics["guess_accuracy"] = (jnp.sum((jnp.argmax(guess, -1) == truth) & known)
                                 / jnp.maximum(jnp.sum(known), 1))
  return labeled + opts.unsup_weight * weight * unlabeled, metrics


def option_errors(options) -> list[str]:
  return check("mixmatch", options, {
      "num_augmentations": integer(1),
      "temperature": number(0, low_open=True),
      "alpha": number(0),
      "unsup_weight": number(0),
      "warmup": number(0, 1),
  })


METHOD = register(Method(
    name="mixmatch", loss=mixmatch_method_loss, options=OPTIONS, option_errors=option_errors,
    views=views))
