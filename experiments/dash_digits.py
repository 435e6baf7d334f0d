"""Dash on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/dash_digits.py --workdir=runs/dash_digits
  python -m sslx.main --config=experiments/dash_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``dash``: C 1.0001, gamma 1.27, rho_min 0.05, T 0.5, lambda_u 1) on the
FixMatch digits setup (small CNN, labeled + weak + strong in one forward pass, SGD +
Nesterov, the FixMatch cosine, 3,000 steps, batch 32 + 7 x 32 unlabeled, EMA evaluation),
so that its row compares with FixMatch's. Scaled to 3,000 steps: 256 warm-up steps (USB
2,048 of 1M) and rho shrinks every 256 steps (USB every 10,240), about ten times in all.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "dash_digits.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "dash"
  c.loss.terms = {"dash": 1.0, "supervised": 1.0}
  c.dash.update_every = 2 if args.get("smoke") else 256
  c.dash.warmup_steps = 2 if args.get("smoke") else 256
  return c
