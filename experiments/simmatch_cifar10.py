"""SimMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/simmatch_cifar10.py:labels=40 \\
      --workdir=runs/simmatch_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, best
error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          5.18 +- 0.15
  250         4.99 +- 0.12
  4000        4.51 +- 0.08
  ==========  ===============

The recipe (USB ``config/classic_cv/simmatch/simmatch_cifar10_*_0.yaml``): WRN-28-2,
2^20 steps, labeled batch 64, uratio 7, SGD (momentum 0.9, Nesterov) lr 0.03 with the
FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation (all as
``fixmatch_cifar10.py``, which this file extends); SimMatch: tau 0.95, T 0.1, alpha 0.9,
lambda_in 1, lambda_u 1, 128-d EPASS embedding, da_len 32, K = the labeled set, and, for
CIFAR-10, the bank mixed with the online labeled embeddings (USB ``ema_bank`` 0.7, no EMA
teacher for the bank), no in-loss and no aggregation in USB's first epoch (1,024 steps).
Differences: those of ``fixmatch_cifar10.py`` (augmentations, split); the embedding head
starts from flax's initialisation, not PyTorch's.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (5.18, 0.15), 250: (4.99, 0.12), 4000: (4.51, 0.08)}  # USB's table


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels", "split_seed", "smoke"), "simmatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "simmatch"
  c.loss.terms = {"supervised": 1.0, "simmatch": 1.0}
  c.simmatch.bank_momentum = 0.7
  c.simmatch.warmup_steps = 1024
  if args.get("smoke"):
    c.simmatch.proj_size = 16
    c.simmatch.warmup_steps = 1
  return c
