"""MoCo v3 on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/moco_digits.py --workdir=runs/moco_digits

The encoder learns from all training images without labels: a predictor's output for one
SimCLR view is contrasted (InfoNCE, in-batch negatives, scaled by 2T) with a momentum
encoder's keys of the other view. As in ``simclr_digits.py`` and ``byol_digits.py`` (same
views, optimizer and steps, so the rows compare), the classifier is an online linear
probe on stop_gradient(features), and at the end a linear probe fit to convergence and a
weighted kNN on the labeled subset only, plus the same probe on raw pixels. Momentum 0.99
-> 1 on a cosine as the official recipes; temperature 0.2 as SimCLR's here.

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "moco_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "moco"
  c.loss.terms = {"moco": 1.0, "supervised": 1.0}
  c.moco.predictor_hidden_dim = 32 if args.get("smoke") else 256
  c.moco.temperature = 0.2
  return c
