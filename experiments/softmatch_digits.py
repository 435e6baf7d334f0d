"""SoftMatch on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/softmatch_digits.py --workdir=runs/softmatch_digits
  python -m sslx.main --config=experiments/softmatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``softmatch``: EMA decay 0.999, n_sigma 2, uniform alignment, hard labels,
lambda_u 1) on the FixMatch digits setup (small CNN, labeled + weak + strong in one
forward pass, SGD + Nesterov, the FixMatch cosine, 3,000 steps, batch 32 + 7 x 32
unlabeled, EMA evaluation), so that its row compares with FixMatch's.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=softmatch``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "softmatch"
  c.loss.terms = {"softmatch": 1.0, "supervised": 1.0}
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "softmatch_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
