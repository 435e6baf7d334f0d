"""SimSiam (Chen & He, CVPR 2021): a predictor and a stop-gradient, no negatives, no momentum.

Two views ``x_1, x_2`` of an image go through the shared encoder + projection head
``f`` (sslx's one online forward pass) and a predictor MLP ``h``, an extra module of
this method trained with the model. The loss is the symmetrised negative cosine
(:func:`sslx.losses.simsiam_loss`, Eq. 4 of the paper)::

  L = D(h(f(x_1)), sg(f(x_2))) / 2 + D(h(f(x_2)), sg(f(x_1))) / 2,   D(p, z) = -cos(p, z)

The paper's point is that the stop-gradient ``sg`` alone prevents collapse: unlike BYOL
(:mod:`sslx.methods.byol`) the target is the online network's own projection of the
other view, so there is no target tree and no momentum schedule.

The official code (``facebookresearch/simsiam``, ``main_simsiam.py`` / ``builder.py``):

* predictor ``Linear(dim, pred_dim, bias=False) -> BatchNorm -> ReLU -> Linear(pred_dim,
  dim)`` with a bottleneck ``pred_dim = dim / 4`` (512 for 2048): :class:`Predictor`,
  ``predictor_hidden_dim`` (default 512 as the code; set it from the projection size);
* ``-(cos(p1, z2).mean() + cos(p2, z1).mean()) * 0.5``, as here.

Where sslx differs from the official code (and says so): the projector is sslx's
projection head (``model.projection_layers`` Dense layers, BN+ReLU between, a linear
output) where the code uses 3 layers each followed by BatchNorm (the last without
affine); the code keeps the predictor's learning rate fixed (``--fix-pred-lr``) while
here the predictor follows the model's schedule (sslx has one optimizer for all
trained parameters); both views share one forward pass, so BatchNorm statistics span
both views (and the labeled batch of the online probe) rather than one view at a time.

Diagnostics: ``cosine`` (the mean cosine, ``-loss``) and ``output_std``, the paper's
collapse monitor (Fig. 2): the per-dimension std over the batch of the l2-normalised
projection, ``1 / sqrt(dim)`` for well-spread outputs and 0 at collapse.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.self_supervised import simsiam_loss
from sslx.methods.base import Context, Extra, Method, TWO_VIEWS, register, two_views
from sslx.methods.checks import check, integer, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    predictor_hidden_dim=512,  # the official pred_dim (dim / 4 of a 2048 projection)
    views="simclr",  # 'simclr': two SimCLR views; 'strong': two RandAugment views
))

_VIEW_PAIRS = TWO_VIEWS


class Predictor(nn.Module):
  """SimSiam's predictor: ``Dense(hidden, no bias) -> BatchNorm -> ReLU -> Dense(out)``."""
  hidden_dim: int
  out_dim: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Dense(self.hidden_dim, use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(self.out_dim)(nn.relu(x))


def output_std(z: jax.Array) -> jax.Array:
  """Mean over dimensions of the batch std of ``z / ||z||`` (``[batch, dim]`` -> scalar)."""
  u = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  return jnp.mean(jnp.std(u, axis=0))


def simsiam_method_loss(ctx: Context):
  first, second = _VIEW_PAIRS[ctx.options.views]
  z1, z2 = ctx.outputs[first]["projection"], ctx.outputs[second]["projection"]
  p1, p2 = ctx.extra("predictor", z1), ctx.extra("predictor", z2)
  loss = 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
  return loss, {"cosine": -loss, "output_std": jax.lax.stop_gradient(output_std(z1))}


def option_errors(options) -> list[str]:
  return check("simsiam", options, {
      "predictor_hidden_dim": integer(1),
      "views": one_of(*_VIEW_PAIRS),
  })


METHOD = register(Method(
    name="simsiam", loss=simsiam_method_loss, options=OPTIONS, option_errors=option_errors,
    views=two_views, needs_projection=True,
    extras=lambda options, info: {"predictor": Extra(
        Predictor(options.predictor_hidden_dim, info.projection_dim), input="projection")}))
