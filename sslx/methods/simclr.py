"""SimCLR (Chen et al., ICML 2020): NT-Xent between two augmented views.

Two views of each unlabeled image go through the encoder and the projection head
(``model.projection_dim > 0``) in one forward pass; ``nt_xent`` contrasts each view with
every other image of the *global* batch (under ``jax.jit`` over the device mesh the
negatives span all devices with no extra code). The online linear probe is the
``supervised`` term with ``model.stop_gradient_classifier=True``: it trains the
classifier on ``stop_gradient(features)`` and leaves the encoder to NT-Xent.

``views='simclr'`` uses two SimCLR views (the method itself); ``views='strong'`` uses two
strong (RandAugment) views and ``views='weak_strong'`` reuses FixMatch's weak and strong
views, so a FixMatch + NT-Xent composition costs no extra forward pass.
Diagnostics: contrastive accuracy, alignment and uniformity (Wang & Isola 2020).
"""

import ml_collections

from sslx.losses.contrastive import alignment, contrastive_accuracy, nt_xent, uniformity
from sslx.methods.base import Context, Method, View, register
from sslx.methods.checks import check, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    temperature=0.5,  # 0.5 for CIFAR-scale batches, 0.1 for ImageNet (SimCLR App. B.9)
    views="simclr",  # 'simclr' | 'strong' | 'weak_strong'
))

_VIEW_PAIRS = {
    "simclr": {"unlabeled_simclr_1": View("unlabeled", "simclr"),
               "unlabeled_simclr_2": View("unlabeled", "simclr")},
    "strong": {"unlabeled_strong": View("unlabeled", "strong"),
               "unlabeled_strong_2": View("unlabeled", "strong")},
    "weak_strong": {"unlabeled_weak": View("unlabeled", "weak"),
                    "unlabeled_strong": View("unlabeled", "strong")},
}


def _views(options):
  return _VIEW_PAIRS[options.views]


def nt_xent_loss(ctx: Context):
  first, second = _views(ctx.options)
  z1 = ctx.outputs[first]["projection"]
  z2 = ctx.outputs[second]["projection"]
  loss = nt_xent(z1, z2, temperature=ctx.options.temperature)
  return loss, {"contrastive_accuracy": contrastive_accuracy(z1, z2),
                "alignment": alignment(z1, z2), "uniformity": uniformity(z1)}


def option_errors(options) -> list[str]:
  return check("nt_xent", options, {
      "temperature": number(0, low_open=True),
      "views": one_of(*_VIEW_PAIRS),
  })


METHOD = register(Method(name="nt_xent", loss=nt_xent_loss, options=OPTIONS, views=_views,
                         option_errors=option_errors, needs_projection=True))
