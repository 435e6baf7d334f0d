"""Small encoders for 8x8 digits, 28x28 MNIST and tabular data.

Both return pooled features ``[batch, feature_dim]``; the classifier and optional
projection head are added by :class:`sslx.models.heads.EncoderWithHeads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslx.models import conv as conv_lib
from sslx.models.heads import require_image_batch

Dtype = Any


class MLP(nn.Module):
  """Flatten, then ``Dense -> ReLU`` for each entry of ``hidden_dims``.

  Accepts any ``[batch, ...]`` input (images are flattened, tabular rows
  ``[batch, num_features]`` pass through). Has no BatchNorm, so a bare MLP model
  has no ``'batch_stats'`` collection.

  Attributes:
    hidden_dims: widths of the hidden layers; the last one is the feature
      dimension (an empty tuple gives the flattened input as features).
    dtype: compute dtype; parameters are float32.

  Example:
    >>> mlp = MLP(hidden_dims=(64,))
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> mlp.apply(mlp.init(jax.random.key(0), x, train=False), x, train=False).shape
    (2, 64)
  """

  hidden_dims: Sequence[int] = (256, 256)
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    if any(int(h) <= 0 for h in self.hidden_dims):
      raise ValueError(
          f'MLP: `hidden_dims` must all be positive, got {tuple(self.hidden_dims)}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train  # No BatchNorm or dropout.
    if x.ndim < 2:
      raise ValueError(f'MLP: input must be [batch, ...], got shape {tuple(x.shape)}.')
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    for i, width in enumerate(self.hidden_dims):
      x = nn.relu(nn.Dense(int(width), dtype=self.dtype, name=f'dense{i}')(x))
    return x


class SmallCNN(nn.Module):
  """A small BatchNorm CNN for tiny grayscale images (8x8 digits, 28x28 MNIST).

  ``num_stages`` stages of ``Conv3x3 (no bias) -> BatchNorm -> ReLU`` with
  ``width * 2**i`` channels; every stage after the first halves the resolution
  (stride 2). Global average pooling gives features of dimension
  ``width * 2**(num_stages - 1)`` (128 with the defaults). On an 8x8 input the
  maps are 8x8, 4x4, 2x2.

  Attributes:
    width: channels of the first stage.
    num_stages: number of conv stages, >= 1.
    bn_momentum: decay of the BatchNorm running averages.
    bn_epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters are float32.

  Example:
    >>> cnn = SmallCNN(width=8)
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> cnn.apply(cnn.init(jax.random.key(0), x, train=False), x, train=False).shape
    (2, 32)
  """

  width: int = 32
  num_stages: int = 3
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    if self.width <= 0:
      raise ValueError(f'SmallCNN: `width` must be positive, got {self.width}.')
    if self.num_stages <= 0:
      raise ValueError(f'SmallCNN: `num_stages` must be positive, got {self.num_stages}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    require_image_batch(images, model='SmallCNN')
    x = images.astype(self.dtype)
    for i in range(self.num_stages):
      x = nn.Conv(self.width * 2**i, (3, 3), strides=1 if i == 0 else 2,
                  padding='SAME', use_bias=False, dtype=self.dtype,
                  kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                  conv_general_dilated=conv_lib.conv_general_dilated,
                  name=f'conv{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, dtype=self.dtype, name=f'bn{i}')(x)
      x = nn.relu(x)
    return jnp.mean(x, axis=(1, 2))


class ConvNet(nn.Module):
  """A VGG-style BatchNorm CNN for 28x28 to 64x64 images (notMNIST, MNIST, SVHN-sized).

  Stage ``i`` is ``convs_per_stage`` x ``Conv3x3 (no bias) -> BatchNorm -> ReLU`` with
  ``widths[i]`` channels; a 2x2 max-pool halves the resolution between stages. The
  first convolution has stride ``stem_stride``: 2 runs every stage at half the input
  resolution (28x28 -> 14, 7, 4 with three stages), about 4x less work than full
  resolution at little cost in accuracy on glyph-sized images (README, notMNIST
  ablation). Global average pooling gives ``[batch, widths[-1]]`` features.

  Attributes:
    widths: channels of each stage; the last is the feature dimension.
    convs_per_stage: 3x3 convolutions per stage, >= 1.
    stem_stride: stride of the first convolution (1 or 2).
    bn_momentum: decay of the BatchNorm running averages.
    bn_epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters are float32.

  Example:
    >>> net = ConvNet(widths=(8, 16))
    >>> x = jnp.ones((2, 28, 28, 1))
    >>> net.apply(net.init(jax.random.key(0), x, train=False), x, train=False).shape
    (2, 16)
  """

  widths: Sequence[int] = (64, 128, 256)
  convs_per_stage: int = 2
  stem_stride: int = 2
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    if not self.widths or any(int(w) <= 0 for w in self.widths):
      raise ValueError(
          f'ConvNet: `widths` must be a non-empty list of positive ints, got {self.widths!r}.')
    if self.convs_per_stage < 1:
      raise ValueError(
          f'ConvNet: `convs_per_stage` must be >= 1, got {self.convs_per_stage}.')
    if self.stem_stride not in (1, 2):
      raise ValueError(f'ConvNet: `stem_stride` must be 1 or 2, got {self.stem_stride}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    require_image_batch(images, model='ConvNet')
    x = images.astype(self.dtype)
    for i, width in enumerate(self.widths):
      if i > 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
      for j in range(self.convs_per_stage):
        stride = self.stem_stride if i == j == 0 else 1
        x = nn.Conv(int(width), (3, 3), strides=stride, padding='SAME', use_bias=False,
                    dtype=self.dtype,
                    kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                    conv_general_dilated=conv_lib.conv_general_dilated,
                    name=f'conv{i}_{j}')(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=self.bn_epsilon, dtype=self.dtype, name=f'bn{i}_{j}')(x)
        x = nn.relu(x)
    return jnp.mean(x, axis=(1, 2))
