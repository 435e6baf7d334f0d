"""Rotation prediction (RotNet) on scikit-learn's digits, judged by a linear probe and kNN.

  python -m sslx.main --config=experiments/rotation_digits.py --workdir=runs/rotation_digits

The encoder learns from all training images without labels by predicting which of the
four rotations each image shows (all four per image, as RotNet). The evaluation is
``simclr_digits.py``'s, which this file loads (online probe on stop_gradient(features),
final linear probe + kNN on the labeled subset, raw-pixel probe, 2,000 steps); it
changes the loss, drops the projection head, and uses RotNet's optimizer (SGD, momentum
0.9, weight decay 5e-4; here on a cosine) with weak views (1-pixel shifts) of 128
images, i.e. 512 rotated images per step.

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "rotation_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "rotation"
  c.model = dict(name="cnn", stop_gradient_classifier=True, **(
      {"width": 8} if args.get("smoke") else {}))
  c.loss.terms = {"rotation": 1.0, "supervised": 1.0}
  c.rotation.head_hidden_dim = 16 if args.get("smoke") else 128
  c.augment.translate = 0.125
  if not args.get("smoke"):
    c.unlabeled_ratio = 8
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.weight_decay = 5e-4
  c.optimizer.nesterov = True
  return c
