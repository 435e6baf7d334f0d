"""NNCLR on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/nnclr_digits.py --workdir=runs/nnclr_digits

The encoder learns from all training images without labels: each SimCLR view's
projection is replaced by its nearest neighbour in a queue of earlier projections and
contrasted (InfoNCE, T = 0.1) with a predictor's output for the other view. As in
``simclr_digits.py`` and ``moco_digits.py`` (same views, optimizer and steps, so the rows
compare), the classifier is an online linear probe on stop_gradient(features), and at the
end a linear probe fit to convergence and a weighted kNN on the labeled subset only, plus
the same probe on raw pixels. The queue holds 1024 projections (4 steps of 256 images,
~70% of the 1437-image pool; the paper's 98304 is ~8% of ImageNet).

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "nnclr_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "nnclr"
  c.loss.terms = {"nnclr": 1.0, "supervised": 1.0}
  c.nnclr.predictor_hidden_dim = 32 if args.get("smoke") else 256
  c.nnclr.queue_size = 32 if args.get("smoke") else 1024
  return c
