"""FixMatch on scikit-learn's digits (8x8 grayscale), CPU scale: the default experiment.

  python -m sslx.main --config=experiments/fixmatch_digits.py --workdir=runs/fixmatch_digits
  python -m sslx.main --config=experiments/fixmatch_digits.py:labels_per_class=5

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``, and the ingredients
the README's ablation rows switch: ``threshold=T``, ``da=0|1`` (distribution alignment),
``graph=W`` (weight of the in-batch graph pseudo-label term, 0 = off).
The recipe follows FixMatch (labeled + weak + strong in one forward pass, threshold
0.95, EMA evaluation, SGD + Nesterov, kernel-only weight decay, the FixMatch cosine),
scaled to 8x8 images: no flips, 1-pixel shifts, a small CNN.
"""

from sslx.config import base_config, number_arg, parse_config_arg, positive_int_arg

_SOURCE = "fixmatch_digits.py"
_ARGS = ("labels_per_class", "smoke", "threshold", "da", "graph")


def set_method(c, smoke: bool = False):
  """Sets plain FixMatch (threshold 0.95, no distribution alignment, no graph term) on a
  FixMatch-style config ``c``: the digits recipe's here, ``experiments/notmnist.py``'s with
  ``method=fixmatch``."""
  del smoke  # same options at smoke size
  c.method = "fixmatch"
  c.loss.terms = {"supervised": 1.0, "fixmatch": 1.0}
  c.fixmatch.threshold = 0.95
  c.fixmatch.distribution_alignment = False
  return c


def get_config(arg=None):
  args = parse_config_arg(arg, _ARGS, _SOURCE)
  labels_per_class = positive_int_arg(args, "labels_per_class", 2, source=_SOURCE)
  threshold = number_arg(args, "threshold", 0.95, source=_SOURCE, low=0, high=1)
  da = number_arg(args, "da", 0, source=_SOURCE, low=0, high=1, integer=True)
  graph = number_arg(args, "graph", 0, source=_SOURCE, low=0)
  c = set_method(base_config())
  c.data.name = "digits"
  c.data.num_labels = 10 * labels_per_class
  c.data.unlabeled_pool = "all"
  c.model = dict(name="cnn")
  if graph:
    c.loss.terms = {"supervised": 1.0, "fixmatch": 1.0, "graph": float(graph)}
  c.fixmatch.threshold = float(threshold)
  c.fixmatch.distribution_alignment = bool(da)
  c.augment.flip = False
  c.augment.translate = 0.125
  c.augment.cutout = 0.25
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
