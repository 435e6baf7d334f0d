"""Supervised cross-entropy on weakly augmented labeled images.

The lower bound (few labels) and upper bound (all labels) that every semi-supervised
method is judged against, and the labeled half of FixMatch.
"""

import ml_collections

from sslx.losses.classification import accuracy, cross_entropy
from sslx.methods.base import Context, Method, View, register

OPTIONS = ml_collections.ConfigDict(dict(label_smoothing=0.0))


def supervised_loss(ctx: Context):
  logits = ctx.outputs["labeled_weak"]["logits"]
  labels = ctx.batch["labeled_labels"]
  loss = cross_entropy(logits, labels, label_smoothing=ctx.options.label_smoothing)
  return loss, {"accuracy": accuracy(logits, labels)}


def option_errors(options) -> list[str]:
  ls = options.label_smoothing
  if not isinstance(ls, (int, float)) or not 0 <= ls < 1:
    return [f"supervised.label_smoothing must be in [0, 1), got {ls!r}"]
  return []


METHOD = register(Method(name="supervised", loss=supervised_loss, options=OPTIONS,
                         views={"labeled_weak": View("labeled", "weak")},
                         option_errors=option_errors))
