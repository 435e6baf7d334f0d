"""SimCLR on CIFAR-10 (ResNet-50 or ResNet-18, CIFAR stem), for a GPU/TPU VM.

  python -m sslx.main --config=experiments/simclr_cifar10.py \\
      --workdir=runs/simclr_cifar10_r50
  python -m sslx.main --config=experiments/simclr_cifar10.py:model=resnet18 \\
      --workdir=runs/simclr_cifar10_r18

Args (after the colon, comma-separated): ``model=resnet50|resnet18`` (default
resnet50), ``images=N`` (images per step, two views each; default 1024 for ResNet-50,
512 for ResNet-18; a multiple of 64), ``epochs=N`` (default 1000), ``smoke`` (a tiny
CNN on a few steps, for tests).

Should reproduce Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (arXiv:2002.05709), Appendix B.9: a ResNet-50 pretrained on
CIFAR-10 with batch size 1024 reaches **94.0% linear-evaluation accuracy** (95.1% for the
supervised ResNet-50). For ResNet-18 (batch 512, 1000 epochs) the official code's README
(google-research/simclr) quotes about 91% for its linear head.

The recipe (App. B.9: "the rest of the settings are the same as our ImageNet training"):
the ImageNet ResNet with its first 7x7 stride-2 conv replaced by a 3x3 stride-1 conv and
no max-pool (``stem='cifar'``); two SimCLR views per image: random-resized crop (area
0.08-1, resized back to 32x32) + flip, colour distortion of strength 0.5, no Gaussian
blur; a 2-layer projection MLP (hidden = feature width, output 128); NT-Xent with
temperature 0.5 over the global batch (negatives from every device); LARS with momentum
0.9, weight decay 1e-6, BatchNorm and biases excluded from decay and trust-ratio
scaling; learning rate ``1.0 * images / 256`` (the paper sweeps base rates {0.5, 1.0,
1.5}; 1.0 is the official CIFAR-10 command) with 10 warmup epochs then cosine decay;
1000 epochs; no EMA.

Evaluation: an online linear probe on ``stop_gradient(features)`` trained alongside
(the ``supervised`` term on a labeled batch of 64 weakly augmented images; it does not
shape the encoder), logged as ``test/accuracy``; at the end, a logistic-regression probe
fit to convergence on the frozen features of all 50,000 training images
(``linear_probe_accuracy``, the number to compare with 94.0%) and a weighted kNN
(k = 200, T = 0.07; ``knn_accuracy``) in <workdir>/results.json. The paper's probe is
trained with SGD on augmented images; the L-BFGS probe on unaugmented features is
usually within about a point of it.
"""

from sslx.config import base_config, parse_config_arg, positive_int_arg

_ARGS = ("model", "images", "epochs", "smoke")
_MODELS = ("resnet50", "resnet18")
TRAIN_IMAGES = 50_000
PROBE_BATCH = 64  # labeled images per step for the online linear probe
PAPER_LINEAR_EVAL = {"resnet50": 94.0}  # App. B.9, batch 1024


def get_config(arg=None):
  source = "simclr_cifar10.py"
  args = parse_config_arg(arg, _ARGS, source)
  model = args.get("model", "resnet50")
  if model not in _MODELS:
    raise ValueError(f"{source}: model must be one of {_MODELS}, got {model!r}")
  images = positive_int_arg(args, "images", 1024 if model == "resnet50" else 512,
                            source=source, multiple_of=PROBE_BATCH)
  epochs = positive_int_arg(args, "epochs", 1000, source=source)

  c = base_config()
  c.method = "simclr"
  c.data.name = "cifar10"
  c.data.num_labels = -1  # linear evaluation uses every training label
  c.data.unlabeled_pool = "all"
  c.model = dict(name=model, stem="cifar", projection_dim=128, projection_layers=2,
                 stop_gradient_classifier=True)
  c.loss.terms = {"nt_xent": 1.0, "supervised": 1.0}  # supervised = online probe only
  c.nt_xent.temperature = 0.5
  c.nt_xent.views = "simclr"
  c.augment.flip = True
  c.augment.translate = 0.125  # the online probe's weak view
  c.augment.simclr_strength = 0.5
  c.augment.simclr_crop_scale = (0.08, 1.0)
  c.augment.simclr_blur = False
  c.batch_size = PROBE_BATCH
  c.unlabeled_ratio = images // PROBE_BATCH  # `images` images -> 2 * images views per step
  steps_per_epoch = TRAIN_IMAGES / images
  c.num_steps = int(epochs * steps_per_epoch)
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 1.0 * images / 256
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-6
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = int(round(10 * steps_per_epoch))
  c.ema_decay = 0.0
  c.feature_eval.linear_probe = True
  c.feature_eval.knn = True
  c.feature_eval.knn_k = 200
  c.feature_eval.knn_temperature = 0.07
  c.log_every = 200
  c.eval_every = 5000
  c.checkpoint_every = 5000
  c.eval_batch_size = 1024
  if args.get("smoke"):
    c.model = dict(name="cnn", width=8, projection_dim=16, stop_gradient_classifier=True)
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.optimizer.warmup_steps = 1
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 32
  return c
