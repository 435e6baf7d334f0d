"""ReMixMatch (RandAugment) on CIFAR-10: USB's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/remixmatch_cifar10.py:labels=250 \\
      --workdir=runs/remixmatch_cifar10_250_seed0

Args (after the colon, comma-separated): ``labels=40|250|4000`` (default 250),
``split_seed=N`` (which labeled subset), ``smoke`` (a tiny CNN on a few steps, for tests).

Reference error rates (%), ReMixMatch with CTAugment as re-run by Sohn et al., FixMatch
(NeurIPS 2020), Table 2, mean +- std over 5 labeled splits:

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          19.10 +- 9.64
  250          5.44 +- 0.05
  4000         4.72 +- 0.13
  ==========  ===============

The recipe is USB's ``config/classic_cv/remixmatch/remixmatch_cifar10_*.yaml`` (the
official-code hyper-parameters in USB's PyTorch trainer): WRN-28-2, 2^20 steps, labeled
batch 64 and 64 unlabeled images (``uratio`` 1), each seen weakly and in K = 2 strong
views, T 0.5, MixUp alpha 0.75, lambda_u 1.5, lambda_kl 0.5, lambda_rot 0.5, the
unlabeled weights ramped over the first 1/64 of training, SGD + Nesterov momentum 0.9,
lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for evaluation; weak
view: flip + translation by up to 12.5%. Differences: RandAugment (+ Cutout, as
``fixmatch_cifar10.py``) instead of the authors' CTAugment, so the table above is a
reference, not a target this config was measured against; the authors' own runs use
K = 8 (K = 1 and w_rot 2 at 40 labels, ``runs/ssl/cifar10.sh`` of
google-research/remixmatch) and Adam; the rest of the data protocol as
``fixmatch_cifar10.py``. Not run here (no accelerator): no sslx number yet.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
PAPER_ERROR_RATES = {40: (19.10, 9.64), 250: (5.44, 0.05), 4000: (4.72, 0.13)}


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels", "split_seed", "smoke"), "remixmatch_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "remixmatch"
  c.loss.terms = {"remixmatch": 1.0}
  c.remixmatch.num_strong_views = 2
  c.remixmatch.temperature = 0.5
  c.remixmatch.alpha = 0.75
  c.remixmatch.unsup_weight = 1.5
  c.remixmatch.kl_weight = 0.5
  c.remixmatch.rotation_weight = 0.5
  c.remixmatch.warmup = 1 / 64
  if not args.get("smoke"):
    c.unlabeled_ratio = 1  # USB uratio 1
  return c
