"""FlexMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/flexmatch_cifar10.py:labels=40 \\
      --workdir=runs/flexmatch_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``flexmatch``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          5.21 +- 0.36
  250         5.00 +- 0.05
  4000        4.28 +- 0.05
  ==========  ===============

The paper's own numbers (Zhang et al., NeurIPS 2021, arXiv:2110.08263, Table 1, run with
TorchSSL): 4.97 +- 0.06, 4.98 +- 0.09, 4.19 +- 0.01 at 40, 250, 4000 labels.

The recipe (USB ``config/classic_cv/flexmatch/flexmatch_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, 7 unlabeled
images per labeled one, labeled + weak + strong in one forward pass, SGD (momentum 0.9,
Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation
(all as ``fixmatch_cifar10.py``, which this file extends); FlexMatch: tau (p_cutoff)
0.95, threshold warm-up on, hard pseudo-labels (T 0.5 is then unused), lambda_u 1.
Differences: those of ``fixmatch_cifar10.py`` (augmentations, split); the thresholding
follows USB's hook (see ``sslx/methods/flexmatch.py``).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (5.21, 0.36), 250: (5.00, 0.05), 4000: (4.28, 0.05)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "flexmatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "flexmatch"
  c.loss.terms = {"supervised": 1.0, "flexmatch": 1.0}  # lambda_u = 1
  c.flexmatch.threshold = 0.95
  c.flexmatch.threshold_warmup = True
  c.flexmatch.hard_label = True
  c.flexmatch.temperature = 0.5
  return c
