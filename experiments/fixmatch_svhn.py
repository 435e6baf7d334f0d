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

import os

from sslx.config import load_config_file, parse_config_arg, positive_int_arg

# The FixMatch recipe (model, augmentation, optimizer, schedule, EMA, smoke sizes) is
# fixmatch_cifar10.py's; this file changes only what the paper changes for SVHN.
_CIFAR10 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
_ARGS = ("labels", "split_seed", "smoke")
PAPER_ERROR_RATES = {40: (3.96, 2.17), 250: (2.48, 0.38), 1000: (2.28, 0.11)}


def get_config(arg=None):
  args = parse_config_arg(arg, _ARGS, "fixmatch_svhn.py")
  labels = positive_int_arg(args, "labels", 250, source="fixmatch_svhn.py",
                            hint=" (40, 250 or 1000 in the paper)")
  smoke = args.get("smoke", False)
  c = load_config_file(_CIFAR10, f"labels={labels},split_seed={args.get('split_seed', 0)}"
                                 + (",smoke" if smoke else ""))
  c.data.name = "svhn_cropped"
  c.data.extra_unlabeled = False
  c.augment.flip = False  # digits are not mirror-symmetric
  # eval_batch_size 1024: 26,032 test images, the last batch is padded and masked
  return c
