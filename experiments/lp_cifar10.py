"""Deep label propagation (Iscen et al., CVPR 2019) on CIFAR-10, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/lp_cifar10.py --workdir=runs/lp_cifar10_4000
  python -m sslx.main --config=experiments/lp_cifar10.py:labels=1000,split_seed=1 \\
      --workdir=runs/lp_cifar10_1000_seed1

Args (after the colon, comma-separated): ``labels=N`` (default 4000; the paper reports
500, 1000, 2000 and 4000), ``split_seed=N`` (which labeled subset), ``smoke`` (a tiny CNN on a few steps, for
tests).

Should approach Iscen, Tolias, Avrithis, Chum, "Label Propagation for Deep
Semi-supervised Learning", CVPR 2019 (arXiv:1904.04717), Table 2, CIFAR-10 with 4000
labels: **12.69 +- 0.29 % error** for LP alone (87.3% accuracy; 10.61% combined with
Mean Teacher), 22.02% with 1000 labels, 32.40% with 500.

The recipe (paper Sec. 3-4; official code ahmetius/LP-DeepSSL): first train on the
labeled images only (stage 1), then iterate: embed the whole training set with the
current network (L2-normalised features), build the kNN graph (k = 50, edge weights
``sim ** 3``), propagate with alpha = 0.99 by conjugate gradient, class-size-normalised
scores, pseudo-label every unlabeled image with its arg-max, weight it by its certainty
``1 - H(scores) / log C`` and its class by inverse class frequency, and train on the
labeled and weighted pseudo-labeled images (stage 2). The official stage 2 uses batches
of 100 images (50 labeled), SGD with Nesterov momentum 0.9, lr 0.05 with a cosine
ramp-down, and rebuilds the graph once per epoch; weak augmentation (flip + 2-pixel
translation).

Here, in one run: ``deep_lp.start_step`` supervised-only steps (stage 1) followed by
the ``deep_lp`` term (stage 2), the graph rebuilt every ``deep_lp.refresh_every`` steps
(once per epoch of the 50,000-image pool: 1041 steps of 48 labeled + 48 unlabeled
images, the official 50 + 50 rounded to split across 8 or 16 devices); EMA parameters
for evaluation. Differences from the paper: the network is WRN-28-2
(1.47M parameters, the FixMatch backbone) rather than the paper's 13-layer ConvNet, so
the number is a reference point, not an exact target; the labeled subset is drawn by
``sslx.data.balanced_labeled_indices``, not the official split files; the two stages
share one cosine schedule rather than restarting it; stage 1 also samples (and ignores)
an unlabeled batch, as every step of this trainer has one shape.

Cost (4000 labels): 15,000 stage-1 steps plus 180 epochs of stage 2, about 202,000
steps of 96 images and 180 graph rebuilds over 50,000 images (each an exact
50,000-point kNN scan).
"""

from sslx.config import base_config, number_arg, parse_config_arg, positive_int_arg

_ARGS = ("labels", "split_seed", "smoke")
PAPER_ERROR_RATES = {500: (32.40, 1.80), 1000: (22.02, 0.88), 2000: (15.66, 0.35),
                     4000: (12.69, 0.29)}


def get_config(arg=None):
  args = parse_config_arg(arg, _ARGS, "lp_cifar10.py")
  labels = positive_int_arg(args, "labels", 4000, source="lp_cifar10.py",
                            hint=" (500..4000 in the paper)")

  steps_per_epoch = 50_000 // 48  # the unlabeled pool at 48 images per step
  c = base_config()
  c.method = "deep_lp"
  c.data.name = "cifar10"
  c.data.num_labels = labels
  c.data.split_seed = number_arg(args, "split_seed", 0, source="lp_cifar10.py", low=0, integer=True)
  c.data.unlabeled_pool = "all"  # the paper propagates over the whole training set
  c.model = dict(name="wrn28_2")
  c.loss.terms = {"supervised": 1.0, "deep_lp": 1.0}
  c.deep_lp.k = 50
  c.deep_lp.alpha = 0.99
  c.deep_lp.gamma = 3.0
  c.deep_lp.num_iters = 20
  # Stage 1: the official 180 epochs over the labeled images (as many labeled images seen).
  c.deep_lp.start_step = 180 * labels // 48
  c.deep_lp.refresh_every = steps_per_epoch
  c.deep_lp.embed_batch_size = 1000
  c.augment.flip = True
  c.augment.translate = 2 / 32
  c.batch_size = 48  # the official 50 + 50, rounded to split across 8 or 16 devices
  c.unlabeled_ratio = 1
  c.num_steps = c.deep_lp.start_step + 180 * steps_per_epoch  # stage 2: 180 epochs
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 2e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0
  c.ema_decay = 0.999
  c.log_every = 1000
  c.eval_every = 10 * steps_per_epoch
  c.checkpoint_every = 10 * steps_per_epoch
  c.eval_batch_size = 1000
  if args.get("smoke"):
    c.data.num_labels = 20  # 2 per class: tfds's mock data has >= 3 per class
    c.model = dict(name="cnn", width=8)
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.deep_lp.k = 5
    c.deep_lp.start_step = 2
    c.deep_lp.refresh_every = 2
    c.deep_lp.embed_batch_size = 64
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 32
  return c
