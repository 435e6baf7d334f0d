"""FixMatch (RandAugment) on SVHN: the paper's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/fixmatch_svhn.py:labels=250 \\
      --workdir=runs/fixmatch_svhn_250_seed0

Args (after the colon, comma-separated): ``labels=40|250|1000`` (default 250; any
multiple of 10 works, the paper reports these three), ``split_seed=N`` (which labeled
subset; the paper averages 5), ``smoke`` (a tiny CNN on a few steps, for tests).

Should reproduce FixMatch (RA) error rates, Table 2 of Sohn et al., "FixMatch:
Simplifying Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020
(arXiv:2001.07685), mean +- std over 5 labeled splits:

  ==========  ===============  ==============
  labels      error (%)        accuracy (%)
  ==========  ===============  ==============
  40           3.96 +- 2.17    96.04
  250          2.48 +- 0.38    97.52
  1000         2.28 +- 0.11    97.72
  ==========  ===============  ==============

The recipe is ``fixmatch_cifar10.py``'s (WRN-28-2, 2^20 steps, B = 64, mu = 7,
threshold 0.95, lambda_u = 1, SGD + Nesterov 0.9, lr 0.03 with the FixMatch cosine,
weight decay 5e-4, EMA 0.999) without horizontal flips, which would turn digits into
other symbols (paper App. B.1: weak = translation only on SVHN; the strong view drops
the flip too). The unlabeled pool is the 73,257-image ``train`` split as in Table 2;
``--config.data.extra_unlabeled=True`` adds the 531,131 ``extra`` images.
"""

from sslx.config import base_config, parse_config_arg

_ARGS = ("labels", "split_seed", "smoke")
PAPER_ERROR_RATES = {40: (3.96, 2.17), 250: (2.48, 0.38), 1000: (2.28, 0.11)}


def get_config(arg=None):
  args = parse_config_arg(arg)
  unknown = sorted(set(args) - set(_ARGS))
  if unknown:
    raise ValueError(f"fixmatch_svhn.py: unknown arg(s) {unknown}; known: {list(_ARGS)}")
  labels = args.get("labels", 250)
  if isinstance(labels, bool) or not isinstance(labels, int) or labels <= 0:
    raise ValueError(f"fixmatch_svhn.py: labels must be a positive int (40, 250 or 1000 in "
                     f"the paper), got {labels!r}")

  c = base_config()
  c.method = "fixmatch"
  c.data.name = "svhn_cropped"
  c.data.num_labels = labels
  c.data.split_seed = args.get("split_seed", 0)
  c.data.unlabeled_pool = "all"
  c.data.extra_unlabeled = False
  c.model = dict(name="wrn28_2")
  c.loss.terms = {"supervised": 1.0, "fixmatch": 1.0}  # lambda_u = 1
  c.fixmatch.threshold = 0.95
  c.augment.flip = False  # digits are not mirror-symmetric
  c.augment.translate = 0.125
  c.augment.num_ops = 2
  c.augment.cutout = 0.5
  c.batch_size = 64
  c.unlabeled_ratio = 7
  c.num_steps = 2**20
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.03
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "fixmatch"
  c.optimizer.warmup_steps = 0
  c.ema_decay = 0.999
  c.log_every = 1024
  c.eval_every = 2**14
  c.checkpoint_every = 2**14
  c.eval_batch_size = 1024  # 26,032 test images: the last batch is padded and masked
  if args.get("smoke"):
    c.data.num_labels = 20  # 2 per class: tfds's mock data has >= 3 per class
    c.model = dict(name="cnn", width=8)
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 32
  return c
