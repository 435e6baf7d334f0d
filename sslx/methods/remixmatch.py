r"""ReMixMatch (Berthelot et al., ICLR 2020): MixMatch with distribution alignment,
augmentation anchoring, a pre-mixup strong-view term and rotation prediction.

Per step, for the unlabeled batch (weak view ``u_w``, K strong views ``u_1 .. u_K``):

* distribution alignment: :math:`\tilde q = \mathrm{Normalize}(p(u_w) \cdot p_{target}
  / \tilde p_{model})` with :math:`\tilde p_{model}` the running mean (decay 0.999) of the
  weak predictions and :math:`p_{target}` the class distribution of the labeled set
  (:func:`sslx.losses.distribution_alignment_update`, :func:`sslx.losses.align_distribution`,
  :func:`sslx.losses.class_prior`);
* augmentation anchoring: the guess :math:`q = \mathrm{Sharpen}(\tilde q, T)` is the
  target of every strong view (and of the weak view itself);
* MixUp over labeled (one-hot) + the K strong + the weak views (as MixMatch,
  :func:`sslx.losses.mixup`, :math:`\lambda' = \max(\lambda, 1 - \lambda)`), one online
  pass over the mixed batch;
* rotation: the first strong view turned by a random multiple of 90 degrees, a linear
  4-way head on its features (:class:`sslx.methods.rotation.RotationHead`).

    loss = H(y_X', p) + r(t) * (lambda_kl * H(q, p(u_1)) + lambda_u * H(y_U', p))
           + lambda_rot * H(rot, p_rot(rot(u_1)))

with the ramp ``r(t) = clip(t / (warmup * num_steps), 0, 1)``
(:func:`sslx.losses.remixmatch_loss`). The method owns its labeled term, so a run uses
``loss.terms = {'remixmatch': 1.0}`` alone.

Follows USB's code (semilearn/algorithms/remixmatch) where it differs from the paper:
K = 2 strong views (paper 8), lambda_u 1.5, lambda_kl ("U1" term) 0.5, lambda_rot 0.5,
T 0.5, alpha 0.75, the unlabeled ramp over the first 1/64 of training (USB's
``unsup_warm_up``; the paper ramps the weights over 16,384 steps of 1M), the target
distribution the labeled class prior (``p_target_type='gt'``), the first DA update
setting the running mean to the batch mean, one lambda per batch, and the rotated
image is the same first strong view (``x_ulb_s_0_rot``). Differences from USB, said here:
RandAugment (sslx's ``strong``) instead of CTAugment (USB also uses RandAugment); the
weak, strong and labeled views go through sslx's one shared online pass (USB runs the
weak view without gradient and freezes BatchNorm for the strong views), the mixed batch is
one online pass (USB interleaves and updates BatchNorm from the first chunk only); the
rotation pass leaves the running statistics alone as USB's ``freeze_bn``. The labeled
class prior comes from the labeled split at init (``ModelInfo.labeled_class_prior``), so
device-resident and streamed data behave the same.

Diagnostics: the four losses, the ramp, lambda, the guesses' confidence and accuracy
against the known unlabeled labels, and the rotation accuracy.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import align_distribution, distribution_alignment_update
from sslx.losses.classification import accuracy, cross_entropy
from sslx.losses.holistic import remixmatch_loss
from sslx.losses.semi_supervised import mixup, mixup_lambda, sharpen
from sslx.methods.base import Context, Extra, Method, View, register
from sslx.methods.checks import check, integer, number
from sslx.methods.mean_teacher import ramp
from sslx.methods.rotation import NUM_ROTATIONS, RotationHead

OPTIONS = ml_collections.ConfigDict(dict(
    num_strong_views=2,  # K strong views per unlabeled image (USB: 2; paper: 8)
    temperature=0.5,  # sharpening T (USB T)
    alpha=0.75,  # Beta(alpha, alpha) of MixUp (USB mixup_alpha)
    unsup_weight=1.5,  # lambda_u, the mixed unlabeled CE (USB ulb_loss_ratio)
    kl_weight=0.5,  # lambda_kl, the pre-mixup strong-view CE (USB kl_loss_ratio)
    rotation_weight=0.5,  # lambda_rot; 0 turns the rotation head off (USB rot_loss_ratio)
    warmup=1 / 64,  # fraction of training over which the unlabeled weights ramp 0 -> 1
    distribution_momentum=0.999,  # decay of the running mean of weak predictions (USB hook)
))


def strong_view_names(options) -> list[str]:
  return ["unlabeled_strong"] + [f"unlabeled_strong_{i}"
                                 for i in range(2, options.num_strong_views + 1)]


def views(options):
  out = {"labeled_weak": View("labeled", "weak"), "unlabeled_weak": View("unlabeled", "weak")}
  for name in strong_view_names(options):
    out[name] = View("unlabeled", "strong")
  return out


def init_state(options, info):
  del options
  k = info.num_classes
  prior = info.labeled_class_prior or (1.0 / k,) * k
  return {"p_model": jnp.full((k,), 1.0 / k, jnp.float32),
          "p_target": jnp.asarray(prior, jnp.float32),  # USB's p_target_type='gt'
          "da_updates": jnp.zeros((), jnp.int32)}


def rotate_each(images: jax.Array, turns: jax.Array) -> jax.Array:
  """``[B, H, H, C]`` images, each turned by ``turns[b]`` quarter turns (``[B]`` int in 0..3)."""
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"rotation needs square images [B, H, H, C], got shape {images.shape}")
  rotations = [lambda x, k=k: jnp.rot90(x, k, axes=(0, 1)) for k in range(NUM_ROTATIONS)]
  return jax.vmap(lambda x, k: jax.lax.switch(k, rotations, x))(images, turns)


def remixmatch_method_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  strong = strong_view_names(opts)
  probs = jax.nn.softmax(jax.lax.stop_gradient(ctx.outputs["unlabeled_weak"]["logits"]), -1)
  p_model, p_target, da_updates = distribution_alignment_update(
      state["p_model"], state["p_target"], state["da_updates"], probs,
      momentum=opts.distribution_momentum)
  guess = sharpen(align_distribution(probs, p_model, p_target), temperature=opts.temperature)
  labels = ctx.batch["labeled_labels"]
  num_labeled = labels.shape[0]
  unlabeled = [ctx.images[v] for v in strong] + [ctx.images["unlabeled_weak"]]
  inputs = jnp.concatenate([ctx.images["labeled_weak"]] + unlabeled)
  targets = jnp.concatenate([jax.nn.one_hot(labels, ctx.num_classes)] + [guess] * len(unlabeled))
  lam = mixup_lambda(ctx.rng("lambda"), alpha=opts.alpha)
  permutation = jax.random.permutation(ctx.rng("permutation"), inputs.shape[0])
  mixed, mixed_targets = mixup(inputs, targets, lam=lam, permutation=permutation)
  logits = ctx.forward(mixed, params="online", train=True, rng="mixed")["logits"]
  labeled_loss, unlabeled_loss, strong_loss = remixmatch_loss(
      logits, mixed_targets, ctx.outputs[strong[0]]["logits"], guess, num_labeled=num_labeled)
  weight = ramp(ctx.step, ctx.num_steps, opts.warmup)
  loss = labeled_loss + weight * (opts.kl_weight * strong_loss + opts.unsup_weight * unlabeled_loss)
  metrics = {"labeled_loss": labeled_loss, "unlabeled_loss": unlabeled_loss,
             "strong_loss": strong_loss, "ramp": weight, "lambda": lam,
             "guess_confidence": jnp.mean(jnp.max(guess, -1))}
  if opts.rotation_weight > 0:
    turns = jax.random.randint(ctx.rng("rotation"), (ctx.images[strong[0]].shape[0],), 0,
                               NUM_ROTATIONS)
    features = ctx.forward(rotate_each(ctx.images[strong[0]], turns), params="online",
                           train=True, rng="rotation", update_stats=False)["features"]
    rot_logits = ctx.extra("rotation_head", features)
    rotation_loss = cross_entropy(rot_logits, turns)
    loss = loss + opts.rotation_weight * rotation_loss
    metrics.update(rotation_loss=rotation_loss, rotation_accuracy=accuracy(rot_logits, turns))
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    known = truth >= 0
    metrics["guess_accuracy"] = (jnp.sum((jnp.argmax(guess, -1) == truth) & known)
                                 / jnp.maximum(jnp.sum(known), 1))
  return loss, metrics, {"p_model": p_model, "p_target": p_target, "da_updates": da_updates}


def option_errors(options) -> list[str]:
  return check("remixmatch", options, {
      "num_strong_views": integer(1),
      "temperature": number(0, low_open=True),
      "alpha": number(0),
      "unsup_weight": number(0),
      "kl_weight": number(0),
      "rotation_weight": number(0),
      "warmup": number(0, 1),
      "distribution_momentum": number(0, 1, high_open=True),
  })


def extras(options, info):
  del info
  if options.rotation_weight <= 0:
    return {}
  return {"rotation_head": Extra(RotationHead(0), input="features")}  # USB: nn.Linear(feat, 4)


METHOD = register(Method(
    name="remixmatch", loss=remixmatch_method_loss, options=OPTIONS, option_errors=option_errors,
    views=views, extras=extras, init_state=init_state))
