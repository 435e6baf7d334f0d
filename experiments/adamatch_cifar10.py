"""AdaMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/adamatch_cifar10.py:labels=40 \\
      --workdir=runs/adamatch_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``adamatch``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          5.05 +- 0.04
  250         5.01 +- 0.11
  4000        4.29 +- 0.06
  ==========  ===============

The paper (Berthelot et al., ICLR 2022, arXiv:2106.04732, semi-supervised learning and
domain adaptation in one method) is not quoted here: no CIFAR-10 40/250/4000-label number
of its own could be checked.

The recipe (USB ``config/classic_cv/adamatch/adamatch_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, 7 unlabeled
images per labeled one, labeled + weak + strong in one forward pass, SGD (momentum 0.9,
Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation
(all as ``fixmatch_cifar10.py``, which this file extends); AdaMatch: relative threshold
tau (p_cutoff) 0.95, distribution-alignment EMA decay (ema_p) 0.999, hard pseudo-labels
(T 0.5 unused), lambda_u 1. Differences: those of ``fixmatch_cifar10.py``
(augmentations, split); see ``sslx/methods/adamatch.py`` for where USB's semi-supervised
AdaMatch departs from the paper's.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (5.05, 0.04), 250: (5.01, 0.11), 4000: (4.29, 0.06)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "adamatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "adamatch"
  c.loss.terms = {"supervised": 1.0, "adamatch": 1.0}  # lambda_u = 1
  c.adamatch.threshold = 0.95
  c.adamatch.ema_p = 0.999
  return c
