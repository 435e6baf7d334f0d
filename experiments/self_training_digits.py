"""Self-training / Noisy Student on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/self_training_digits.py --workdir=runs/self_training_digits
  python -m sslx.main --config=experiments/self_training_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
Four rounds of 750 steps: round 0 trains the first teacher on the labels alone, each
later round's student (noised by RandAugment) learns from the labels and the soft
pseudo-labels (T = 1) of the previous round's final student, which labels each clean
pool image once per round (see the ``self_training`` docstring: continued training, no
re-initialisation).
Evaluated at every round's end (``eval_every`` = the round length) for the test accuracy
per round; ``self_training/pool_pseudo_label_accuracy`` at a round's last log step is the
round's pseudo-label accuracy. On the FixMatch digits setup, which this file loads and
changes only in its loss and evaluation period (small CNN, SGD + Nesterov, the FixMatch
cosine, 3,000 steps, batch 32 + 7 x 32 unlabeled), so the rows compare.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=self_training``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  c.method = "self_training"
  c.loss.terms = {"supervised": 1.0, "self_training": 1.0}
  c.self_training.num_rounds = 4
  c.self_training.soft_targets = True
  c.self_training.temperature = 1.0
  c.self_training.threshold = 0.0
  c.self_training.unsup_weight = 1.0
  c.self_training.teacher_view = "none"  # the teacher labels clean images
  if not smoke:
    c.eval_every = c.num_steps // c.self_training.num_rounds  # one evaluation per round
    c.checkpoint_every = c.eval_every
  else:
    c.self_training.num_rounds = 3  # 6 steps: rounds of 2, the teacher swapped twice
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "self_training_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
