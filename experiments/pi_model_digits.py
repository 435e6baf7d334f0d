"""The Pi-model on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/pi_model_digits.py --workdir=runs/pi_model_digits
  python -m sslx.main --config=experiments/pi_model_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``pimodel``: lambda_u 10, the weight ramped up over the first 40% of
training, two weak views) on the FixMatch digits setup, which this file loads and
changes only in its loss (small CNN, SGD + Nesterov, the FixMatch cosine, EMA
evaluation, 3,000 steps, batch 32 + 7 x 32 unlabeled; USB's classic setting uses
1 x 64 unlabeled), so the rows compare.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=pi_model``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "pi_model"
  c.loss.terms = {"supervised": 1.0, "pi_model": 10.0}
  c.pi_model.warmup = 0.4
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "pi_model_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
