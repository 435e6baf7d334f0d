"""MixMatch on scikit-learn's digits (8x8 grayscale), CPU scale.

  python -m sslx.main --config=experiments/mixmatch_digits.py --workdir=runs/mixmatch_digits
  python -m sslx.main --config=experiments/mixmatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``; others are refused.
USB's recipe (``mixmatch``: K = 2 weak views, T 0.5, MixUp alpha 0.5, lambda_u 100
ramped up over the first 40% of training) on the FixMatch digits setup (small CNN, SGD +
Nesterov, the FixMatch cosine, EMA evaluation, 3,000 steps, batch 32 + 7 x 32 unlabeled;
USB's classic setting uses 1 x 64 unlabeled). MixMatch owns its labeled term (mixed
labels), so ``loss.terms`` is ``{'mixmatch': 1.0}`` alone.
"""

import os

from sslx.config import base_config, parse_config_arg, positive_int_arg

_SOURCE = os.path.basename(__file__)


def get_config(arg=None):
  args = parse_config_arg(arg, known=("labels_per_class", "smoke"), source=_SOURCE)
  c = base_config()
  c.method = "mixmatch"
  c.data.name = "digits"
  c.data.num_labels = 10 * positive_int_arg(args, "labels_per_class", 2, source=_SOURCE)
  c.data.unlabeled_pool = "all"
  c.model = dict(name="cnn")
  c.loss.terms = {"mixmatch": 1.0}
  c.mixmatch.num_augmentations = 2
  c.mixmatch.temperature = 0.5
  c.mixmatch.alpha = 0.5
  c.mixmatch.unsup_weight = 100.0
  c.mixmatch.warmup = 0.4
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
