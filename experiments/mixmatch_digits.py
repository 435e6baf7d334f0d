"""MixMatch on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/mixmatch_digits.py --workdir=runs/mixmatch_digits
  python -m sslx.main --config=experiments/mixmatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``mixmatch``: K = 2 weak views, T 0.5, MixUp alpha 0.5, lambda_u 100
ramped up over the first 40% of training) on the FixMatch digits setup, which this file
loads and changes only in its loss (small CNN, SGD + Nesterov, the FixMatch cosine, EMA
evaluation, 3,000 steps, batch 32 + 7 x 32 unlabeled; USB's classic setting uses
1 x 64 unlabeled), so the rows compare. MixMatch owns its labeled term (mixed labels),
so ``loss.terms`` is ``{'mixmatch': 1.0}`` alone.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=mixmatch``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "mixmatch"
  c.loss.terms = {"mixmatch": 1.0}
  c.mixmatch.num_augmentations = 2
  c.mixmatch.temperature = 0.5
  c.mixmatch.alpha = 0.5
  c.mixmatch.unsup_weight = 100.0
  c.mixmatch.warmup = 0.4
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "mixmatch_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
