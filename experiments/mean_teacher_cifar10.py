"""Mean Teacher on CIFAR-10: USB's classic-CV recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/mean_teacher_cifar10.py:labels=4000 \\
      --workdir=runs/mean_teacher_cifar10_4000_seed0

Args: ``labels=40|250|4000`` (default 250), ``split_seed=N``, ``smoke`` (a tiny CNN on a
few steps, for tests), as ``fixmatch_cifar10.py``.

USB's reproduction (microsoft/Semi-supervised-learning, ``results/classic_cv.csv``, row
``meanteacher``, best error rate, mean +- std over 3 seeds):

  ==========  ===============
  labels      error (%)
  ==========  ===============
  40          76.93 +- 2.29
  250         56.06 +- 2.03
  4000        15.47 +- 0.43
  ==========  ===============

This recipe is NOT expected to match that row: USB's ``meanteacher`` takes the student's
logits from the teacher's output (``semilearn/algorithms/meanteacher/meanteacher.py``:
``logits_x_ulb_s = outs_x_ulb_w['logits']``), so its unlabeled loss has no gradient and
its row is its supervised-only one (``supervised``: 77.58, 55.96, 15.51). sslx's student
uses its own pass, as the paper. The paper's own number (Tarvainen & Valpola, NeurIPS
2017, as listed in Table 3 of the UDA paper, arXiv:1904.12848): 12.31 +- 0.28 at 4,000
labels on the 13-layer ConvNet ("Conv-Large", 3.1M parameters), 6.28 +- 0.15 with a
26M-parameter Shake-Shake ResNet; no 40 or 250-label runs.

The recipe (USB ``config/classic_cv/meanteacher/meanteacher_cifar10_{40,250,4000}_0.yaml``,
identical but for ``num_labels``): WRN-28-2, 2^20 steps, labeled batch 64, SGD (momentum
0.9, Nesterov) lr 0.03 with the FixMatch cosine, weight decay 5e-4, EMA 0.999 for
evaluation (all as ``fixmatch_cifar10.py``, which this file extends); Mean Teacher: ONE
unlabeled image per labeled one (uratio 1), two WEAK views of it (teacher and student),
teacher EMA decay 0.999 (USB's ema_m: in USB the teacher IS the evaluation EMA; here it
is a target tree of its own with the same decay), lambda_u 50 ramped up linearly over the
first 40% of training. Differences: those of ``fixmatch_cifar10.py`` (augmentations,
split) and the BatchNorm handling in ``sslx/methods/mean_teacher.py``.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_cifar10.py")
# USB's table; see the docstring for why this recipe should do better than it.
PAPER_ERROR_RATES = {40: (76.93, 2.29), 250: (56.06, 2.03), 4000: (15.47, 0.43)}


def get_config(arg=None):
  parse_config_arg(arg, ("labels", "split_seed", "smoke"), "mean_teacher_cifar10.py")
  c = load_config_file(_FIXMATCH, arg)
  c.method = "mean_teacher"
  c.unlabeled_ratio = 1  # USB uratio
  c.loss.terms = {"supervised": 1.0, "mean_teacher": 50.0}  # lambda_u = 50
  c.mean_teacher.teacher_decay = 0.999
  c.mean_teacher.warmup = 0.4
  return c
