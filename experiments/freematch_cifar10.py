"""FreeMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/freematch_cifar10.py:labels=40 \\
      --workdir=runs/freematch_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``freematch``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          4.97 +- 0.09
  250         4.85 +- 0.10
  4000        4.14 +- 0.19
  ==========  ===============

The paper (Wang et al., ICLR 2023, arXiv:2205.07246) reports its own CIFAR-10 table from
TorchSSL runs (its abstract's footnote), not USB's; that table is not quoted here because
no copy of it could be checked.

The recipe (USB ``config/classic_cv/freematch/freematch_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, 7 unlabeled
images per labeled one, labeled + weak + strong in one forward pass, SGD (momentum 0.9,
Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation
(all as ``fixmatch_cifar10.py``, which this file extends); FreeMatch: EMA decay (ema_p)
0.999, the mean confidence (use_quantile off), no threshold clipping (USB's argument
default), hard pseudo-labels (T 0.5 unused), lambda_u 1 (USB's default), and a fairness
weight (ent_loss_ratio) of 0.001: the CIFAR-10 yaml's, ten times below USB's argument
default and sslx's option default (0.01). Differences: those of ``fixmatch_cifar10.py``
(augmentations, split); the EMAs follow USB's hook (see ``sslx/methods/freematch.py``).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (4.97, 0.09), 250: (4.85, 0.10), 4000: (4.14, 0.19)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "freematch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "freematch"
  c.loss.terms = {"supervised": 1.0, "freematch": 1.0}  # lambda_u = 1
  c.freematch.ema_p = 0.999
  c.freematch.fairness_weight = 0.001  # USB ent_loss_ratio in freematch_cifar10_*_0.yaml
  c.freematch.use_quantile = False
  c.freematch.clip_threshold = False
  c.freematch.hard_label = True
  c.freematch.temperature = 0.5
  return c
