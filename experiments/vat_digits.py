"""VAT on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/vat_digits.py --workdir=runs/vat_digits
  python -m sslx.main --config=experiments/vat_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``vat``: lambda_u 1, xi 1e-6, one power iteration, entropy weight 0.06,
the KL weight ramped up over the first 40% of training, one weak view) on the FixMatch
digits setup, which this file loads and changes only in its loss (small CNN, SGD +
Nesterov, the FixMatch cosine, EMA evaluation, 3,000 steps, batch 32 + 7 x 32
unlabeled), so the rows compare. eps: USB's 6 is for 32x32x3 inputs (3,072 values, about
0.11 per value); the same per-value size on 8x8x1 digits (64 values) is 0.11 * 8, about
0.9, so eps = 1 here (a scaling, not a tuned value).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=vat``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "vat"
  c.loss.terms = {"supervised": 1.0, "vat": 1.0}
  c.vat.eps = 1.0
  c.vat.xi = 1e-6
  c.vat.entropy_weight = 0.06
  c.vat.warmup = 0.4
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "vat_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
