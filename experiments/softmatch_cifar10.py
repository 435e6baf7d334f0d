"""SoftMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/softmatch_cifar10.py:labels=40 \\
      --workdir=runs/softmatch_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``softmatch``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          5.06 +- 0.02
  250         4.84 +- 0.10
  4000        4.27 +- 0.12
  ==========  ===============

The paper (Chen et al., ICLR 2023, arXiv:2301.10921) reports its own CIFAR-10 table; it is
not quoted here because no copy of it could be checked.

The recipe (USB ``config/classic_cv/softmatch/softmatch_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, 7 unlabeled
images per labeled one, labeled + weak + strong in one forward pass, SGD (momentum 0.9,
Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation
(all as ``fixmatch_cifar10.py``, which this file extends); SoftMatch: EMA decay (ema_p)
0.999, n_sigma 2, uniform alignment (dist_align and dist_uniform on, per_class off), hard
pseudo-labels (T 0.5 unused), lambda_u 1. Differences: those of ``fixmatch_cifar10.py``
(augmentations, split); see ``sslx/methods/softmatch.py`` for how it follows USB's code.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (5.06, 0.02), 250: (4.84, 0.10), 4000: (4.27, 0.12)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "softmatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "softmatch"
  c.loss.terms = {"supervised": 1.0, "softmatch": 1.0}  # lambda_u = 1
  c.softmatch.ema_p = 0.999
  c.softmatch.n_sigma = 2.0
  c.softmatch.dist_uniform = True
  c.softmatch.hard_label = True
  c.softmatch.temperature = 0.5
  return c
