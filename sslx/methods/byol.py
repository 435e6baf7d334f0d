"""BYOL (Grill et al., NeurIPS 2020): an online network predicts a momentum target's projection.

Everything BYOL needs beyond the shared model lives in this file:

* the **predictor** ``q``, an extra module of the method (``Dense -> BatchNorm -> ReLU ->
  Dense``, as the paper's projector/predictor MLPs), trained with the model;
* the **target network** ``xi`` (encoder + projector), a target tree of the method
  (``state.method_params['byol']['target']``), updated after every step as
  ``xi <- tau * xi + (1 - tau) * theta`` with the paper's schedule
  ``tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2`` (solo-learn's
  ``MomentumUpdater``: ``base_momentum`` -> ``final_momentum`` over the run);
* the symmetric loss over two augmented views,
  ``byol_loss(q(z_1), z'_2) + byol_loss(q(z_2), z'_1)`` (:func:`sslx.losses.byol_loss`,
  ``2 - 2 cos``), the target's projections ``z'`` under stop-gradient.

Differences from the official code: the online network sees both views (and the labeled
batch of the online probe) in sslx's one shared forward pass, and the target both views
in one pass, so BatchNorm statistics span both views rather than one view at a time.
Diagnostics: the mean cosine between prediction and target, and tau.
"""

import math

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from sslx.losses.self_supervised import byol_loss
from sslx.methods.base import Context, Extra, Method, TWO_VIEWS, Target, register, two_views
from sslx.methods.checks import check, integer, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    base_momentum=0.99,  # tau at step 0 (paper: 0.996 on ImageNet; solo-learn CIFAR: 0.99)
    final_momentum=1.0,  # tau at the last step
    predictor_hidden_dim=256,  # paper: 4096
    views="simclr",  # 'simclr': two SimCLR views; 'strong': two RandAugment views
))

_VIEW_PAIRS = TWO_VIEWS


class Predictor(nn.Module):
  """BYOL's predictor MLP: ``Dense(hidden) -> BatchNorm -> ReLU -> Dense(out)``."""
  hidden_dim: int
  out_dim: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Dense(self.hidden_dim)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(self.out_dim)(nn.relu(x))


def momentum(step, num_steps: int, base: float, final: float):
  """``final - (final - base) * (cos(pi * step / num_steps) + 1) / 2``."""
  return final - (final - base) * (jnp.cos(math.pi * step / num_steps) + 1.0) / 2.0


def byol_method_loss(ctx: Context):
  first, second = _VIEW_PAIRS[ctx.options.views]
  p1 = ctx.extra("predictor", ctx.outputs[first]["projection"])
  p2 = ctx.extra("predictor", ctx.outputs[second]["projection"])
  n = ctx.images[first].shape[0]
  target = ctx.forward(jnp.concatenate([ctx.images[first], ctx.images[second]]),
                       params="target", train=True)["projection"]
  z1, z2 = target[:n], target[n:]
  loss = byol_loss(p1, z2) + byol_loss(p2, z1)
  tau = momentum(ctx.step, ctx.num_steps, ctx.options.base_momentum, ctx.options.final_momentum)
  return loss, {"cosine": 1.0 - loss / 4.0, "tau": tau}


def option_errors(options) -> list[str]:
  errors = check("byol", options, {
      "base_momentum": number(0, 1),
      "final_momentum": number(0, 1),
      "predictor_hidden_dim": integer(1),
      "views": one_of(*_VIEW_PAIRS),
  })
  b, f = options.base_momentum, options.final_momentum
  if not errors and b > f:
    errors.append(f"byol.base_momentum ({b}) must be <= byol.final_momentum ({f})")
  return errors


METHOD = register(Method(
    name="byol", loss=byol_method_loss, options=OPTIONS, option_errors=option_errors,
    views=two_views, needs_projection=True,
    extras=lambda options, info: {"predictor": Extra(
        Predictor(options.predictor_hidden_dim, info.projection_dim), input="projection")},
    targets=lambda options: {"target": Target(momentum=lambda step, n: momentum(
        step, n, options.base_momentum, options.final_momentum))}))
