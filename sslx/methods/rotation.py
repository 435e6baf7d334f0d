"""Rotation prediction (Gidaris et al., ICLR 2018, "RotNet"): predict which of 0/90/180/270
degrees an image was turned by.

The pretext task the self-supervised literature starts from, and the smallest example
of a method that brings its own augmentation *with targets* and its own head:

* augmentation ``rotate4``: the weak augmentation (``config.augment``), then all four
  rotations of every image, as the official RotNet code feeds each batch (``[4B, H, W,
  C]``), returned with their rotation indices ``[4B]`` as targets;
* extra module ``head``: a classifier over 4 rotations on the encoder's features
  (``head_hidden_dim > 0``: one hidden layer with BatchNorm and ReLU; 0: linear);
* loss: cross-entropy of the head's prediction against the rotation index.

Differences from the official code: the paper's heads sit on intermediate convolutional
blocks of a Network-In-Network; here the head reads the encoder's pooled features, the
same features every sslx probe evaluates.
Diagnostics: rotation accuracy.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.classification import accuracy, cross_entropy
from sslx.methods.base import Context, Extra, Method, View, register
from sslx.methods.checks import check, integer

OPTIONS = ml_collections.ConfigDict(dict(
    head_hidden_dim=0,  # 0: a linear head on the features
))

NUM_ROTATIONS = 4


def rotate4(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``[B, H, W, C] -> ([4B, H, W, C], [4B])``: each image at 0, 90, 180, 270 degrees."""
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"rotation prediction needs square images [B, H, H, C], got shape "
                     f"{images.shape}")
  rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)])
  labels = jnp.repeat(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), images.shape[0])
  return rotated, labels


class RotationHead(nn.Module):
  """Logits over the four rotations."""
  hidden_dim: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.hidden_dim:
      x = nn.Dense(self.hidden_dim)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    return nn.Dense(NUM_ROTATIONS)(x)


def _augmentations(augment_cfg, options):
  del options
  from sslx.augment.weak import weak
  return {"rotate4": lambda key, images: rotate4(
      weak(key, images, flip=augment_cfg.flip, translate=augment_cfg.translate))}


def rotation_loss(ctx: Context):
  logits = ctx.extra("head", ctx.outputs["unlabeled_rotated"]["features"])
  labels = ctx.targets["unlabeled_rotated"]
  return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}


def option_errors(options) -> list[str]:
  return check("rotation", options, {"head_hidden_dim": integer(0)})


METHOD = register(Method(
    name="rotation", loss=rotation_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_rotated": View("unlabeled", "rotate4")},
    augmentations=_augmentations,
    extras=lambda options, info: {"head": Extra(RotationHead(options.head_hidden_dim),
                                                input="features")}))
