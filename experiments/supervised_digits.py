"""Supervised baseline on scikit-learn's digits (8x8 grayscale, 10 classes, offline).

The bounds the semi-supervised methods are judged against: all labels (upper bound) or
N labels per class (lower bound; only those images are seen).

  python -m sslx.main --config=experiments/supervised_digits.py --workdir=runs/supervised_digits
  python -m sslx.main --config=experiments/supervised_digits.py:labels_per_class=2 \\
      --workdir=runs/supervised_digits_2pc

Args (after the colon, comma-separated): ``labels_per_class=N`` (default: all labels),
``smoke`` (a few steps of a tiny model, for tests).
"""

from sslx.config import base_config, parse_config_arg, positive_int_arg


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "supervised_digits.py")
  c = base_config()
  c.method = "supervised"
  c.data.name = "digits"
  labels_per_class = args.get("labels_per_class", -1)  # -1: every training image labeled
  if labels_per_class != -1:
    labels_per_class = positive_int_arg(args, "labels_per_class", -1, source="supervised_digits.py",
                                        hint=" or -1 (all labeled)")
  c.data.num_labels = -1 if labels_per_class == -1 else 10 * labels_per_class
  c.model = dict(name="cnn")
  c.loss.terms = {"supervised": 1.0}
  c.augment.flip = False  # digits are not mirror-symmetric
  c.augment.translate = 0.125  # 1 pixel on 8x8
  c.batch_size = 64
  c.num_steps = 1500
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 50
  c.ema_decay = 0.99
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval_batch_size = 360  # the digits test split is 360 images: one batch
  if args.get("smoke"):
    c.num_steps = 12
    c.batch_size = 16
    c.log_every = c.eval_every = c.checkpoint_every = 6
    c.eval_batch_size = 128
    c.model = dict(name="cnn", width=8)
  return c
