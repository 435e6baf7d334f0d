"""Deep label propagation (Iscen et al., CVPR 2019) on scikit-learn's digits, CPU scale.

  python -m sslx.main --config=experiments/lp_digits.py --workdir=runs/lp_digits

Supervised CE on the labeled images plus ``deep_lp``: every ``deep_lp.refresh_every``
steps the network embeds all training images, a kNN graph (k = 50, weights sim^3) is
built over them, labels are propagated by conjugate gradient, and the unlabeled images
are trained on their pseudo-labels weighted by certainty and class balance. The first
``deep_lp.start_step`` steps are supervised only, as the paper starts from a network
trained on the labeled examples.

Args: ``labels_per_class=N`` (default 2), ``smoke``.
"""

from sslx.config import base_config, parse_config_arg, positive_int_arg


def set_method(c, smoke: bool = False):
  """Sets deep label propagation, its loss terms and options on a config ``c``: the digits
  recipe's here, ``experiments/notmnist.py``'s with ``method=lp`` (its network, views,
  batch and schedule; the refresh every 200 steps embeds the whole training set)."""
  c.method = "deep_lp"
  c.loss.terms = {"supervised": 1.0, "deep_lp": 1.0}
  c.deep_lp.k = 5 if smoke else 50
  c.deep_lp.refresh_every = 3 if smoke else 200
  c.deep_lp.start_step = 3 if smoke else 200
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "lp_digits.py")
  labels_per_class = positive_int_arg(args, "labels_per_class", 2, source="lp_digits.py")
  c = set_method(base_config(), smoke=bool(args.get("smoke")))
  c.data.name = "digits"
  c.data.num_labels = 10 * labels_per_class
  c.model = dict(name="cnn")
  c.augment.flip = False
  c.batch_size = 32
  c.unlabeled_ratio = 4
  c.num_steps = 2000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.03
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "cosine"
  c.ema_decay = 0.99
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
