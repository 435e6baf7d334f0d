"""What solo-learn's ResNet-18 CIFAR pretraining recipes share, for the ``*_cifar.py`` configs.

Not an experiment of its own (the leading underscore keeps it out of the experiment list):
``byol_cifar.py``, ``simsiam_cifar.py``, ``barlow_twins_cifar.py``, ``vicreg_cifar.py``,
``moco_cifar.py``, ``dino_cifar.py`` and ``swav_cifar.py`` load it with their own args plus
``method=<name>`` and set what their method's solo-learn YAML sets.

Built on ``simclr_cifar10.py:model=resnet18`` (ResNet-18 with the CIFAR stem, the online
linear probe on ``stop_gradient(features)`` from a labeled batch of 64 weakly augmented
images, and, at the end, the L-BFGS linear probe and the weighted kNN, k = 200, T = 0.07,
on the frozen features of all 50,000 training images), with what every solo-learn CIFAR
YAML shares (vturrisi/solo-learn ``scripts/pretrain/cifar/<method>.yaml`` and
``solo/methods/base.py``, ``solo/args/pretrain.py``):

* ``dataset=cifar10|cifar100`` (the YAMLs' ``data.dataset``);
* batch 256 unlabeled images (two views each) on one GPU, ``max_epochs: 1000``; the train
  loader drops the last partial batch, so an epoch is ``50,000 // 256 = 195`` steps and
  the run is 195,000 steps;
* ``warmup_cosine``: linear warm-up over 10 epochs (1,950 steps, solo's default
  ``warmup_epochs``) then cosine decay to ``min_lr`` 0, stepped every step; the YAML's
  learning rate is multiplied by ``batch_size * devices / 256`` = 1, so the YAML's
  ``lr`` is the peak rate.

Differences every ``*_cifar.py`` config shares (none is built here; each needs library
code sslx does not have):

* **LARS.** solo-learn's LARS (``solo/utils/lars.py``) uses ``eta`` 0.02 with
  ``clip_lr``: a kernel's step is ``min(eta |w| / (|g| + wd |w|), lr_t)`` times
  ``g + wd w``, i.e. the schedule only caps the trust-ratio step. sslx's ``lars`` is
  ``optax.lars`` with its fixed trust coefficient 0.001 and no clipping: each kernel step
  is ``lr_t * 0.001 |w| / |g + wd w|`` times ``g + wd w``: where solo's step is not
  clipped, sslx's is ``20 / lr_t`` times smaller (20x at BYOL's peak 1.0, 67x at 0.3) and
  shrinks with the schedule, which solo's does not. Biases and BatchNorm parameters are
  excluded from decay and trust ratio in both (solo ``exclude_bias_n_norm``: 1-d tensors).
* The warm-up starts from 0, not solo's ``warmup_start_lr`` 3e-5.
* The online probe: solo trains its linear classifier on the features of the augmented
  views of the pretraining batch, with its own learning rate (``classifier_lr``, 0.1 or
  0.3) in the same optimizer; sslx trains it on 64 labeled weak views per step with the
  encoder's optimizer and schedule, and decays its kernel (solo: no decay). Neither
  shapes the encoder. solo's README numbers
  are its linear evaluation accuracy (the CIFAR table does not say online or offline);
  compare them with ``linear_probe_accuracy`` in results.json.
* The CIFAR stem: solo's 3x3 stride-1 conv has ``padding=2`` (a 34x34 map); sslx's pads
  to keep 32x32.
* BatchNorm statistics: solo forwards each view on its own; sslx forwards the two views
  (and the probe's labeled batch) in one pass, so statistics span them all. solo runs
  16-bit mixed precision; sslx float32.
* Augmentations: sslx's ``simclr`` view (and the multi-crop ``global_crop`` built on it)
  is torchvision's random-resized crop + flip, ``ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s)``
  with p 0.8, grayscale p 0.2 and optional Gaussian blur (p 0.5, sigma 0.1-2) with the
  same settings for both views. It cannot express solo's asymmetric recipe
  (``augmentations/asymmetric.yaml``: jitter 0.4/0.4/0.2/0.1, i.e. saturation half of
  ``s`` = 0.5's 0.4, and solarization with p 0.2 on the second view only), nor
  solarization at all (VICReg: p 0.1 on both), nor per-view blur probabilities. Each
  method file says which of its settings this changes.
"""

from __future__ import annotations

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_cifar10.py")
DATASETS = ("cifar10", "cifar100")
TRAIN_IMAGES = 50_000
IMAGES_PER_STEP = 256  # solo-learn's optimizer.batch_size on devices: [0]
STEPS_PER_EPOCH = TRAIN_IMAGES // IMAGES_PER_STEP  # 195: the loader drops the last batch
EPOCHS = 1000
WARMUP_EPOCHS = 10


def get_config(arg=None):
  args = parse_config_arg(arg, ("dataset", "smoke", "method"), "_solo_cifar.py")
  source = f"{args.get('method', '_solo')}_cifar.py"
  dataset = args.get("dataset", "cifar10")
  if dataset not in DATASETS:
    raise ValueError(f"{source}: dataset must be one of {list(DATASETS)}, got {dataset!r}")
  smoke = bool(args.get("smoke"))
  c = load_config_file(_SIMCLR, f"model=resnet18,images={IMAGES_PER_STEP}"
                                + (",smoke" if smoke else ""))
  c.method = args.get("method", c.method)
  c.data.name = dataset
  c.loss.terms = {"supervised": 1.0}  # the online probe; each method adds its own term
  c.augment.simclr_crop_scale = (0.08, 1.0)  # every YAML but VICReg's: crop_min_scale 0.08
  c.augment.simclr_blur = False
  if not smoke:
    c.num_steps = EPOCHS * STEPS_PER_EPOCH
    c.optimizer.warmup_steps = WARMUP_EPOCHS * STEPS_PER_EPOCH
    c.log_every = 195
    c.eval_every = c.checkpoint_every = 25 * STEPS_PER_EPOCH
  return c

