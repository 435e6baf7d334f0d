"""Barlow Twins (Zbontar et al., ICML 2021): make the two views' cross-correlation the identity.

Two views of each unlabeled image go through the shared encoder + projection head in
sslx's one online forward pass; the loss (:func:`sslx.losses.barlow_twins_loss`) is, with
``C`` the ``[dim, dim]`` cross-correlation of the batch-standardised projections,

  L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2,   C = bn(z_1)^T bn(z_2) / N

No negatives, predictor or momentum network: the redundancy term alone prevents collapse.
Under sslx's jit over the device mesh ``N`` and the batch statistics are global (the
official code needs SyncBatchNorm and an ``all_reduce`` of ``C`` for that).

Follows the official code (``facebookresearch/barlowtwins``, ``main.py``): ``bn`` is
``BatchNorm1d(affine=False)`` in train mode (biased batch variance, eps 1e-5),
``C`` is divided by the global batch size, ``lambd = 0.0051``, and there is no
``scale-loss`` factor (an early version had one; use the term's weight in
``config.loss.terms`` for that, as solo-learn's ``scale_loss``).

Where sslx differs: the projector is sslx's projection head (``model.projection_layers``
Dense layers with BN+ReLU between and a biased linear output; the code's 3 x 8192 MLP ends
in a bias-free Linear, a bias the standardisation removes anyway), and both views share
one forward pass, so the encoder's BatchNorm statistics span both views.

Diagnostics: ``on_diagonal`` (mean of C_ii, 1 when the views agree) and ``off_diagonal``
(root mean square of C_ij, i != j, 0 when units are decorrelated).
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.decorrelation import barlow_twins_loss, cross_correlation
from sslx.methods.base import Context, Method, TWO_VIEWS, register, two_views
from sslx.methods.checks import check, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    lambda_offdiag=0.0051,  # the official lambd
    views="simclr",  # 'simclr': two SimCLR views; 'strong': two RandAugment views
))

_VIEW_PAIRS = TWO_VIEWS


def barlow_twins_method_loss(ctx: Context):
  first, second = _VIEW_PAIRS[ctx.options.views]
  z1, z2 = ctx.outputs[first]["projection"], ctx.outputs[second]["projection"]
  loss = barlow_twins_loss(z1, z2, lambda_offdiag=ctx.options.lambda_offdiag)
  c = jax.lax.stop_gradient(cross_correlation(z1, z2))
  d = c.shape[0]
  off = (jnp.sum(c * c) - jnp.sum(jnp.diagonal(c) ** 2)) / max(d * (d - 1), 1)
  return loss, {"on_diagonal": jnp.mean(jnp.diagonal(c)), "off_diagonal": jnp.sqrt(off)}


def option_errors(options) -> list[str]:
  return check("barlow_twins", options, {
      "lambda_offdiag": number(0),
      "views": one_of(*_VIEW_PAIRS),
  })


METHOD = register(Method(
    name="barlow_twins", loss=barlow_twins_method_loss, options=OPTIONS,
    option_errors=option_errors, views=two_views, needs_projection=True))
