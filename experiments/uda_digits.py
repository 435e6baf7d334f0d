"""UDA on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/uda_digits.py --workdir=runs/uda_digits
  python -m sslx.main --config=experiments/uda_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's options (``uda``: T 0.4, threshold 0.8, TSA off, lambda_u 1, 7 x 64 unlabeled)
on the FixMatch digits setup, which this file loads and changes only in its loss (small
CNN, weak = 1-pixel shifts, strong = RandAugment + cutout, labeled + weak + strong in
one pass, SGD + Nesterov, the FixMatch cosine, EMA evaluation, 3,000 steps, batch 32 +
7 x 32 unlabeled), so the rows compare. UDA owns its labeled term (TSA), so
``loss.terms`` is ``{'uda': 1.0}`` alone.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=uda``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "uda"
  c.loss.terms = {"uda": 1.0}
  c.uda.temperature = 0.4
  c.uda.threshold = 0.8
  c.uda.tsa = "none"
  c.uda.unsup_weight = 1.0
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "uda_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
