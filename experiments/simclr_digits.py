"""SimCLR on scikit-learn's digits, CPU scale, judged by a linear probe on few labels.

  python -m sslx.main --config=experiments/simclr_digits.py --workdir=runs/simclr_digits

The encoder learns from all training images without labels (NT-Xent between two SimCLR
views, global negatives). The classifier is an online linear probe on
stop_gradient(features) (the `supervised` term on a stop-gradient classifier), and at
the end a linear probe fit to convergence and a weighted kNN, both on the labeled subset
only, plus the same probe on raw pixels as the bar to beat.

Args: ``labels_per_class=N`` (default 2), ``smoke``.
"""

from sslx.config import base_config, parse_config_arg, positive_int_arg


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "simclr_digits.py")
  labels_per_class = positive_int_arg(args, "labels_per_class", 2, source="simclr_digits.py")
  c = base_config()
  c.method = "simclr"
  c.data.name = "digits"
  c.data.num_labels = 10 * labels_per_class
  c.model = dict(name="cnn", projection_dim=64, projection_layers=2,
                 stop_gradient_classifier=True)
  c.loss.terms = {"nt_xent": 1.0, "supervised": 1.0}
  c.nt_xent.temperature = 0.2
  c.nt_xent.views = "simclr"
  c.augment.flip = False
  c.augment.simclr_strength = 0.5
  c.augment.simclr_crop_scale = (0.5, 1.0)  # 8x8 digits cannot lose 92% of their area
  c.batch_size = 16  # labeled batch for the online probe
  c.unlabeled_ratio = 16  # 256 images -> 512 views per step
  c.num_steps = 2000
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 1.2  # 0.3 * 1024 / 256 for 256 images
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
    c.optimizer.warmup_steps = 1
  return c
