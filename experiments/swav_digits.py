"""SwAV on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/swav_digits.py --workdir=runs/swav_digits

The encoder learns from all training images without labels: each crop predicts the
Sinkhorn-Knopp cluster codes of the two global crops (swapped prediction) over 100
l2-normalised prototypes (about 10 per digit class; 3000 on ImageNet would outnumber the
1437 images). Multi-crop as ``dino_digits.py``: 2 global 8x8 crops (area 0.5-1, as
simclr_digits' crops) and 4 local 4x4 crops (area 0.2-0.5). Everything else is
``simclr_digits.py``, which this file loads (same encoder and projection head, LARS,
steps, online probe on stop_gradient(features), final linear probe + kNN on the labeled
subset and the raw-pixel probe), so the rows compare. Prototypes are frozen for the
first 12 steps (about two epochs of 1437 images at 256 per step; solo-learn's CIFAR
recipe freezes 2 epochs); no queue (the batch, 256, is the size the official code
uses without one).

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "swav_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "swav"
  c.loss.terms = {"swav": 1.0, "supervised": 1.0}
  c.augment.multicrop_global_size = 8
  c.augment.multicrop_global_scale = (0.5, 1.0)
  c.augment.multicrop_local_size = 4
  c.augment.multicrop_local_scale = (0.2, 0.5)
  c.swav.num_global_crops = 2
  c.swav.num_local_crops = 4
  c.swav.num_prototypes = 100
  c.swav.temperature = 0.1
  c.swav.epsilon = 0.05
  c.swav.sinkhorn_iterations = 3
  c.swav.queue_size = 0
  c.swav.freeze_prototypes_steps = 12
  if args.get("smoke"):
    c.swav.num_local_crops = 2
    c.swav.num_prototypes = 16
    c.swav.freeze_prototypes_steps = 2
  return c
