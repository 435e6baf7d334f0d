"""FlexMatch (Zhang et al., NeurIPS 2021): curriculum pseudo-labelling.

FixMatch's fixed threshold becomes one per class, scaled by how well the class is
learned. The method keeps, for every example of the unlabeled pool, the class it was last
predicted with confidence >= tau (-1 if never); with sigma_c the number of examples
selected as class c, the learning effect and thresholds are

  beta_c = sigma_c / max(max_c' sigma_c', N - sum_c' sigma_c')   (threshold warm-up)
  T_c = tau * M(beta_c),   M(x) = x / (2 - x)                    (convex mapping)

and the unlabeled loss is FixMatch's with ``T_c`` for the predicted class (mean over the
whole batch). Following USB's ``FlexMatchThresholdingHook`` (the authors' code) rather than
the paper's text:
- the mask of a step uses the thresholds of the previous steps; the selected labels and
  beta are updated after it, from this batch's predictions with confidence >= tau;
- beta starts at 0, so the thresholds start at 0 (every pseudo-label counts at first) and
  beta is left unchanged while the largest count (the -1s included) is the whole pool;
- hard pseudo-labels by default (``hard_label``; soft targets are softmax(logits / T)).

State (``state.method_state['flexmatch']``, checkpointed): ``selected_labels`` [pool] int32,
``learning_effect`` [num_classes] float32. Diagnostics: mask rate, pseudo-label accuracy
(against the true labels of the unlabeled pool where known), the share of the pool still
unselected, and the threshold of each class (<= 20 classes).
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.adaptive import (flexmatch_learning_effect, flexmatch_select,
                                  flexmatch_thresholds, masked_pseudo_label_loss,
                                  pseudo_label_diagnostics)
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import boolean, check, number

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # tau (USB p_cutoff)
    threshold_warmup=True,  # count the unselected examples in beta's normaliser
    hard_label=True,  # one-hot pseudo-labels; False: softmax(logits_weak / temperature)
    temperature=0.5,  # T for soft targets (USB default)
))

_MAX_CLASSES_LOGGED = 20


def init_state(options, info):
  del options
  return {"selected_labels": jnp.full((info.pool_sizes["unlabeled"],), -1, jnp.int32),
          "learning_effect": jnp.zeros((info.num_classes,), jnp.float32)}


def flexmatch_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  if "unlabeled_indices" not in ctx.batch:  # streamed batches carry no pool positions
    raise ValueError("flexmatch keeps a label per example of the unlabeled pool and needs the "
                     "pool on the devices (data.streaming=False): the batch has no "
                     "'unlabeled_indices'")
  logits_weak = jax.lax.stop_gradient(ctx.outputs["unlabeled_weak"]["logits"].astype(jnp.float32))
  probs = jax.nn.softmax(logits_weak, axis=-1)
  pseudo_labels = jnp.argmax(probs, axis=-1).astype(jnp.int32)
  thresholds = flexmatch_thresholds(state["learning_effect"], threshold=opts.threshold)
  mask = (jnp.max(probs, axis=-1) >= thresholds[pseudo_labels]).astype(jnp.float32)
  targets = pseudo_labels if opts.hard_label else jax.nn.softmax(logits_weak / opts.temperature)
  loss = masked_pseudo_label_loss(ctx.outputs["unlabeled_strong"]["logits"], targets, mask)

  selected = flexmatch_select(state["selected_labels"], ctx.batch["unlabeled_indices"], probs,
                              threshold=opts.threshold)
  effect = flexmatch_learning_effect(selected, state["learning_effect"],
                                     threshold_warmup=opts.threshold_warmup)
  new_state = {"selected_labels": selected, "learning_effect": effect}

  metrics = pseudo_label_diagnostics(pseudo_labels, mask, ctx.batch.get("unlabeled_labels"))
  metrics["unselected_fraction"] = jnp.mean((selected < 0).astype(jnp.float32))
  if ctx.num_classes <= _MAX_CLASSES_LOGGED:
    for c in range(ctx.num_classes):
      metrics[f"threshold/{c}"] = thresholds[c]
  return loss, metrics, new_state


def option_errors(options) -> list[str]:
  return check("flexmatch", options, {
      "threshold": number(0, 1),
      "threshold_warmup": boolean(),
      "hard_label": boolean(),
      "temperature": number(0, low_open=True),
  })


METHOD = register(Method(
    name="flexmatch", loss=flexmatch_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")},
    init_state=init_state, needs_pool_indices=True))
