"""FreeMatch (Wang et al., ICLR 2023): self-adaptive thresholds and fairness.

The threshold follows the model's confidence. From the weak-view probabilities q_b of
each unlabeled batch the method keeps EMAs (decay lambda = ``ema_p``)

  tau_t   = lambda tau_{t-1} + (1 - lambda) mean_b max_c q_bc     (global)
  p~_t(c) = lambda p~_{t-1}(c) + (1 - lambda) mean_b q_bc          (local, per class)
  tau_t(c) = tau_t * p~_t(c) / max_c' p~_t(c')                     (self-adaptive threshold)

masks the hard pseudo-label of example b in when max_c q_bc >= tau_t(argmax q_b), and
adds the self-adaptive fairness term with weight ``fairness_weight``:

  L = (1/B) sum_b mask_b CE(argmax q_b, strong_b) + w_f L_f,
  L_f = sum_c SumNorm(p~_t / h~_t)_c log SumNorm(p_bar / h_bar)_c

(p_bar, h_bar: mean probability and argmax histogram of the masked-in strong views; h~_t
an EMA of the weak argmax histogram). Following USB's ``FreeMatchThresholingHook`` (the
authors' code) rather than the paper's text:
- the EMAs start at tau_0 = 1, p~_0 = h~_0 = ones (USB has the division by C commented
  out; the paper starts at 1/C), and are updated with the current batch *before* its
  mask is computed;
- ``fairness_weight`` is USB's ``ent_loss_ratio`` (0.01, the argument default) relative to
  lambda_u, the weight of this term in ``loss.terms`` (USB: 1); L_f is 0 in a batch with
  no example masked in;
- ``use_quantile`` (0.8 quantile instead of the mean confidence) and ``clip_threshold``
  (tau_t clipped to 0.95) are USB options, off by default.

State (``state.method_state['freematch']``, checkpointed): ``global_threshold`` (scalar),
``class_probs`` and ``label_hist`` ([num_classes]). Diagnostics: mask rate, pseudo-label
accuracy where the unlabeled labels are known, the two loss parts, tau_t and the threshold
of each class (<= 20 classes).
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (freematch_fairness_loss, freematch_thresholds,
                                  freematch_update, masked_pseudo_label_loss,
                                  pseudo_label_diagnostics)
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import boolean, check, number

OPTIONS = ml_collections.ConfigDict(dict(
    ema_p=0.999,  # decay of the EMAs of confidence, class probabilities and histogram
    fairness_weight=0.01,  # USB ent_loss_ratio, relative to this term's weight
    use_quantile=False,  # 0.8 quantile of the confidences instead of their mean
    clip_threshold=False,  # clip tau_t to [0, 0.95]
    hard_label=True,  # one-hot pseudo-labels; False: softmax(logits_weak / temperature)
    temperature=0.5,  # T for soft targets (USB default)
))

_MAX_CLASSES_LOGGED = 20


def init_state(options, info):
  del options
  k = info.num_classes
  return {"global_threshold": jnp.ones((), jnp.float32),
          "class_probs": jnp.ones((k,), jnp.float32),
          "label_hist": jnp.ones((k,), jnp.float32)}


def freematch_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  logits_weak = jax.lax.stop_gradient(ctx.outputs["unlabeled_weak"]["logits"].astype(jnp.float32))
  logits_strong = ctx.outputs["unlabeled_strong"]["logits"]
  probs = jax.nn.softmax(logits_weak, axis=-1)
  tau, class_probs, label_hist = freematch_update(
      state["global_threshold"], state["class_probs"], state["label_hist"], probs,
      momentum=opts.ema_p, use_quantile=opts.use_quantile, clip_threshold=opts.clip_threshold)
  thresholds = freematch_thresholds(tau, class_probs)
  pseudo_labels = jnp.argmax(probs, axis=-1).astype(jnp.int32)
  mask = (jnp.max(probs, axis=-1) >= thresholds[pseudo_labels]).astype(jnp.float32)
  targets = pseudo_labels if opts.hard_label else jax.nn.softmax(logits_weak / opts.temperature)
  consistency = masked_pseudo_label_loss(logits_strong, targets, mask)
  fairness = freematch_fairness_loss(logits_strong, mask, class_probs, label_hist)
  loss = consistency + opts.fairness_weight * fairness

  metrics = pseudo_label_diagnostics(pseudo_labels, mask, ctx.batch.get("unlabeled_labels"))
  metrics.update(consistency=consistency, fairness=fairness, global_threshold=tau)
  if ctx.num_classes <= _MAX_CLASSES_LOGGED:
    for c in range(ctx.num_classes):
      metrics[f"threshold/{c}"] = thresholds[c]
  new_state = {"global_threshold": tau, "class_probs": class_probs, "label_hist": label_hist}
  return loss, metrics, new_state


def option_errors(options) -> list[str]:
  return check("freematch", options, {
      "ema_p": number(0, 1, high_open=True),
      "fairness_weight": number(0),
      "use_quantile": boolean(),
      "clip_threshold": boolean(),
      "hard_label": boolean(),
      "temperature": number(0, low_open=True),
  })


METHOD = register(Method(
    name="freematch", loss=freematch_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")},
    init_state=init_state))
