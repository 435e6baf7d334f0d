"""Mean Teacher on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/mean_teacher_digits.py --workdir=runs/mean_teacher_digits
  python -m sslx.main --config=experiments/mean_teacher_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``meanteacher``: lambda_u 50, the weight ramped up over the first 40% of
training, teacher EMA 0.999, two weak views) on the FixMatch digits setup, which this
file loads and changes only in its loss (small CNN, SGD + Nesterov, the FixMatch cosine,
3,000 steps, batch 32 + 7 x 32 unlabeled), so the two rows compare.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def get_config(arg=None):
  parse_config_arg(arg, ("labels_per_class", "smoke"), "mean_teacher_digits.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "mean_teacher"
  c.loss.terms = {"supervised": 1.0, "mean_teacher": 50.0}
  c.mean_teacher.teacher_decay = 0.999
  c.mean_teacher.warmup = 0.4
  return c
