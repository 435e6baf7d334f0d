"""MoCo v3 on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/moco_digits.py --workdir=runs/moco_digits

The encoder learns from all training images without labels: a predictor's output for one
SimCLR view is contrasted (InfoNCE, in-batch negatives, scaled by 2T) with a momentum
encoder's keys of the other view. As in ``simclr_digits.py`` and ``byol_digits.py`` (same
views, optimizer and steps, so the rows compare), the classifier is an online linear
probe on stop_gradient(features), and at the end a linear probe fit to convergence and a
weighted kNN on the labeled subset only, plus the same probe on raw pixels. Momentum 0.99
-> 1 on a cosine as the official recipes; temperature 0.2 as SimCLR's here.

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import base_config, parse_config_arg, positive_int_arg

_SOURCE = os.path.basename(__file__)


def get_config(arg=None):
  args = parse_config_arg(arg, known=("labels_per_class", "smoke"), source=_SOURCE)
  c = base_config()
  c.method = "moco"
  c.data.name = "digits"
  c.data.num_labels = 10 * positive_int_arg(args, "labels_per_class", 2, source=_SOURCE)
  c.model = dict(name="cnn", projection_dim=64, projection_layers=2,
                 stop_gradient_classifier=True)
  c.loss.terms = {"moco": 1.0, "supervised": 1.0}
  c.moco.temperature = 0.2  # as simclr_digits.py's NT-Xent (the official ResNet default is 1.0)
  c.moco.base_momentum = 0.99
  c.moco.cosine_momentum = True
  c.moco.predictor_hidden_dim = 256
  c.moco.views = "simclr"
  c.augment.flip = False
  c.augment.simclr_strength = 0.5
  c.augment.simclr_crop_scale = (0.5, 1.0)  # 8x8 digits cannot lose 92% of their area
  c.batch_size = 16  # labeled batch for the online probe
  c.unlabeled_ratio = 16  # 256 images -> 512 views per step
  c.num_steps = 2000
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 1.2
  c.optimizer.weight_decay = 1e-6
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
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
    c.model = dict(name="cnn", width=8, projection_dim=16, stop_gradient_classifier=True)
    c.moco.predictor_hidden_dim = 32
    c.optimizer.warmup_steps = 1
  return c
