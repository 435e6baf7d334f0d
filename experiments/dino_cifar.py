"""DINO on CIFAR-10 or CIFAR-100 (ResNet-18, CIFAR stem): solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/dino_cifar.py --workdir=runs/dino_cifar10
  python -m sslx.main --config=experiments/dino_cifar.py:dataset=cifar100 \\
      --workdir=runs/dino_cifar100

Args (after the colon, comma-separated): ``dataset=cifar10|cifar100`` (default cifar10),
``smoke`` (a tiny CNN on a few steps, for tests); others are refused.

Should reproduce solo-learn's ResNet-18 linear-evaluation accuracy after 1000 epochs
(vturrisi/solo-learn ``README.md``, "Results", Acc@1):

  ========  =========
  dataset   Acc@1 (%)
  ========  =========
  cifar10   89.52
  cifar100  66.76
  ========  =========

The recipe (solo-learn ``scripts/pretrain/cifar/dino.yaml``, ``solo/methods/dino.py`` and
its defaults there; what all the CIFAR YAMLs share, 195,000 steps of 256 images with a
1,950-step warm-up and cosine decay, is in ``_solo_cifar.py``): LARS, peak lr 0.3, weight
decay 1e-6 (biases and BatchNorm excluded); the DINO head on the 512-d features (no
projection head): 3 layers, hidden 2048, GELU, no BatchNorm (``use_bn_in_head`` False),
bottleneck 256, l2-normalised, then a weight-normalised ``Linear(256, 4096)`` with its norms
fixed to 1 (``norm_last_layer``) and frozen for the first epoch (``freeze_last_layer`` 1:
195 steps); student temperature 0.1, teacher temperature 0.07 from the start
(``warmup_teacher_temperature_epochs`` 0), centre momentum 0.9; teacher momentum
``tau`` 0.9995 -> 1.0 on a cosine over the steps; no gradient clipping (``clip_grad`` 0);
two 32x32 crops per image and no local crops (``augmentations/asymmetric.yaml``: area
0.08-1, flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2, no blur,
solarization p 0.2 on the second crop only).

Differences: those of ``_solo_cifar.py`` (sslx's LARS has trust coefficient 0.001 and no
``clip_lr``, solo's eta 0.02 with it; the online probe; the stem's padding; BatchNorm over
both crops at once), and the crops: both are sslx ``global_crop`` views (the SimCLR view
at the image size) with colour strength 0.5 (saturation 0.4, not 0.2) and no
solarization (sslx's multi-crop views have none).
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SOLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_solo_cifar.py")
SOLO_LEARN_ACC1 = {"cifar10": 89.52, "cifar100": 66.76}  # README "Results", ResNet-18
STEPS_PER_EPOCH = 195  # 50,000 // 256, as _solo_cifar.py


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke"), "dino_cifar.py")
  smoke = bool(args.get("smoke"))
  c = load_config_file(_SOLO, f"{arg or ''},method=dino")
  c.loss.terms = {"dino": 1.0, "supervised": 1.0}
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-6
  c.optimizer.grad_clip_norm = 0.0
  c.model.projection_dim = 0  # DINO has its own head, on the features
  c.augment.simclr_strength = 0.5  # jitter 0.4/0.4/0.4/0.1; solo's saturation is 0.2
  c.augment.multicrop_global_size = 0  # the image side, 32
  c.augment.multicrop_global_scale = (0.08, 1.0)
  c.dino.num_global_crops = 2
  c.dino.num_local_crops = 0
  c.dino.num_layers = 3
  c.dino.norm_last_layer = True
  c.dino.student_temperature = 0.1
  c.dino.teacher_temperature = 0.07
  c.dino.warmup_teacher_temperature = 0.07
  c.dino.warmup_teacher_temperature_steps = 0
  c.dino.center_momentum = 0.9
  c.dino.base_momentum = 0.9995
  c.dino.final_momentum = 1.0
  c.dino.freeze_last_layer_steps = 1 if smoke else STEPS_PER_EPOCH
  if smoke:
    c.dino.hidden_dim = 16
    c.dino.bottleneck_dim = 8
    c.dino.out_dim = 32
  else:
    c.dino.hidden_dim = 2048
    c.dino.bottleneck_dim = 256
    c.dino.out_dim = 4096
  return c
