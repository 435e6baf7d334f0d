"""Rotation prediction (RotNet) on scikit-learn's digits, judged by a linear probe and kNN.

  python -m sslx.main --config=experiments/rotation_digits.py --workdir=runs/rotation_digits

The encoder learns from all training images without labels by predicting which of the
four rotations each image shows (all four per image, as RotNet). As in
``simclr_digits.py`` and ``byol_digits.py``, the classifier is an online linear probe on
stop_gradient(features), and at the end a linear probe fit to convergence and a weighted
kNN on the labeled subset only, plus the same probe on raw pixels. RotNet's optimizer:
SGD with momentum 0.9 and weight decay 5e-4 (here on a cosine, 2,000 steps).

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import base_config, parse_config_arg, positive_int_arg

_SOURCE = os.path.basename(__file__)


def get_config(arg=None):
  args = parse_config_arg(arg, known=("labels_per_class", "smoke"), source=_SOURCE)
  c = base_config()
  c.method = "rotation"
  c.data.name = "digits"
  c.data.num_labels = 10 * positive_int_arg(args, "labels_per_class", 2, source=_SOURCE)
  c.model = dict(name="cnn", stop_gradient_classifier=True)
  c.loss.terms = {"rotation": 1.0, "supervised": 1.0}
  c.rotation.head_hidden_dim = 128
  c.augment.flip = False
  c.augment.translate = 0.125
  c.batch_size = 16  # labeled batch for the online probe
  c.unlabeled_ratio = 8  # 128 images -> 512 rotated images per step
  c.num_steps = 2000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 100
  c.ema_decay = 0.0
  c.feature_eval.linear_probe = True
  c.feature_eval.knn = True
  c.feature_eval.pixel_baseline = True
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval_batch_size = 360
  if args.get("smoke"):
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 128
    c.model = dict(name="cnn", width=8, stop_gradient_classifier=True)
    c.rotation.head_hidden_dim = 16
    c.optimizer.warmup_steps = 1
  return c
