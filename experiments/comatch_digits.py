"""CoMatch on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/comatch_digits.py --workdir=runs/comatch_digits
  python -m sslx.main --config=experiments/comatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``comatch``: tau 0.95, graph threshold 0.8, T 0.2, alpha 0.9, lambda_c 1,
64-d EPASS embedding, a memory of 5 steps of weak unlabeled + labeled embeddings, a
distribution-alignment queue of 32, lambda_u 1) on the FixMatch digits setup (small CNN,
labeled + weak + two strong views in one forward pass, SGD + Nesterov, the FixMatch cosine,
3,000 steps, batch 32 + 7 x 32 unlabeled, EMA evaluation), so that its row compares with
FixMatch's. USB's first-epoch warm-up (1,024 of 1,048,576 steps) is kept as the same share
of the run: 3 steps.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")
_QUEUE_BATCH = 5  # steps of embeddings in the memory (USB queue_batch)


def set_method(c, smoke: bool = False):
  """Sets this method, its loss terms and options on a FixMatch-style config ``c``: the
  digits recipe's here, ``experiments/notmnist.py``'s with ``method=comatch``. Values
  derived from the batch, the steps or the model are computed from ``c``."""
  c.method = "comatch"
  c.loss.terms = {"comatch": 1.0, "supervised": 1.0}
  c.comatch.queue_size = _QUEUE_BATCH * (c.unlabeled_ratio + 1) * c.batch_size
  c.comatch.warmup_steps = max(1, round(c.num_steps * 1024 / 1048576))
  if smoke:
    c.comatch.proj_size = 16
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "comatch_digits.py")
  return set_method(load_config_file(_FIXMATCH, arg), smoke=bool(args.get("smoke")))
