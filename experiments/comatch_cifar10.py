"""CoMatch on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/comatch_cifar10.py:labels=40 \\
      --workdir=runs/comatch_cifar10_40_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, best
error rate, mean +- std over 3 seeds) that this recipe should match:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          5.44 +- 0.05
  250         5.33 +- 0.12
  4000        4.29 +- 0.04
  ==========  ===============

The recipe (USB ``config/classic_cv/comatch/comatch_cifar10_*_0.yaml``): WRN-28-2,
2^20 steps, labeled batch 64, uratio 7, SGD (momentum 0.9, Nesterov) lr 0.03 with the
FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation (all as
``fixmatch_cifar10.py``, which this file extends); CoMatch: tau 0.95, graph threshold
0.8, T 0.2, alpha 0.9, lambda_c 1, lambda_u 1, 64-d EPASS embedding, a memory of
queue_batch 5 steps (5 x 8 x 64 = 2,560 rows), da_len 32, two RandAugment views (USB
uses its strong transform for both), memory smoothing after the first epoch (1,024 steps).
Differences: those of ``fixmatch_cifar10.py`` (augmentations, split); the embedding head
starts from flax's initialisation, not PyTorch's.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
_QUEUE_BATCH = 5  # steps of embeddings in the memory (USB queue_batch)
PAPER_ERROR_RATES = {40: (5.44, 0.05), 250: (5.33, 0.12), 4000: (4.29, 0.04)}  # USB's table


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels", "split_seed", "smoke"), "comatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "comatch"
  c.loss.terms = {"supervised": 1.0, "comatch": 1.0}
  c.comatch.queue_size = _QUEUE_BATCH * (c.unlabeled_ratio + 1) * c.batch_size
  c.comatch.warmup_steps = 1024
  if args.get("smoke"):
    c.comatch.proj_size = 16
    c.comatch.warmup_steps = 1
  return c
