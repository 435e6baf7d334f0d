"""Pseudo-Label on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/pseudo_label_digits.py --workdir=runs/pseudo_label_digits
  python -m sslx.main --config=experiments/pseudo_label_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``pseudolabel``: lambda_u 1, threshold 0.95, the weight ramped up over the
first 40% of training, one weak view) on the FixMatch digits setup, which this file
loads and changes only in its loss (small CNN, SGD + Nesterov, the FixMatch cosine, EMA
evaluation, 3,000 steps, batch 32 + 7 x 32 unlabeled; USB's classic setting uses
1 x 64 unlabeled), so the rows compare.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=pseudo_label``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "pseudo_label"
  c.loss.terms = {"supervised": 1.0, "pseudo_label": 1.0}
  c.pseudo_label.threshold = 0.95
  c.pseudo_label.warmup = 0.4
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "pseudo_label_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
