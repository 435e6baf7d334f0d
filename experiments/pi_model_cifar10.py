"""The Pi-model on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/pi_model_cifar10.py:labels=250 \\
      --workdir=runs/pi_model_cifar10_250_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``pimodel``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          75.56 +- 2.02
  250         47.69 +- 1.52
  4000        12.80 +- 0.09
  ==========  ===============

The paper's own number (Laine & Aila, ICLR 2017, Table 1; also Table 3 of the UDA paper,
arXiv:1904.12848): 12.36 +- 0.31 at 4,000 labels, Pi-model with augmentation, on their
13-layer ConvNet ("Conv-Large", 3.1M parameters), no 40 or 250-label runs.

The recipe (USB ``config/classic_cv/pimodel/pimodel_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, SGD (momentum
0.9, Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for
evaluation (all as ``fixmatch_cifar10.py``, which this file extends); Pi-model: ONE
unlabeled image per labeled one (uratio 1), two WEAK views of it (USB's ``x_ulb_s`` is
its weak transform for ``pimodel``, ``semilearn/datasets/cv_datasets/datasetbase.py``),
lambda_u 10 ramped up linearly over the first 40% of training. Differences: those of
``fixmatch_cifar10.py`` (augmentations, split); USB freezes the BatchNorm running
statistics for the unlabeled passes, sslx shares one pass (see
``sslx/methods/pi_model.py``).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (75.56, 2.02), 250: (47.69, 1.52), 4000: (12.80, 0.09)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "pi_model_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "pi_model"
  c.unlabeled_ratio = 1  # USB uratio
  c.loss.terms = {"supervised": 1.0, "pi_model": 10.0}  # lambda_u = 10
  c.pi_model.warmup = 0.4
  return c
