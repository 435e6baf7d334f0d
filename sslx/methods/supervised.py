"""Supervised cross-entropy on weakly augmented labeled images.

The lower bound (few labels) and upper bound (all labels) that every semi-supervised
method is judged against, and the labeled half of FixMatch.
"""

import ml_collections

from sslx.losses.classification import accuracy, cross_entropy
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, number

OPTIONS = ml_collections.ConfigDict(dict(label_smoothing=0.0))


def supervised_loss(ctx: Context):
  logits = ctx.outputs["labeled_weak"]["logits"]
  labels = ctx.batch["labeled_labels"]
  loss = cross_entropy(logits, labels, label_smoothing=ctx.options.label_smoothing)
  return loss, {"accuracy": accuracy(logits, labels)}


def option_errors(options) -> list[str]:
  return check("supervised", options, {"label_smoothing": number(0, 1, high_open=True)})


METHOD = register(Method(name="supervised", loss=supervised_loss, options=OPTIONS,
                         views={"labeled_weak": View("labeled", "weak")},
                         option_errors=option_errors))
