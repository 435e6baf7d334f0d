"""VICReg on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/vicreg_digits.py --workdir=runs/vicreg_digits

The encoder learns from all training images without labels: two SimCLR views' projections
are pulled together (invariance) while each unit's batch std is held >= 1 (variance) and
the units are decorrelated (covariance); no negatives, predictor or momentum network. As
in ``simclr_digits.py`` and ``byol_digits.py`` (same views, optimizer and steps, so the
rows compare), the classifier is an online linear probe on stop_gradient(features), and
at the end a linear probe fit to convergence and a weighted kNN on the labeled subset
only, plus the same probe on raw pixels. Coefficients are the official 25 / 25 / 1.
(solo-learn's CIFAR recipe: LARS at lr 0.3, weight decay 1e-4, a 2048-unit projector.)

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  parse_config_arg(arg, ("labels_per_class", "smoke"), "vicreg_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "vicreg"
  c.loss.terms = {"supervised": 1.0, "vicreg": 1.0}
  return c
