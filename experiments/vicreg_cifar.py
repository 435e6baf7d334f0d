"""VICReg on CIFAR-10 or CIFAR-100 (ResNet-18, CIFAR stem): solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/vicreg_cifar.py --workdir=runs/vicreg_cifar10
  python -m sslx.main --config=experiments/vicreg_cifar.py:dataset=cifar100 \\
      --workdir=runs/vicreg_cifar100

Args (after the colon, comma-separated): ``dataset=cifar10|cifar100`` (default cifar10),
``smoke`` (a tiny CNN on a few steps, for tests); others are refused.

Should reproduce solo-learn's ResNet-18 linear-evaluation accuracy after 1000 epochs
(vturrisi/solo-learn ``README.md``, "Results", Acc@1):

  ========  =========
  dataset   Acc@1 (%)
  ========  =========
  cifar10   92.07
  cifar100  68.54
  ========  =========

The recipe (solo-learn ``scripts/pretrain/cifar/vicreg.yaml`` and
``solo/methods/vicreg.py``; what all the CIFAR YAMLs share, 195,000 steps of 256 images
with a 1,950-step warm-up and cosine decay, is in ``_solo_cifar.py``): LARS, peak lr 0.3,
weight decay 1e-4 (biases and BatchNorm excluded); projector ``Linear(512, 2048) -> BN ->
ReLU -> Linear(2048, 2048) -> BN -> ReLU -> Linear(2048, 2048)``; invariance, variance and
covariance weights 25, 25 and 1; the YAML's own augmentations, the same for both views:
random-resized crop of area **0.2**-1 at 32x32, flip, colour jitter (0.4, 0.4, 0.2, 0.1)
with p 0.8, grayscale p 0.2, no blur, solarization p 0.1.

Differences: those of ``_solo_cifar.py`` (sslx's LARS has trust coefficient 0.001 and no
``clip_lr``, solo's eta 0.02 with it; the online probe; the stem's padding; BatchNorm over
both views at once), and the views: sslx ``simclr`` views with colour strength 0.5
(saturation 0.4, not 0.2) and no solarization (sslx's SimCLR view has none).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SOLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_solo_cifar.py")
SOLO_LEARN_ACC1 = {"cifar10": 92.07, "cifar100": 68.54}  # README "Results", ResNet-18


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke"), "vicreg_cifar.py")
  c = load_config_file(_SOLO, f"{arg or ''},method=vicreg")
  c.loss.terms = {"vicreg": 1.0, "supervised": 1.0}
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  c.vicreg.sim_coeff = 25.0
  c.vicreg.std_coeff = 25.0
  c.vicreg.cov_coeff = 1.0
  c.vicreg.views = "simclr"
  c.augment.simclr_strength = 0.5  # jitter 0.4/0.4/0.4/0.1; solo's saturation is 0.2
  c.augment.simclr_crop_scale = (0.2, 1.0)
  c.model.projection_layers = 3
  if not args.get("smoke"):
    c.model.projection_hidden_dim = 2048
    c.model.projection_dim = 2048
  return c
