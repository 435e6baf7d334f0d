"""FixMatch (RandAugment) on CIFAR-100: the paper's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/fixmatch_cifar100.py:labels=2500 \\
      --workdir=runs/fixmatch_cifar100_2500_seed0

Args (after the colon, comma-separated): ``labels=400|2500|10000`` (default 2500; any
multiple of 100 works, the paper reports these three), ``split_seed=N`` (which labeled
subset; the paper averages 5), ``smoke`` (a tiny CNN on a few steps, for tests).

Should reproduce FixMatch (RA) error rates, Table 2 of Sohn et al., "FixMatch:
Simplifying Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020
(arXiv:2001.07685), mean +- std over 5 labeled splits:

  ==========  ===============  ==============
  labels      error (%)        accuracy (%)
  ==========  ===============  ==============
  400         48.85 +- 1.75    51.15
  2500        28.29 +- 0.11    71.71
  10000       22.60 +- 0.12    77.40
  ==========  ===============  ==============

The recipe is ``fixmatch_cifar10.py``'s (2^20 steps, B = 64, mu = 7, threshold 0.95,
lambda_u = 1, SGD + Nesterov 0.9, lr 0.03 with the FixMatch cosine, EMA 0.999, weak =
flip + 12.5% translation, strong = RandAugment + Cutout) with the two changes the
paper makes for CIFAR-100: a WRN-28-8 (23.4M parameters) and weight decay 1e-3.
The paper's Table 2 variant with distribution alignment (400 labels: 40.14% error) is
``--config.fixmatch.distribution_alignment=True``.

Cost: WRN-28-8 is ~16x the FLOPs of WRN-28-2; plan on several GPUs or a TPU slice
(the batch is split over all devices; BatchNorm statistics stay global).
"""

from sslx.config import base_config, parse_config_arg

_ARGS = ("labels", "split_seed", "smoke")
PAPER_ERROR_RATES = {400: (48.85, 1.75), 2500: (28.29, 0.11), 10000: (22.60, 0.12)}


def get_config(arg=None):
  args = parse_config_arg(arg)
  unknown = sorted(set(args) - set(_ARGS))
  if unknown:
    raise ValueError(f"fixmatch_cifar100.py: unknown arg(s) {unknown}; known: {list(_ARGS)}")
  labels = args.get("labels", 2500)
  if isinstance(labels, bool) or not isinstance(labels, int) or labels <= 0:
    raise ValueError(f"fixmatch_cifar100.py: labels must be a positive int (400, 2500 or "
                     f"10000 in the paper), got {labels!r}")

  c = base_config()
  c.method = "fixmatch"
  c.data.name = "cifar100"
  c.data.num_labels = labels
  c.data.split_seed = args.get("split_seed", 0)
  c.data.unlabeled_pool = "all"
  c.model = dict(name="wrn28_8")
  c.loss.terms = {"supervised": 1.0, "fixmatch": 1.0}  # lambda_u = 1
  c.fixmatch.threshold = 0.95
  c.augment.flip = True
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
  c.optimizer.weight_decay = 1e-3  # the paper's one CIFAR-100 change besides the width
  c.optimizer.schedule = "fixmatch"
  c.optimizer.warmup_steps = 0
  c.ema_decay = 0.999
  c.log_every = 1024
  c.eval_every = 2**14
  c.checkpoint_every = 2**14
  c.eval_batch_size = 1024
  if args.get("smoke"):
    # tfds's 64 mock examples do not cover all 100 classes: label them all.
    c.data.num_labels = -1
    c.model = dict(name="cnn", width=8)
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 32
  return c
