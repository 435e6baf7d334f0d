"""SimCLR on ImageNet (ResNet-50, batch 4096, 100 epochs), for a TPU pod slice or GPU hosts.

  python -m sslx.main --config=experiments/simclr_imagenet.py \\
      --config.data.data_dir=gs://BUCKET/tensorflow_datasets --workdir=gs://BUCKET/runs/simclr_in1k

ImageNet does not fit in accelerator memory, so it streams through grain from
``tfds.data_source`` (``data.streaming=True``; the tfds copy must be prepared as
array_record, see README). Run the same command on every host of a multi-host slice.

Args (after the colon, comma-separated): ``epochs=N`` (default 100), ``images=N``
(images per step, two views each; default 4096, a multiple of 256), ``smoke`` (a tiny
CNN on 32x32 crops for a few steps, for tests).

Should reproduce the official SimCLR ImageNet recipe (Chen et al., "A Simple Framework
for Contrastive Learning of Visual Representations", ICML 2020, arXiv:2002.05709,
Sec. 2.3 / App. B; the official README's pretraining command): ResNet-50, batch 4096,
100 epochs, for which the official README quotes **about 64.5% top-1** for a linear head
trained on the frozen encoder (the paper's headline 69.3% is 1000 epochs, Table 6).

The recipe: ResNet-50 with the ImageNet stem, 224x224 views; two SimCLR views per image:
random-resized crop (area 0.08-1, aspect 3/4-4/3) + flip, colour distortion of strength
1.0, Gaussian blur (p = 0.5, sigma 0.1-2.0); a 2-layer projection MLP (2048 -> 2048 ->
128); NT-Xent with temperature 0.1 over the global batch; LARS with momentum 0.9, weight
decay 1e-6, BatchNorm and biases excluded from decay and trust-ratio scaling; learning
rate 0.3 * 4096 / 256 = 4.8 with 10 warmup epochs, then cosine decay; no EMA.

Evaluation: the online linear probe on ``stop_gradient(features)`` (the ``supervised``
term on a labeled batch of 256 images from the same stream), logged as
``test/accuracy`` on the 50,000 validation images. SimCLR's own figure is a separate
linear-evaluation run (90 epochs of SGD on the frozen encoder); the online probe is
usually a little below it. The end-of-run feature evaluation (L-BFGS probe, kNN) needs
the whole training set as arrays and is off for streamed data.

Known deviation: the streaming pipeline already takes an Inception random-resized crop
on the host (area 0.08-1), and the SimCLR views crop that crop again on the device, so
the views' crops are smaller and more correlated than SimCLR's (two crops of the full
image). A host-side plain resize for contrastive runs needs a data-layer option.
"""

from sslx.config import base_config, parse_config_arg, positive_int_arg

_ARGS = ("epochs", "images", "smoke")
TRAIN_IMAGES = 1_281_167
PROBE_BATCH = 256  # labeled images per step for the online linear probe


def get_config(arg=None):
  source = "simclr_imagenet.py"
  args = parse_config_arg(arg, _ARGS, source)
  images = positive_int_arg(args, "images", 4096, source=source, multiple_of=PROBE_BATCH)
  epochs = positive_int_arg(args, "epochs", 100, source=source)

  c = base_config()
  c.method = "simclr"
  c.data.name = "imagenet2012"
  c.data.streaming = True
  c.data.image_size = 224
  c.data.num_labels = -1  # the online probe sees every label
  c.data.unlabeled_pool = "all"
  c.data.worker_count = 8  # grain worker processes per host decoding JPEGs
  c.model = dict(name="resnet50", stem="imagenet", projection_dim=128, projection_layers=2,
                 stop_gradient_classifier=True)
  c.loss.terms = {"nt_xent": 1.0, "supervised": 1.0}  # supervised = online probe only
  c.nt_xent.temperature = 0.1
  c.nt_xent.views = "simclr"
  c.augment.flip = True
  c.augment.translate = 0.0  # the probe's images are already random-resized crops
  c.augment.simclr_strength = 1.0
  c.augment.simclr_crop_scale = (0.08, 1.0)
  c.augment.simclr_blur = True
  c.batch_size = PROBE_BATCH
  c.unlabeled_ratio = images // PROBE_BATCH  # 4096 images -> 8192 views per step
  steps_per_epoch = TRAIN_IMAGES / images
  c.num_steps = int(epochs * steps_per_epoch)
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3 * images / 256
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-6
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = int(round(10 * steps_per_epoch))
  c.ema_decay = 0.0
  c.feature_eval.linear_probe = False
  c.feature_eval.knn = False
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 1000
  c.eval_batch_size = 1024
  if args.get("smoke"):
    c.data.image_size = 32
    c.data.worker_count = 0
    c.data.read_threads = 2
    c.model = dict(name="cnn", width=8, projection_dim=16, stop_gradient_classifier=True)
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.optimizer.warmup_steps = 1
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 32
  return c
