"""SwAV on CIFAR-10 or CIFAR-100 (ResNet-18, CIFAR stem): solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/swav_cifar.py --workdir=runs/swav_cifar10
  python -m sslx.main --config=experiments/swav_cifar.py:dataset=cifar100 \\
      --workdir=runs/swav_cifar100

Args (after the colon, comma-separated): ``dataset=cifar10|cifar100`` (default cifar10),
``smoke`` (a tiny CNN on a few steps, for tests); others are refused.

Should reproduce solo-learn's ResNet-18 linear-evaluation accuracy after 1000 epochs
(vturrisi/solo-learn ``README.md``, "Results", Acc@1):

  ========  =========
  dataset   Acc@1 (%)
  ========  =========
  cifar10   89.17
  cifar100  64.88
  ========  =========

The recipe (solo-learn ``scripts/pretrain/cifar/swav.yaml``, ``solo/methods/swav.py`` and
its defaults there; what all the CIFAR YAMLs share, 195,000 steps of 256 images with a
1,950-step warm-up and cosine decay, is in ``_solo_cifar.py``): LARS, peak lr 0.6, weight
decay 1e-6 (biases and BatchNorm excluded); projector ``Linear(512, 2048) -> BN -> ReLU ->
Linear(2048, 128)``, l2-normalised, scored against 3000 normalised prototypes,
temperature 0.1; Sinkhorn-Knopp codes with epsilon 0.05 and 3 iterations; prototypes
frozen for 2 epochs (390 steps); a queue of 3840 past projections per crop used from epoch
50 (step 9,750); two 32x32 crops per image and no small crops
(``augmentations/symmetric.yaml``: area 0.08-1, flip, colour jitter 0.8/0.8/0.8/0.2 with
p 0.8, i.e. SimCLR strength 1.0 exactly, grayscale p 0.2, Gaussian blur p 0.5, no
solarization, the same for both crops).

Differences: those of ``_solo_cifar.py`` (sslx's LARS has trust coefficient 0.001 and no
``clip_lr``, solo's eta 0.02 with it; the online probe; the stem's padding; BatchNorm over
both crops at once), and: sslx's queue starts filling at step 9,750 and is used once full
(15 steps later), where solo fills it from the start and uses it from epoch 50 on; the
blur kernel has 5 taps on 32x32 images (radius 5% of the side), so sigma near 2 is
truncated. The colour recipe itself is matched.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SOLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_solo_cifar.py")
SOLO_LEARN_ACC1 = {"cifar10": 89.17, "cifar100": 64.88}  # README "Results", ResNet-18
STEPS_PER_EPOCH = 195  # 50,000 // 256, as _solo_cifar.py


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke"), "swav_cifar.py")
  smoke = bool(args.get("smoke"))
  c = load_config_file(_SOLO, f"{arg or ''},method=swav")
  c.loss.terms = {"swav": 1.0, "supervised": 1.0}
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.6
  c.optimizer.weight_decay = 1e-6
  c.augment.simclr_strength = 1.0
  c.augment.simclr_blur = True
  c.augment.multicrop_global_size = 0  # the image side, 32
  c.augment.multicrop_global_scale = (0.08, 1.0)
  c.swav.num_global_crops = 2
  c.swav.num_local_crops = 0
  c.swav.temperature = 0.1
  c.swav.epsilon = 0.05
  c.swav.sinkhorn_iterations = 3
  if smoke:  # a queue of one batch, used from step 2 of 4, so its path runs too
    c.swav.num_prototypes = 16
    c.swav.queue_size = c.batch_size * c.unlabeled_ratio
    c.swav.queue_start_step = 1
    c.swav.freeze_prototypes_steps = 1
  else:
    c.model.projection_hidden_dim = 2048
    c.model.projection_dim = 128
    c.model.projection_layers = 2
    c.swav.num_prototypes = 3000
    c.swav.queue_size = 3840
    c.swav.queue_start_step = 50 * STEPS_PER_EPOCH
    c.swav.freeze_prototypes_steps = 2 * STEPS_PER_EPOCH
  return c
