"""SimSiam on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/simsiam_digits.py --workdir=runs/simsiam_digits

The encoder learns from all training images without labels: a predictor maps one SimCLR
view's projection onto the other view's projection under stop-gradient (no negatives, no
momentum network). As in ``simclr_digits.py`` and ``byol_digits.py`` (same views,
optimizer and steps, so the rows compare), the classifier is an online linear probe on
stop_gradient(features), and at the end a linear probe fit to convergence and a weighted
kNN on the labeled subset only, plus the same probe on raw pixels. The predictor's
bottleneck is a quarter of the projection size, as the official 2048 -> 512 -> 2048.
(solo-learn's CIFAR recipe uses SGD at lr 0.5 with weight decay 1e-5 instead of LARS.)

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "simsiam_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "simsiam"
  c.loss.terms = {"simsiam": 1.0, "supervised": 1.0}
  c.simsiam.predictor_hidden_dim = 4 if args.get("smoke") else 16
  return c
