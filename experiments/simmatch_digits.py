"""SimMatch on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/simmatch_digits.py --workdir=runs/simmatch_digits
  python -m sslx.main --config=experiments/simmatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``simmatch``: tau 0.95, T 0.1, alpha 0.9, lambda_in 1, 128-d EPASS embedding,
a distribution-alignment queue of 32, a bank of one EMA-teacher embedding per labeled
example, lambda_u 1) on the FixMatch digits setup (small CNN, labeled + weak + strong in one
forward pass, SGD + Nesterov, the FixMatch cosine, 3,000 steps, batch 32 + 7 x 32
unlabeled, EMA evaluation), so that its row compares with FixMatch's. USB's first-epoch
warm-up (1,024 of 1,048,576 steps) is kept as the same share of the run: 3 steps.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=simmatch``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  c.method = "simmatch"
  c.loss.terms = {"simmatch": 1.0, "supervised": 1.0}
  c.simmatch.warmup_steps = max(1, round(c.num_steps * 1024 / 1048576))
  if smoke:
    c.simmatch.proj_size = 16
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "simmatch_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
