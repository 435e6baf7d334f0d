"""VAT (+ entropy minimisation) on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/vat_cifar10.py:labels=250 \\
      --workdir=runs/vat_cifar10_250_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``vat``, best error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          76.42 +- 2.57
  250         42.58 +- 6.67
  4000        10.97 +- 0.19
  ==========  ===============

The paper's own number (Miyato et al., TPAMI 2018, VAT + EntMin, as listed in Table 3 of
the UDA paper, arXiv:1904.12848): 10.55 +- 0.05 at 4,000 labels on the 13-layer ConvNet
("Conv-Large", 3.1M parameters), no 40 or 250-label runs.

The recipe (USB ``config/classic_cv/vat/vat_cifar10_{40,250,4000}_0.yaml``, identical but
for ``num_labels``; it sets none of VAT's options, so they are the argument defaults of
``semilearn/algorithms/vat/vat.py``, and uratio is ``train.py``'s default, 1): WRN-28-2,
2^20 steps, labeled batch 64, SGD (momentum 0.9, Nesterov) lr 0.03 with the FixMatch
cosine, weight decay 5e-4, EMA 0.999 for evaluation (all as ``fixmatch_cifar10.py``,
which this file extends); VAT: ONE unlabeled image per labeled one (uratio 1), one weak
view, eps 6, xi 1e-6, one power iteration, lambda_u 1 on the KL ramped up linearly over
the first 40% of training, entropy weight 0.06 (not ramped). Each step runs three extra
unlabeled passes (clean, power iteration, adversarial), as USB.
Differences: those of ``fixmatch_cifar10.py`` (augmentations, split). eps is a norm in
the model's input units: USB normalises CIFAR-10 with the ImageNet mean/std
(``semilearn/datasets/cv_datasets/cifar.py``, std ~0.23), sslx with the training set's
(``data.normalization='train_stats'``, std ~0.25), so the same eps is a slightly larger
pixel-space perturbation here; ``--config.data.normalization=imagenet`` gives USB's.
See ``sslx/methods/vat.py`` for how the passes and the BatchNorm statistics follow USB.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (76.42, 2.57), 250: (42.58, 6.67), 4000: (10.97, 0.19)}  # USB's table


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "vat_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "vat"
  c.unlabeled_ratio = 1  # USB uratio (train.py default)
  c.loss.terms = {"supervised": 1.0, "vat": 1.0}  # lambda_u = 1
  c.vat.eps = 6.0
  c.vat.xi = 1e-6
  c.vat.num_iters = 1
  c.vat.entropy_weight = 0.06
  c.vat.warmup = 0.4
  return c
