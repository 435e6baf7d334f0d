"""Dash on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/dash_cifar10.py:labels=250 \\
      --workdir=runs/dash_cifar10_250_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``dash``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          15.01 +- 3.70
  250          5.13 +- 0.26
  4000         4.35 +- 0.09
  ==========  ===============

The paper's own numbers (Xu et al., ICML 2021, its RandAugment variant "Dash (RA)", as
quoted in the README of ConMatch, Kim et al., ECCV 2022): 13.22 +- 3.75, 4.56 +- 0.13,
4.08 +- 0.06 at 40, 250, 4000 labels.

The recipe (USB ``config/classic_cv/dash/dash_cifar10_{40,250,4000}_0.yaml``, identical
but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, 7 unlabeled images per
labeled one, labeled + weak + strong in one forward pass, SGD (momentum 0.9, Nesterov)
lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation (all as
``fixmatch_cifar10.py``, which this file extends); Dash: C 1.0001, gamma 1.27, rho_min
0.05, T 0.5, 2,048 supervised warm-up steps (num_wu_iter), rho shrunk every 10 epochs of
1,024 steps (``semilearn/algorithms/dash/utils.py``: 10 * num_iter_per_epoch = 10,240),
lambda_u 1 (the yaml's p_cutoff 0.95 is not read by Dash's masking). Differences: those
of ``fixmatch_cifar10.py`` (augmentations, split); USB's warm-up is a separate supervised
loop whose rho_hat is the loss on its evaluation set (the test set), sslx's is the first
2,048 steps of the same run with rho_hat estimated from the labeled batches (see
``sslx/methods/dash.py``).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (15.01, 3.70), 250: (5.13, 0.26), 4000: (4.35, 0.09)}  # USB's table


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels", "split_seed", "smoke"), "dash_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "dash"
  c.loss.terms = {"supervised": 1.0, "dash": 1.0}  # lambda_u = 1
  c.dash.c = 1.0001
  c.dash.gamma = 1.27
  c.dash.rho_min = 0.05
  c.dash.temperature = 0.5
  c.dash.warmup_steps = 2048
  c.dash.update_every = 10 * 1024  # 10 USB epochs of 2^20 / 1,024 steps
  if args.get("smoke"):  # the term starts within the 4 steps
    c.dash.warmup_steps = 2
    c.dash.update_every = 2
  return c
