"""SimSiam on CIFAR-10 or CIFAR-100 (ResNet-18, CIFAR stem): solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/simsiam_cifar.py --workdir=runs/simsiam_cifar10
  python -m sslx.main --config=experiments/simsiam_cifar.py:dataset=cifar100 \\
      --workdir=runs/simsiam_cifar100

Args (after the colon, comma-separated): ``dataset=cifar10|cifar100`` (default cifar10),
``smoke`` (a tiny CNN on a few steps, for tests); others are refused.

Should reproduce solo-learn's ResNet-18 linear-evaluation accuracy after 1000 epochs
(vturrisi/solo-learn ``README.md``, "Results", Acc@1):

  ========  =========
  dataset   Acc@1 (%)
  ========  =========
  cifar10   90.51
  cifar100  66.04
  ========  =========

The recipe (solo-learn ``scripts/pretrain/cifar/simsiam.yaml`` and
``solo/methods/simsiam.py``; what all the CIFAR YAMLs share, 195,000 steps of 256 images
with a 1,950-step warm-up and cosine decay, is in ``_solo_cifar.py``): plain SGD (the YAML
passes no ``kwargs``, so torch's ``momentum`` 0), peak lr 0.5, weight decay 1e-5;
projector ``Linear(512, 2048) -> BN -> ReLU -> Linear(2048, 2048) -> BN -> ReLU ->
Linear(2048, 2048) -> BN(no affine)``, predictor ``Linear(2048, 512) -> BN -> ReLU ->
Linear(512, 2048)`` whose learning rate stays at the peak 0.5 (``static_lr``);
``augmentations/symmetric_weak.yaml``: random-resized crop of area 0.08-1 at 32x32, flip,
colour jitter 0.4/0.4/0.4/0.1 with p 0.8 (SimCLR strength 0.5 exactly), grayscale p 0.2,
Gaussian blur p 0.5, the same for both views. (The YAML's ``temperature: 0.2`` is not read
by SimSiam.)

Differences: those of ``_solo_cifar.py`` (the online probe; the stem's padding; BatchNorm
over both views at once; its LARS note does not apply, this is SGD), and: sslx's SGD
decays kernels only (torch's ``weight_decay`` decays every parameter); the predictor
follows the schedule with everything else (sslx has no per-module constant learning
rate); the projector ends in ``Dense`` with a bias, not a BatchNorm without affine
parameters (sslx's projection head has no output BatchNorm); the blur kernel has 5 taps
on 32x32 images (radius 5% of the side), so sigma near 2 is truncated.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SOLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_solo_cifar.py")
SOLO_LEARN_ACC1 = {"cifar10": 90.51, "cifar100": 66.04}  # README "Results", ResNet-18


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke"), "simsiam_cifar.py")
  c = load_config_file(_SOLO, f"{arg or ''},method=simsiam")
  c.loss.terms = {"simsiam": 1.0, "supervised": 1.0}
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.5
  c.optimizer.momentum = 0.0
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-5
  c.simsiam.views = "simclr"
  c.augment.simclr_strength = 0.5
  c.augment.simclr_blur = True
  c.model.projection_layers = 3
  if args.get("smoke"):
    c.simsiam.predictor_hidden_dim = 8
  else:
    c.model.projection_hidden_dim = 2048
    c.model.projection_dim = 2048
    c.simsiam.predictor_hidden_dim = 512
  return c
