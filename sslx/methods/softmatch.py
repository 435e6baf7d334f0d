"""SoftMatch (Chen et al., ICLR 2023): truncated Gaussian weighting, uniform alignment.

Instead of a hard threshold, each pseudo-label gets a weight from a Gaussian on its
confidence, truncated at the running mean:

  m_b = max_c q~_bc,   lambda(m_b) = exp(-min(m_b - mu_t, 0)^2 / (2 sigma_t^2 / n_sigma^2))
  mu_t = l mu_{t-1} + (1 - l) mean_b m_b,   sigma_t^2 = l sigma_{t-1}^2 + (1 - l) var_b m_b

  L = (1/B) sum_b lambda(m_b) CE(argmax q_b, strong_b)

where q~ are the weak-view probabilities after uniform alignment (UA):
q~ propto q * (u + 1e-6) / (p_model + 1e-6), u uniform, p_model an EMA of the batch mean of
q (l = ``ema_p``). Following USB's ``softmatch`` (the authors' code):
- alignment is always applied (USB's ``dist_align`` flag is unused); with
  ``dist_uniform=False`` the target is an EMA of the labeled predictions instead of uniform
  (this adds the labeled weak view, shared with the supervised term);
- the EMAs start at mu_0 = 1/C, sigma_0^2 = 1, p_model = the first batch's mean, and are
  updated with the current batch before its weights are computed (variance unbiased);
- the weights use the aligned confidence, the hard pseudo-labels the *unaligned* argmax;
- USB's ``per_class`` variant (off by default) is not implemented.

State (``state.method_state['softmatch']``, checkpointed): ``conf_mean``, ``conf_var``
(scalars), ``p_model``, ``p_target`` ([num_classes]), ``da_updates`` (int32). Diagnostics:
mask rate (the mean weight), pseudo-label accuracy where labels are known, mu_t, sigma_t^2.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (align_distribution, distribution_alignment_update,
                                  masked_pseudo_label_loss, pseudo_label_diagnostics,
                                  softmatch_update, softmatch_weights)
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import boolean, check, number

OPTIONS = ml_collections.ConfigDict(dict(
    ema_p=0.999,  # decay of the EMAs (confidence mean/variance, p_model, p_target)
    n_sigma=2.0,  # the Gaussian's width divisor
    dist_uniform=True,  # align to uniform; False: to an EMA of the labeled predictions
    hard_label=True,  # one-hot pseudo-labels; False: softmax(logits_weak / temperature)
    temperature=0.5,  # T for soft targets (USB default)
))


def init_state(options, info):
  del options
  k = info.num_classes
  return {"conf_mean": jnp.asarray(1.0 / k, jnp.float32), "conf_var": jnp.ones((), jnp.float32),
          "p_model": jnp.zeros((k,), jnp.float32),
          "p_target": jnp.full((k,), 1.0 / k, jnp.float32),
          "da_updates": jnp.zeros((), jnp.int32)}


def views(options):
  out = {"unlabeled_weak": View("unlabeled", "weak"),
         "unlabeled_strong": View("unlabeled", "strong")}
  if not options.dist_uniform:
    out["labeled_weak"] = View("labeled", "weak")
  return out


def softmatch_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  logits_weak = jax.lax.stop_gradient(ctx.outputs["unlabeled_weak"]["logits"].astype(jnp.float32))
  probs = jax.nn.softmax(logits_weak, axis=-1)
  probs_labeled = None
  if not opts.dist_uniform:
    probs_labeled = jax.nn.softmax(
        jax.lax.stop_gradient(ctx.outputs["labeled_weak"]["logits"].astype(jnp.float32)), -1)
  p_model, p_target, da_updates = distribution_alignment_update(
      state["p_model"], state["p_target"], state["da_updates"], probs, probs_labeled,
      momentum=opts.ema_p)
  confidence = jnp.max(align_distribution(probs, p_model, p_target), axis=-1)
  mean, var = softmatch_update(state["conf_mean"], state["conf_var"], confidence,
                               momentum=opts.ema_p)
  weights = softmatch_weights(confidence, mean, var, n_sigma=opts.n_sigma)
  pseudo_labels = jnp.argmax(logits_weak, axis=-1).astype(jnp.int32)
  targets = pseudo_labels if opts.hard_label else jax.nn.softmax(logits_weak / opts.temperature)
  loss = masked_pseudo_label_loss(ctx.outputs["unlabeled_strong"]["logits"], targets, weights)
  metrics = pseudo_label_diagnostics(pseudo_labels, weights, ctx.batch.get("unlabeled_labels"))
  metrics.update(conf_mean=mean, conf_var=var)
  new_state = {"conf_mean": mean, "conf_var": var, "p_model": p_model, "p_target": p_target,
               "da_updates": da_updates}
  return loss, metrics, new_state


def option_errors(options) -> list[str]:
  return check("softmatch", options, {
      "ema_p": number(0, 1, high_open=True),
      "n_sigma": number(0, low_open=True),
      "temperature": number(0, low_open=True),
      "dist_uniform": boolean(),
      "hard_label": boolean(),
  })


METHOD = register(Method(
    name="softmatch", loss=softmatch_loss, options=OPTIONS, option_errors=option_errors,
    views=views, init_state=init_state))
