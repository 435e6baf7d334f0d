"""MixMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/mixmatch_cifar10.py:labels=250 \\
      --workdir=runs/mixmatch_cifar10_250_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``mixmatch``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          70.67 +- 1.25
  250         37.28 +- 0.61
  4000         7.38 +- 0.06
  ==========  ===============

The paper's own numbers (Berthelot et al., NeurIPS 2019, arXiv:1905.02249, WRN-28-2):
11.08 +- 0.87 at 250 labels and 6.24 +- 0.06 at 4,000 (the latter
also in Table 3 of the UDA paper); no 40-label run. USB's 250-label row is far above the
paper's; this recipe follows USB's.

The recipe (USB ``config/classic_cv/mixmatch/mixmatch_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, SGD (momentum
0.9, Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for
evaluation (all as ``fixmatch_cifar10.py``, which this file extends); MixMatch: ONE
unlabeled image per labeled one (uratio 1), K = 2 weak views of it, T 0.5, MixUp alpha
0.5, lambda_u 100 ramped up linearly over the first 40% of training (the yaml's
unsup_warm_up 0.4; USB's argument default is 1/64). MixMatch owns its labeled term (mixed
labels), so ``loss.terms`` is ``{'mixmatch': 1.0}`` alone. Differences: those of
``fixmatch_cifar10.py`` (augmentations, split) and the BatchNorm handling described in
``sslx/methods/mixmatch.py`` (USB updates the running statistics from the first chunk of
the mixed batch only, sslx from the shared pass and the whole mixed batch).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (70.67, 1.25), 250: (37.28, 0.61), 4000: (7.38, 0.06)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "mixmatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "mixmatch"
  c.unlabeled_ratio = 1  # USB uratio
  c.loss.terms = {"mixmatch": 1.0}
  c.mixmatch.num_augmentations = 2
  c.mixmatch.temperature = 0.5
  c.mixmatch.alpha = 0.5
  c.mixmatch.unsup_weight = 100.0
  c.mixmatch.warmup = 0.4
  return c
