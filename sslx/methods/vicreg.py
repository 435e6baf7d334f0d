"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): variance-invariance-covariance regularisation.

Two views of each unlabeled image go through the shared encoder + projection head (the
paper's "expander") in sslx's one online forward pass; the loss
(:func:`sslx.losses.vicreg_loss`) is

  L = sim_coeff * mse(z_1, z_2) + std_coeff * v(z_1, z_2) + cov_coeff * c(z_1, z_2)

an invariance term, a hinge keeping each unit's batch std >= 1 in each view (no collapse)
and the squared off-diagonal covariances (decorrelated units). No negatives, predictor
or momentum network. Under sslx's jit over the device mesh the variances and covariances
are those of the global batch (the official code all-gathers the embeddings for them).

Follows the official code (``facebookresearch/vicreg``, ``main_vicreg.py``) where it is
more specific than the paper: unbiased variance plus 1e-4 under the square root,
``relu(1 - std)`` averaged over units and halved per view, covariance over ``N - 1``,
off-diagonal squares divided by the dimension ``D``; coefficients 25 / 25 / 1.

Where sslx differs: the expander is sslx's projection head (``model.projection_layers``
Dense layers with BN+ReLU between, a linear output; the code's is 3 x 8192), and both
views share one forward pass, so the encoder's BatchNorm statistics span both views.

Diagnostics: the three unweighted terms ``invariance``, ``variance`` (0 once every unit's
std is >= 1) and ``covariance``.
"""

import jax
import ml_collections

from sslx.losses.decorrelation import vicreg_loss, vicreg_terms
from sslx.methods.base import Context, Method, TWO_VIEWS, register, two_views
from sslx.methods.checks import check, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    sim_coeff=25.0,  # lambda, the invariance weight
    std_coeff=25.0,  # mu, the variance weight
    cov_coeff=1.0,  # nu, the covariance weight
    views="simclr",  # 'simclr': two SimCLR views; 'strong': two RandAugment views
))

_VIEW_PAIRS = TWO_VIEWS


def vicreg_method_loss(ctx: Context):
  o = ctx.options
  first, second = _VIEW_PAIRS[o.views]
  z1, z2 = ctx.outputs[first]["projection"], ctx.outputs[second]["projection"]
  loss = vicreg_loss(z1, z2, sim_coeff=o.sim_coeff, std_coeff=o.std_coeff,
                     cov_coeff=o.cov_coeff)
  terms = jax.lax.stop_gradient(vicreg_terms(z1, z2))
  return loss, terms


def option_errors(options) -> list[str]:
  return check("vicreg", options, {
      "sim_coeff": number(0),
      "std_coeff": number(0),
      "cov_coeff": number(0),
      "views": one_of(*_VIEW_PAIRS),
  })


METHOD = register(Method(
    name="vicreg", loss=vicreg_method_loss, options=OPTIONS, option_errors=option_errors,
    views=two_views, needs_projection=True))
