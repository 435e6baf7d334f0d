"""MAE on scikit-learn's digits, CPU scale, judged by a linear probe and kNN on few labels.

  python -m sslx.main --config=experiments/mae_digits.py --workdir=runs/mae_digits

The encoder, a small ViT (2x2 patches: 16 per 8x8 digit, 4 of them visible at MAE's
mask ratio 0.75; 4x4 patches would leave one visible patch of four), learns from all
training images without labels by reconstructing the masked patches' normalised pixels
through a 2-block decoder. As in ``simclr_digits.py`` (same unlabeled batch, steps,
online probe and final evaluation, so the rows compare), the classifier is an online
linear probe on stop_gradient(features) (the class token, as MAE's linear probing), and
at the end a linear probe fit to convergence and a weighted kNN on the labeled subset
only, plus the same probe on raw pixels. The optimizer is MAE's: AdamW, lr 1.5e-4 x
batch / 256, weight decay 0.05, cosine with warm-up (optax's b2 = 0.999, MAE 0.95).
Crops keep 50-100% of the area as in ``simclr_digits.py`` (MAE: 20-100%), no flips.

Args: ``labels_per_class=N`` (default 2), ``smoke``; others are refused.
"""

import os

from sslx.config import load_config_file, parse_config_arg

_SIMCLR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_digits.py")


def get_config(arg=None):
  args = parse_config_arg(arg, ("labels_per_class", "smoke"), "mae_digits.py")
  c = load_config_file(_SIMCLR, arg)
  c.method = "mae"
  c.loss.terms = {"mae": 1.0, "supervised": 1.0}
  patch_size = 2
  c.model = dict(name="vit", patch_size=patch_size, embed_dim=64, depth=4, num_heads=4,
                 stop_gradient_classifier=True)
  c.mae.patch_size = patch_size
  c.mae.decoder_dim, c.mae.decoder_depth, c.mae.decoder_num_heads = 32, 2, 4
  c.mae.crop_scale = (0.5, 1.0)
  c.mae.flip = False
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1.5e-4 * c.batch_size * c.unlabeled_ratio / 256
  c.optimizer.weight_decay = 0.05
  if args.get("smoke"):
    c.model = dict(name="vit", patch_size=patch_size, embed_dim=16, depth=1, num_heads=2,
                   stop_gradient_classifier=True)
    c.mae.decoder_dim, c.mae.decoder_depth, c.mae.decoder_num_heads = 16, 1, 2
  return c
