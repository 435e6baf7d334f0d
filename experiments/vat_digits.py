"""VAT on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/vat_digits.py --workdir=runs/vat_digits
  python -m sslx.main --config=experiments/vat_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``vat``: lambda_u 1, xi 1e-6, one power iteration, entropy weight 0.06,
the KL weight ramped up over the first 40% of training, one weak view) on the FixMatch
digits setup (small CNN, SGD + Nesterov, the FixMatch cosine, EMA evaluation, 3,000
steps, batch 32 + 7 x 32 unlabeled). eps: USB's 6 is for 32x32x3 inputs (3,072 values,
about 0.11 per value); the same per-value size on 8x8x1 digits (64 values) is
0.11 * 8, about 0.9, so eps = 1 here (a scaling, not a tuned value).
"""

import os

from sslx.config import base_config, parse_config_arg, positive_int_arg

_SOURCE = os.path.basename(__file__)


def get_config(arg=None):
  args = parse_config_arg(arg, known=("labels_per_class", "smoke"), source=_SOURCE)
  c = base_config()
  c.method = "vat"
  c.data.name = "digits"
  c.data.num_labels = 10 * positive_int_arg(args, "labels_per_class", 2, source=_SOURCE)
  c.data.unlabeled_pool = "all"
  c.model = dict(name="cnn")
  c.loss.terms = {"supervised": 1.0, "vat": 1.0}
  c.vat.eps = 1.0
  c.vat.xi = 1e-6
  c.vat.entropy_weight = 0.06
  c.vat.warmup = 0.4
  c.augment.flip = False
  c.augment.translate = 0.125
  c.batch_size = 32
  c.unlabeled_ratio = 7
  c.num_steps = 3000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.03
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "fixmatch"
  c.ema_decay = 0.999
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval_batch_size = 360
  if args.get("smoke"):
    c.num_steps = 6
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.log_every = c.eval_every = c.checkpoint_every = 3
    c.eval_batch_size = 128
    c.model = dict(name="cnn", width=8)
  return c
