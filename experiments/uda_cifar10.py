"""UDA on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/uda_cifar10.py:labels=40 \\
      --workdir=runs/uda_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``uda``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40           8.01 +- 1.34
  250          5.12 +- 0.15
  4000         4.32 +- 0.07
  ==========  ===============

The paper's own numbers (Xie et al., NeurIPS 2020, arXiv:1904.12848): 4.32 +- 0.08 at
4,000 labels with WRN-28-2 (its Table 3) and 5.43 at 250 labels (its abstract); no
40-label run. FixMatch's reimplementation (Sohn et al. 2020, Table 2): 29.05 +- 5.93,
8.82 +- 1.08, 4.88 +- 0.18 at 40, 250, 4000 labels.

The recipe (USB ``config/classic_cv/uda/uda_cifar10_{40,250,4000}_0.yaml``, identical but
for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, 7 unlabeled images per
labeled one, labeled + weak + strong in one forward pass, SGD (momentum 0.9, Nesterov)
lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation (all as
``fixmatch_cifar10.py``, which this file extends); UDA: T 0.4, threshold (p_cutoff) 0.8,
TSA off, lambda_u 1. UDA owns its labeled term (TSA), so ``loss.terms`` is
``{'uda': 1.0}`` alone. Differences: those of ``fixmatch_cifar10.py`` (augmentations,
split); sslx's UDA sharpens the targets by T as the authors' code does, where USB's
snapshot leaves them unsharpened (see ``sslx/methods/uda.py``).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (8.01, 1.34), 250: (5.12, 0.15), 4000: (4.32, 0.07)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "uda_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "uda"
  c.loss.terms = {"uda": 1.0}
  c.uda.temperature = 0.4
  c.uda.threshold = 0.8
  c.uda.tsa = "none"
  c.uda.unsup_weight = 1.0
  return c
