"""MAE on CIFAR-10 (ViT-Small, 4x4 patches), solo-learn's recipe, for a GPU/TPU VM.

  python -m sslx.main --config=experiments/mae_cifar10.py --workdir=runs/mae_cifar10

Args (after the colon, comma-separated): ``images=N`` (images per step; default 256; a
multiple of 64), ``epochs=N`` (default 1000), ``smoke`` (a tiny ViT on a few steps, for
tests).

The MAE paper (He et al., CVPR 2022) and its code (``facebookresearch/mae``) give
ImageNet recipes only; this is solo-learn's CIFAR adaptation
(``scripts/pretrain/cifar/mae.yaml`` + ``augmentations/reconstruction.yaml``), for which
we have not found a published CIFAR-10 accuracy, so no target number is claimed here.
ViT-Small (384-d, 12 blocks, 6 heads) on 32x32 images in 4x4 patches (64 patches, 16
visible at mask ratio 0.75); MAE's decoder (512-d, 8 blocks, 16 heads); per-patch
normalised pixel targets; AdamW (weight decay 0.05) at learning rate 2e-4 for batch 256
(scaled linearly with ``images``), 10 warm-up epochs then cosine, 1000 epochs; crops of
area 0.08-1 with flips, no colour augmentation.

Where sslx differs: optax's AdamW uses b2 = 0.999 (the recipe's betas are (0.9, 0.95));
crops are bilinear. Evaluation as ``simclr_cifar10.py``: an online linear probe on
stop_gradient(class token) (labeled batch 64), then a converged linear probe and a
weighted kNN (k = 200, T = 0.07) on all 50,000 training images.
"""

from sslx.config import base_config, parse_config_arg, positive_int_arg

_ARGS = ("images", "epochs", "smoke")
TRAIN_IMAGES = 50_000
PROBE_BATCH = 64  # labeled images per step for the online linear probe


def get_config(arg=None):
  source = "mae_cifar10.py"
  args = parse_config_arg(arg, _ARGS, source)
  images = positive_int_arg(args, "images", 256, source=source, multiple_of=PROBE_BATCH)
  epochs = positive_int_arg(args, "epochs", 1000, source=source)

  c = base_config()
  c.method = "mae"
  c.data.name = "cifar10"
  c.data.num_labels = -1  # linear evaluation uses every training label
  c.data.unlabeled_pool = "all"
  c.model = dict(name="vit", patch_size=4, embed_dim=384, depth=12, num_heads=6,
                 stop_gradient_classifier=True)
  c.loss.terms = {"mae": 1.0, "supervised": 1.0}  # supervised = online probe only
  c.mae.patch_size = 4
  c.mae.mask_ratio = 0.75
  c.mae.norm_pix_loss = True
  c.mae.decoder_dim, c.mae.decoder_depth, c.mae.decoder_num_heads = 512, 8, 16
  c.mae.crop_scale = (0.08, 1.0)
  c.mae.flip = True
  c.augment.flip = True
  c.augment.translate = 0.125  # the online probe's weak view
  c.batch_size = PROBE_BATCH
  c.unlabeled_ratio = images // PROBE_BATCH
  steps_per_epoch = TRAIN_IMAGES / images
  c.num_steps = int(epochs * steps_per_epoch)
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-4 * images / 256
  c.optimizer.weight_decay = 0.05
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
    c.model = dict(name="vit", patch_size=4, embed_dim=16, depth=1, num_heads=2,
                   stop_gradient_classifier=True)
    c.mae.decoder_dim, c.mae.decoder_depth, c.mae.decoder_num_heads = 16, 1, 2
    c.num_steps = 4
    c.batch_size = 8
    c.unlabeled_ratio = 2
    c.optimizer.warmup_steps = 1
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval_batch_size = 32
  return c
