"""Dash (Xu et al., ICML 2021): pseudo-labels selected by a decreasing loss threshold.

After a supervised warm-up that estimates the loss rho_hat of the warmed-up model, an
unlabeled example is used when the loss of its weak view against its own pseudo-label is
at most a threshold that shrinks geometrically:

  t_b = softmax(z_b / T)  (hard one-hot once rho_t = rho_min)
  mask_b = 1[H(t_b, softmax(z_b)) <= rho_t],  rho_t = max(C gamma^-floor(t / n) rho_hat, rho_min)
  L = (1/B) sum_b mask_b H(t_b, softmax(strong_b))

with z_b the weak-view logits, t the step after warm-up and n = ``update_every``. Defaults
are USB's (``dash``: C 1.0001, gamma 1.27, rho_min 0.05, T 0.5, 2048 warm-up steps, rho
updated every 10 epochs: ``10 * num_iter_per_epoch`` = 10,240 steps). Where sslx differs
from USB's code, and why:
- USB's warm-up is a separate supervised loop before the semi-supervised run (whose step
  counter and EMA then restart) and rho_hat is its *evaluation* loss, on USB's eval set
  (the test set). sslx does not train on test data: here the warm-up is the first
  ``warmup_steps`` steps of the same run, during which this term is 0 (the supervised term
  trains alone; the unlabeled views still share the forward pass and its BatchNorm
  statistics), and rho_hat is an EMA (decay ``rho_init_decay``) of the cross-entropy of the
  labeled weak views over the warm-up (the train-mode logits of the shared pass), frozen
  when it ends. The learning-rate schedule is not restarted.
- The threshold is computed in closed form from the step (USB counts its updates), so the
  only state is rho_hat and the number of warm-up batches it has seen.

State (``state.method_state['dash']``, checkpointed): ``rho_init`` (float32),
``warmup_batches`` (int32). Diagnostics: rho_t, rho_hat, whether labels are hard, mask
rate and pseudo-label accuracy where the unlabeled labels are known.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (dash_selection, dash_threshold, masked_pseudo_label_loss,
                                  pseudo_label_diagnostics)
from sslx.losses.classification import cross_entropy
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, integer, number

OPTIONS = ml_collections.ConfigDict(dict(
    warmup_steps=2048,  # supervised-only steps before the term starts (USB num_wu_iter)
    rho_init_decay=0.9,  # EMA decay of the labeled loss estimating rho_hat over the warm-up
    c=1.0001,  # C of the schedule
    gamma=1.27,  # the threshold shrinks by 1 / gamma every `update_every` steps
    rho_min=0.05,  # the threshold's floor; reaching it switches to hard labels
    update_every=10240,  # USB: 10 epochs of 1,024 iterations
    temperature=0.5,  # T of the soft targets
))


def init_state(options, info):
  del options, info
  return {"rho_init": jnp.zeros((), jnp.float32), "warmup_batches": jnp.zeros((), jnp.int32)}


def dash_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  in_warmup = ctx.step < opts.warmup_steps
  # rho_hat: EMA of the labeled loss during warm-up (the first batch sets it), then frozen.
  labeled_loss = jax.lax.stop_gradient(cross_entropy(ctx.outputs["labeled_weak"]["logits"],
                                                     ctx.batch["labeled_labels"]))
  d = opts.rho_init_decay
  ema = jnp.where(state["warmup_batches"] > 0, d * state["rho_init"] + (1 - d) * labeled_loss,
                  labeled_loss)
  rho_init = jnp.where(in_warmup, ema, state["rho_init"])
  warmup_batches = state["warmup_batches"] + in_warmup.astype(jnp.int32)

  rho = dash_threshold(ctx.step - opts.warmup_steps, rho_init, c=opts.c, gamma=opts.gamma,
                       rho_min=opts.rho_min, update_every=opts.update_every)
  hard = rho <= opts.rho_min
  logits_weak = jax.lax.stop_gradient(ctx.outputs["unlabeled_weak"]["logits"])
  mask, targets = dash_selection(logits_weak, rho, hard_label=hard, temperature=opts.temperature)
  mask = jnp.where(in_warmup, 0.0, mask)
  loss = masked_pseudo_label_loss(ctx.outputs["unlabeled_strong"]["logits"], targets, mask)

  pseudo_labels = jnp.argmax(logits_weak, axis=-1).astype(jnp.int32)
  metrics = pseudo_label_diagnostics(pseudo_labels, mask, ctx.batch.get("unlabeled_labels"))
  metrics.update(rho=rho, rho_init=rho_init, hard_labels=hard.astype(jnp.float32),
                 warmup=in_warmup.astype(jnp.float32))
  return loss, metrics, {"rho_init": rho_init, "warmup_batches": warmup_batches}


def option_errors(options) -> list[str]:
  return check("dash", options, {
      "warmup_steps": integer(1),
      "update_every": integer(1),
      "rho_init_decay": number(0, 1, high_open=True),
      "c": number(0, low_open=True),
      "gamma": number(1),
      "rho_min": number(0, low_open=True),
      "temperature": number(0, low_open=True),
  })


METHOD = register(Method(
    name="dash", loss=dash_loss, options=OPTIONS, option_errors=option_errors,
    views={"labeled_weak": View("labeled", "weak"),
           "unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")},
    init_state=init_state))
