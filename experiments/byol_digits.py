"""BYOL on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/byol_digits.py --workdir=runs/byol_digits

The encoder learns from all training images without labels: the online network's
predictor regresses a momentum target's projection of another SimCLR view (no
negatives). Everything else is ``simclr_digits.py``, which this file loads (same views,
projection head, LARS, steps, online probe on stop_gradient(features), final linear
probe + kNN on the labeled subset and the raw-pixel probe), so the rows compare.
solo-learn's CIFAR recipe for the target: momentum 0.99 -> 1.0 on a cosine.

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "byol_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "byol"
  c.loss.terms = {"byol": 1.0, "supervised": 1.0}
  c.byol.base_momentum = 0.99
  c.byol.final_momentum = 1.0
  c.byol.predictor_hidden_dim = 32 if args.get("smoke") else 256
  c.byol.views = "simclr"
  return c
