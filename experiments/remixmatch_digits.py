"""ReMixMatch on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/remixmatch_digits.py --workdir=runs/remixmatch_digits
  python -m sslx.main --config=experiments/remixmatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``remixmatch``: K = 2 strong views, T 0.5, MixUp alpha 0.75, lambda_u 1.5,
lambda_kl 0.5, lambda_rot 0.5, the unlabeled weights ramped up over the first 1/64 of
training, distribution alignment to the labeled class prior) on the FixMatch digits
setup, which this file loads and changes only in its loss (small CNN, SGD + Nesterov,
the FixMatch cosine, EMA evaluation, 3,000 steps, batch 32 + 7 x 32 unlabeled), so the
rows compare. RandAugment, not CTAugment. ReMixMatch owns its labeled term (mixed
labels), so ``loss.terms`` is ``{'remixmatch': 1.0}`` alone.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=remixmatch``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "remixmatch"
  c.loss.terms = {"remixmatch": 1.0}
  c.remixmatch.num_strong_views = 2
  c.remixmatch.temperature = 0.5
  c.remixmatch.alpha = 0.75
  c.remixmatch.unsup_weight = 1.5
  c.remixmatch.kl_weight = 0.5
  c.remixmatch.rotation_weight = 0.5
  c.remixmatch.warmup = 1 / 64
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "remixmatch_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
