"""NNCLR on CIFAR-10 (ResNet-18, CIFAR stem), solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/nnclr_cifar10.py --workdir=runs/nnclr_cifar10

Args (after the colon, comma-separated): ``images=N`` (images per step, two views each;
default 256; a multiple of 64), ``epochs=N`` (default 1000), ``smoke`` (a tiny CNN on a
few steps, for tests).

Should reproduce solo-learn's CIFAR-10 row for NNCLR (``vturrisi/solo-learn`` README,
``scripts/pretrain/cifar/nnclr.yaml``): ResNet-18, 1000 epochs, **91.88% top-1** of its
online linear classifier (99.78% top-5). The NNCLR paper (Dwibedi et al., ICCV 2021)
reports ImageNet only.

The recipe (``nnclr.yaml`` + ``augmentations/asymmetric.yaml``): temperature 0.2, a
projector of hidden width 2048 and output 256, a predictor of hidden width 4096, a queue
of 65536 projections; LARS (momentum 0.9, weight decay 1e-5, BatchNorm and biases
excluded) with learning rate 0.4 at batch 256 (scaled linearly with ``images``), 10
warm-up epochs then cosine; crops of area 0.08-1 with flips, colour jitter (0.4, 0.4,
0.2, 0.1) with probability 0.8, grayscale 0.2, no blur; batch 256.

Where sslx differs: sslx's views are symmetric SimCLR views (strength 0.5: jitter 0.4,
0.4, 0.4, 0.1; the recipe solarises the second view with probability 0.2 and uses
saturation 0.2); sslx's projection head has 3 Dense layers without solo-learn's output
BatchNorm; optax's LARS trust coefficient is 0.001 (solo-learn's eta 0.02 with
``clip_lr``). Evaluation as ``simclr_cifar10.py``: an online linear probe on
stop_gradient(features) (labeled batch 64), then a converged linear probe and a weighted
kNN (k = 200, T = 0.07) on all 50,000 training images.
"""

import os

from sslx.config import load_config_file, parse_config_arg, positive_int_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_cifar10.py")

_ARGS = ("images", "epochs", "smoke")
TRAIN_IMAGES = 50_000
PROBE_BATCH = 64  # labeled images per step for the online linear probe
SOLO_LEARN_TOP1 = 91.88  # solo-learn README, CIFAR-10, ResNet-18, 1000 epochs


def get_config(arg=None):
  source = "nnclr_cifar10.py"
  args = parse_config_arg(arg, _ARGS, source)
  images = positive_int_arg(args, "images", 256, source=source, multiple_of=PROBE_BATCH)
  epochs = positive_int_arg(args, "epochs", 1000, source=source)

  # SimCLR's CIFAR-10 ResNet-18 setup (data, online probe, evaluation, LARS + cosine,
  # 10 warm-up epochs); only NNCLR's term, heads and solo-learn's rates differ.
  c = load_config_file(_SIMCLR, ",".join(
      ["model=resnet18", f"images={images}", f"epochs={epochs}"]
      + (["smoke"] if args.get("smoke") else [])))
  c.method = "nnclr"
  if not args.get("smoke"):
    c.model = dict(name="resnet18", stem="cifar", projection_dim=256,
                   projection_hidden_dim=2048, projection_layers=3,
                   stop_gradient_classifier=True)
  c.loss.terms = {"nnclr": 1.0, "supervised": 1.0}  # supervised = online probe only
  c.nnclr.temperature = 0.2
  c.nnclr.queue_size = 65536
  c.nnclr.predictor_hidden_dim = 4096
  c.nnclr.views = "simclr"
  c.optimizer.learning_rate = 0.4 * images / 256
  c.optimizer.weight_decay = 1e-5
  if args.get("smoke"):
    c.nnclr.queue_size = 32
    c.nnclr.predictor_hidden_dim = 32
  return c
