"""Barlow Twins on CIFAR-10 or CIFAR-100 (ResNet-18, CIFAR stem): solo-learn's recipe, for a
GPU/TPU VM.

  python -m sslx.main --config=experiments/barlow_twins_cifar.py \\
      --workdir=runs/barlow_twins_cifar10
  python -m sslx.main --config=experiments/barlow_twins_cifar.py:dataset=cifar100 \\
      --workdir=runs/barlow_twins_cifar100

Args (after the colon, comma-separated): ``dataset=cifar10|cifar100`` (default cifar10),
``smoke`` (a tiny CNN on a few steps, for tests); others are refused.

Should reproduce solo-learn's ResNet-18 linear-evaluation accuracy after 1000 epochs
(vturrisi/solo-learn ``README.md``, "Results", Acc@1):

  ========  =========
  dataset   Acc@1 (%)
  ========  =========
  cifar10   92.10
  cifar100  70.90
  ========  =========

The recipe (solo-learn ``scripts/pretrain/cifar/barlow.yaml``,
``solo/methods/barlow_twins.py`` and ``solo/losses/barlow.py``; what all the CIFAR YAMLs
share, 195,000 steps of 256 images with a 1,950-step warm-up and cosine decay, is in
``_solo_cifar.py``): LARS, peak lr 0.3, weight decay 1e-4 (biases and BatchNorm excluded);
projector ``Linear(512, 2048) -> BN -> ReLU -> Linear(2048, 2048) -> BN -> ReLU ->
Linear(2048, 2048)``; the loss ``scale_loss * (sum_i (1 - C_ii)^2 + lamb sum_{i!=j}
C_ij^2)`` with ``scale_loss`` 0.1 (here the term's weight: sslx's
:func:`~sslx.losses.barlow_twins_loss` is the same unscaled sum) and ``lamb`` 0.0051
(solo's default); ``augmentations/asymmetric.yaml``: random-resized crop of area 0.08-1 at
32x32, flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2, no blur,
solarization p 0.2 on the second view only.

Differences: those of ``_solo_cifar.py`` (sslx's LARS has trust coefficient 0.001 and no
``clip_lr``, solo's eta 0.02 with it; the online probe; the stem's padding; BatchNorm over
both views at once), and the views: both are sslx ``simclr`` views with colour strength
0.5 (saturation 0.4, not 0.2) and no solarization (sslx's SimCLR view has none).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SOLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_solo_cifar.py")
SOLO_LEARN_ACC1 = {"cifar10": 92.10, "cifar100": 70.90}  # README "Results", ResNet-18


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke"), "barlow_twins_cifar.py")
  c = load_config_file(_SOLO, f"{arg or ''},method=barlow_twins")
  c.loss.terms = {"barlow_twins": 0.1, "supervised": 1.0}  # 0.1: solo's scale_loss
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  c.barlow_twins.lambda_offdiag = 0.0051
  c.barlow_twins.views = "simclr"
  c.augment.simclr_strength = 0.5  # jitter 0.4/0.4/0.4/0.1; solo's saturation is 0.2
  c.model.projection_layers = 3
  if not args.get("smoke"):
    c.model.projection_hidden_dim = 2048
    c.model.projection_dim = 2048
  return c
