"""FixMatch (Sohn et al., NeurIPS 2020): confidence-thresholded pseudo-labels.

The unlabeled term: a hard pseudo-label from the weak view (no gradient), used as the
target for the strong view when its confidence reaches ``threshold``; averaged over all
``mu * B`` unlabeled images. The full method is ``loss.terms = {'supervised': 1.0,
'fixmatch': lambda_u}`` with labeled, weak and strong images in one forward pass
(shared BatchNorm statistics, as the official code), EMA parameters for evaluation and
the FixMatch cosine schedule (see ``experiments/fixmatch_*.py``).

Diagnostics: mask rate, pseudo-label accuracy against the true labels of the unlabeled
pool where they are known (benchmarks), and the share of pseudo-labels per class.
"""

import jax.numpy as jnp
import ml_collections

from sslx.losses.consistency import fixmatch_consistency
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import boolean, check, number

OPTIONS = ml_collections.ConfigDict(dict(
    threshold=0.95,  # tau: confidence needed for a pseudo-label to count
    soft_targets=False,  # UDA-style sharpened soft targets instead of hard labels
    sharpen_temperature=1.0,  # T for soft targets
    distribution_alignment=False,  # ReMixMatch DA: align weak predictions to a uniform prior
    distribution_momentum=0.999,  # decay of the running mean of the model's predictions
))

_MAX_CLASSES_LOGGED = 20


def init_state(options, info):
  del options
  num_classes = info.num_classes
  # Running mean of softmax(weak logits) over unlabeled batches, for distribution alignment.
  return {"model_distribution": jnp.full((num_classes,), 1.0 / num_classes, jnp.float32)}


def fixmatch_loss(ctx: Context):
  opts = ctx.options
  state = ctx.state
  loss, aux = fixmatch_consistency(
      ctx.outputs["unlabeled_weak"]["logits"], ctx.outputs["unlabeled_strong"]["logits"],
      threshold=opts.threshold, soft_targets=opts.soft_targets,
      sharpen_temperature=opts.sharpen_temperature,
      model_distribution=state["model_distribution"] if opts.distribution_alignment else None)
  m = opts.distribution_momentum
  state = {"model_distribution": m * state["model_distribution"] + (1 - m) * aux["mean_probs"]}
  metrics = {"mask_rate": aux["mask_rate"], "confidence": jnp.mean(aux["confidence"])}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:  # known in benchmarks; -1 where unknown
    known = truth >= 0
    correct = (aux["pseudo_labels"] == truth) & known
    metrics["pseudo_label_accuracy"] = jnp.sum(correct) / jnp.maximum(jnp.sum(known), 1)
    confident = known & (aux["mask"] > 0)
    metrics["confident_pseudo_label_accuracy"] = (
        jnp.sum(correct & confident) / jnp.maximum(jnp.sum(confident), 1))
  if ctx.num_classes <= _MAX_CLASSES_LOGGED:
    counts = jnp.sum(jnp.eye(ctx.num_classes)[aux["pseudo_labels"]] * aux["mask"][:, None], 0)
    for c in range(ctx.num_classes):
      metrics[f"confident_per_class/{c}"] = counts[c]
  return loss, metrics, state


def option_errors(options) -> list[str]:
  errors = check("fixmatch", options, {
      "threshold": number(0, 1),
      "sharpen_temperature": number(0, low_open=True),
      "distribution_momentum": number(0, 1, high_open=True),
      "soft_targets": boolean(),
      "distribution_alignment": boolean(),
  })
  if options.sharpen_temperature != 1.0 and not options.soft_targets:
    errors.append("fixmatch.sharpen_temperature only applies with fixmatch.soft_targets=True")
  return errors


METHOD = register(Method(
    name="fixmatch", loss=fixmatch_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_strong": View("unlabeled", "strong")},
    init_state=init_state))
