"""MoCo v3 on CIFAR-10 or CIFAR-100 (ResNet-18, CIFAR stem): solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/moco_cifar.py --workdir=runs/moco_cifar10
  python -m sslx.main --config=experiments/moco_cifar.py:dataset=cifar100 \\
      --workdir=runs/moco_cifar100

Args (after the colon, comma-separated): ``dataset=cifar10|cifar100`` (default cifar10),
``smoke`` (a tiny CNN on a few steps, for tests); others are refused.

Should reproduce solo-learn's ResNet-18 linear-evaluation accuracy after 1000 epochs
(vturrisi/solo-learn ``README.md``, "Results", MoCo V3, Acc@1):

  ========  =========
  dataset   Acc@1 (%)
  ========  =========
  cifar10   93.10
  cifar100  68.83
  ========  =========

The recipe (solo-learn ``scripts/pretrain/cifar/mocov3.yaml``, ``solo/methods/mocov3.py``
and ``solo/losses/mocov3.py``; what all the CIFAR YAMLs share, 195,000 steps of 256 images
with a 1,950-step warm-up and cosine decay, is in ``_solo_cifar.py``): LARS, peak lr 0.3,
weight decay 1e-6 (biases and BatchNorm excluded); projector ``Linear(512, 4096, no bias)
-> BN -> ReLU -> Linear(4096, 256, no bias) -> BN(no affine)``, predictor ``Linear(256,
4096, no bias) -> BN -> ReLU -> Linear(4096, 256, no bias)``; symmetric InfoNCE against
the momentum encoder's keys of the other view, in-batch negatives, temperature 0.2, scaled
by ``2T``; momentum ``tau`` 0.99 -> 1.0 on a cosine over the steps;
``augmentations/asymmetric.yaml``: random-resized crop of area 0.08-1 at 32x32, flip,
colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2, no blur, solarization p 0.2
on the second view only.

Differences: those of ``_solo_cifar.py`` (sslx's LARS has trust coefficient 0.001 and no
``clip_lr``, solo's eta 0.02 with it; the online probe; the stem's padding; BatchNorm over
both views at once), and: the projector is sslx's projection head, ending in ``Dense``
with a bias and no BatchNorm; the predictor is ``sslx.methods.moco``'s, the official
moco-v3 one, which ends in a BatchNorm without affine parameters (solo's ResNet predictor
has none); the momentum encoder is updated with ``m(step + 1)`` (the official timing,
see ``sslx/methods/moco.py``) where solo updates after the step with ``m(step)``; the
views: both are sslx ``simclr`` views with colour strength 0.5 (saturation 0.4, not 0.2)
and no solarization (sslx's SimCLR view has none).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SOLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_solo_cifar.py")
SOLO_LEARN_ACC1 = {"cifar10": 93.10, "cifar100": 68.83}  # README "Results", ResNet-18


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke"), "moco_cifar.py")
  c = load_config_file(_SOLO, f"{arg or ''},method=moco")
  c.loss.terms = {"moco": 1.0, "supervised": 1.0}
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-6
  c.moco.temperature = 0.2
  c.moco.base_momentum = 0.99
  c.moco.cosine_momentum = True  # to 1.0, solo's final_tau
  c.moco.queue_size = 0  # v3: in-batch negatives
  c.moco.views = "simclr"
  c.augment.simclr_strength = 0.5  # jitter 0.4/0.4/0.4/0.1; solo's saturation is 0.2
  if args.get("smoke"):
    c.moco.predictor_hidden_dim = 16
  else:
    c.model.projection_hidden_dim = 4096
    c.model.projection_dim = 256
    c.model.projection_layers = 2
    c.moco.predictor_hidden_dim = 4096
  return c
