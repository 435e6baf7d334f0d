"""Deep co-training on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/co_training_digits.py --workdir=runs/co_training_digits
  python -m sslx.main --config=experiments/co_training_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
Two copies of the model (the second is the method's own, ``co_training.model`` =
``config.model`` as JSON), each network's confident (>= 0.95) hard labels on its weak view
supervising the other on its own weak view, both trained on the labels, the unlabeled
weight ramped up as Deep Co-Training's exp(-5 (1 - t)^2) over the first 2/15 of
training; Qiao's JS term is off (its weight 10 needs the adversarial view-difference
term, not built). On the FixMatch digits setup, which this file loads and changes only
in its loss (small CNN, SGD + Nesterov, the FixMatch cosine, EMA evaluation of network
1, 3,000 steps, batch 32 + 7 x 32 unlabeled), so the rows compare. The method owns both
labeled terms, so ``loss.terms`` is ``{'co_training': 1.0}`` alone.
"""

import json
import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=co_training``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  del smoke  # same options at smoke size
  c.method = "co_training"
  c.loss.terms = {"co_training": 1.0}
  c.co_training.threshold = 0.95
  c.co_training.pl_weight = 1.0
  c.co_training.js_weight = 0.0
  c.co_training.warmup = 2 / 15
  c.co_training.model = json.dumps(c.model.to_dict())  # network 2: network 1's architecture
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "co_training_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
