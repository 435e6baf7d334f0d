r"""Co-training (Blum & Mitchell, COLT 1998) in its deep form (Qiao et al., "Deep
Co-Training for Semi-Supervised Image Recognition", ECCV 2018): two networks on two views
teach each other.

Network 1 is the run's model (evaluated, EMA-averaged, checkpointed as usual); network 2
is the method's own copy of the same architecture (an :class:`Extra` on the image shape,
built from ``options.model``, a JSON object like ``config.model``, which the configs set
to ``json.dumps(config.model.to_dict())``: option blocks are checked key by key, so a
free-form model dict cannot be one), trained by the same optimizer. Each unlabeled image
has two views, ``unlabeled_weak`` for network 1 and ``unlabeled_weak_2`` for network 2
(two independent weak augmentations stand in for Blum & Mitchell's two feature sets).
Per step:

    loss = CE(f1(x_l), y) + CE(f2(x_l), y)                                  (Qiao's L_sup)
           + pl_weight * r(t) * [L(f1(v1) -> f2(v2)) + L(f2(v2) -> f1(v1))]
           + js_weight * r(t) * JS(f1(v1), f2(v1))                        (Qiao's L_cot)

where ``L(a -> b)`` is the confident-pseudo-label cross-entropy of network b against the
hard labels of network a where a's confidence reaches ``threshold``
(:func:`sslx.losses.cross_pseudo_label_loss`: Blum & Mitchell's "each classifier labels
the examples it is most confident about for the other", as a per-step threshold instead of
the top-p/n per class per iteration), ``JS`` Deep Co-Training's Jensen-Shannon agreement
term on the same images (:func:`sslx.losses.co_training_js_divergence`) and ``r(t) =
exp(-5 (1 - t / warmup)^2)`` Deep Co-Training's ramp (over 80 of 600 epochs: ``warmup =
2 / 15``). The method owns both labeled terms, so a run uses ``loss.terms =
{'co_training': 1.0}`` alone.

With ``dif_weight > 0``, Qiao's view-difference term L_dif
(:func:`sslx.losses.co_training_view_difference`): each network's FGSM adversarial
examples (:func:`sslx.losses.fgsm_perturbation`, step ``epsilon`` on normalised images,
eval mode, against the labels on S and its own predictions on U) fed to the other
network, which must keep its clean prediction's partner:

    + dif_weight * r(t) * [H(p1(x), p2(g1(x))) + H(p2(x), p1(g2(x)))]   over x in S + U(v1)

Deep Co-Training proper is ``pl_weight=0, js_weight=10, dif_weight=0.5, epsilon=0.02``
(lambda_cot and lambda_dif of the PyTorch re-implementation named below; epsilon the
paper's for CIFAR-10, that code's last version uses 0.1); the defaults here are the plain co-training
exchange (JS and L_dif off: without L_dif the JS term alone pulls the two networks into
one, Qiao et al. Sec. 3.2). Measured, one seed, 20 labels, 600 steps, a shared loaded
CPU (``python -m sslx.main --config=experiments/co_training_digits.py --workdir=W
--config.num_steps=600 --config.eval_every=300 --config.checkpoint_every=600
--config.log_every=100``): raw test accuracy 0.892 with the defaults, 0.836 with
``--config.co_training.pl_weight=0.0 --config.co_training.js_weight=10.0
--config.co_training.dif_weight=0.5`` (Deep Co-Training's terms). Qiao's JS is the paper's equation as written (per example,
averaged over the batch); the widely used PyTorch re-implementation
(AlanChou/Deep-Co-Training-for-Semi-Supervised-Image-Recognition) later switched to
``KLDivLoss`` with mean reduction and the log of the mixed *logits*, which is not the JS
of the two distributions: not followed. Its L_dif (not detached targets, the mean over
S + U) is followed, but for BatchNorm: network 1 sees the adversarial images without
moving its running statistics, network 2 sees them in its one train-mode pass (the
PyTorch code runs every pass in train mode). Qiao draws a different labeled batch for
each network; here both read the same ``labeled_weak`` batch. ``unlabeled_weak_2`` is
network 2's view only (``shared_pass=False``): network 1's shared forward pass and its
BatchNorm batch see ``labeled_weak`` and ``unlabeled_weak``, as in the PyTorch code.

Diagnostics: both networks' labeled accuracy, each direction's mask rate and
pseudo-label accuracy against the known unlabeled labels, the two networks' agreement on
the unlabeled images, the JS term and (when on) the view difference.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.classification import accuracy, cross_entropy
from sslx.losses.self_training import (co_training_js_divergence, co_training_view_difference,
                                       cross_pseudo_label_loss, exp_rampup, fgsm_perturbation)
from sslx.methods.base import Context, Extra, Method, View, register
from sslx.methods.checks import check, number

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # confidence for a network's label to teach the other
    pl_weight=1.0,  # weight of the two cross pseudo-label terms
    js_weight=0.0,  # Qiao's lambda_cot (their code: 10, with L_dif)
    dif_weight=0.0,  # Qiao's lambda_dif, the adversarial view difference (their code: 0.5)
    epsilon=0.02,  # FGSM step of the adversarial views, on normalised images (Qiao: 0.02)
    warmup=2 / 15,  # fraction of training the unlabeled weights ramp over (Qiao: 80 / 600)
    model='{"name": "cnn"}',  # network 2's architecture, JSON: the configs copy config.model
))


def _accuracy_where_known(logits, truth):
  known = truth >= 0
  return jnp.sum((jnp.argmax(logits, -1) == truth) & known) / jnp.maximum(jnp.sum(known), 1)


def _adversarial(logits_fn, images, labels, epsilon):
  """Deep Co-Training's g(x): FGSM on the network's CE against `labels`, eval mode."""
  return images + fgsm_perturbation(lambda x: cross_entropy(logits_fn(x), labels), images,
                                    epsilon=epsilon)


def co_training_loss(ctx: Context):
  opts = ctx.options
  labels = ctx.batch["labeled_labels"]
  x_l, v1, v2 = (ctx.images[v] for v in ("labeled_weak", "unlabeled_weak", "unlabeled_weak_2"))
  n_l, n_u = x_l.shape[0], v1.shape[0]
  l1, u1_v1 = ctx.outputs["labeled_weak"]["logits"], ctx.outputs["unlabeled_weak"]["logits"]
  net2_inputs = [x_l, v2, v1]
  use_dif = opts.dif_weight > 0
  if use_dif:
    # L_dif's adversarial views of S and U (view 1), each network against the labels on
    # S and its own predictions on U, in eval mode (as the PyTorch code).
    x = jnp.concatenate([x_l, v1])
    net2_eval = lambda z: ctx.extra("net2", z, train=False)["logits"]
    u2_clean = jax.lax.stop_gradient(net2_eval(v1))
    adv_1 = _adversarial(
        lambda z: ctx.forward(z, params="online", train=False, rng="adversarial")["logits"], x,
        jnp.concatenate([labels, jnp.argmax(u1_v1, -1)]), opts.epsilon)
    adv_2 = _adversarial(net2_eval, x, jnp.concatenate([labels, jnp.argmax(u2_clean, -1)]),
                         opts.epsilon)
    net2_inputs.append(adv_1)
  # Network 2 in one pass over its inputs (one BatchNorm batch, like the shared pass).
  out2 = ctx.extra("net2", jnp.concatenate(net2_inputs))["logits"]
  l2, u2_v2, u2_v1 = out2[:n_l], out2[n_l:n_l + n_u], out2[n_l + n_u:n_l + 2 * n_u]
  supervised = cross_entropy(l1, labels) + cross_entropy(l2, labels)
  teach_2, mask_12 = cross_pseudo_label_loss(u1_v1, u2_v2, threshold=opts.threshold)
  teach_1, mask_21 = cross_pseudo_label_loss(u2_v2, u1_v1, threshold=opts.threshold)
  ramp = exp_rampup(ctx.step, ctx.num_steps, warmup=opts.warmup)
  loss = supervised + opts.pl_weight * ramp * (teach_1 + teach_2)
  js = co_training_js_divergence(u1_v1, u2_v1)
  if opts.js_weight > 0:
    loss = loss + opts.js_weight * ramp * js
  metrics = {"supervised": supervised, "teach_net2": teach_2, "teach_net1": teach_1,
             "js": js, "ramp": ramp, "mask_rate_1to2": jnp.mean(mask_12),
             "mask_rate_2to1": jnp.mean(mask_21),
             "net1_labeled_accuracy": accuracy(l1, labels),
             "net2_labeled_accuracy": accuracy(l2, labels),
             "agreement": jnp.mean(jnp.argmax(u1_v1, -1) == jnp.argmax(u2_v2, -1))}
  if use_dif:
    net1_on_adv_2 = ctx.forward(adv_2, params="online", train=True, rng="adversarial",
                                update_stats=False)["logits"]
    net2_on_adv_1 = out2[n_l + 2 * n_u:]
    dif = co_training_view_difference(jnp.concatenate([l1, u1_v1]), jnp.concatenate([l2, u2_v1]),
                                       net1_on_adv_2, net2_on_adv_1)
    loss = loss + opts.dif_weight * ramp * dif
    metrics["view_difference"] = dif
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # -1 where unknown
    metrics["net1_pseudo_label_accuracy"] = _accuracy_where_known(u1_v1, truth)
    metrics["net2_pseudo_label_accuracy"] = _accuracy_where_known(u2_v2, truth)
  return loss, metrics


def option_errors(options) -> list[str]:
  errors = check("co_training", options, {
      "threshold": number(0, 1),
      "pl_weight": number(0),
      "js_weight": number(0),
      "dif_weight": number(0),
      "epsilon": number(0),
      "warmup": number(0, 1),
  })
  if not isinstance(_model_spec(options.model), dict):
    errors.append("co_training.model must be a JSON object with a 'name', like config.model "
                  f"(e.g. '{{\"name\": \"cnn\", \"width\": 8}}'), got {options.model!r}")
  return errors


def _model_spec(text):
  """The parsed model config, or None when it is not a JSON object with a string 'name'."""
  try:
    spec = json.loads(text) if isinstance(text, str) else None
  except ValueError:
    return None
  return spec if isinstance(spec, dict) and isinstance(spec.get("name"), str) else None


def extras(options, info):
  from sslx import models  # flax models: only when a run builds the method
  spec = _model_spec(options.model)
  kwargs = {k: v for k, v in spec.items() if k != "name"}
  try:
    net2 = models.create_model(spec["name"], num_classes=info.num_classes, **kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f"co_training.model: {e}") from e
  return {"net2": Extra(net2, input=tuple(info.image_shape))}


METHOD = register(Method(
    name="co_training", loss=co_training_loss, options=OPTIONS, option_errors=option_errors,
    views={"labeled_weak": View("labeled", "weak"), "unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_weak_2": View("unlabeled", "weak", shared_pass=False)},
    extras=extras))
