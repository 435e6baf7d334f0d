"""Dash on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/dash_digits.py --workdir=runs/dash_digits
  python -m sslx.main --config=experiments/dash_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``dash``: C 1.0001, gamma 1.27, rho_min 0.05, T 0.5, lambda_u 1) on the
FixMatch digits setup (small CNN, labeled + weak + strong in one forward pass, SGD +
Nesterov, the FixMatch cosine, 3,000 steps, batch 32 + 7 x 32 unlabeled, EMA evaluation),
so that its row compares with FixMatch's. Scaled to 3,000 steps: 256 warm-up steps (USB
2,048 of 1M) and rho shrinks every 256 steps (USB every 10,240), about ten times in all
(both scale with the run's steps: 128 in notMNIST's 1,500).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=dash``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  c.method = "dash"
  c.loss.terms = {"dash": 1.0, "supervised": 1.0}
  every = 2 if smoke else max(1, round(c.num_steps * 256 / 3000))  # 256 at 3,000 steps
  c.dash.update_every = every
  c.dash.warmup_steps = every
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "dash_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
