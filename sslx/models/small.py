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
                  name=f'conv{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, dtype=self.dtype, name=f'bn{i}')(x)
      x = nn.relu(x)
    return jnp.mean(x, axis=(1, 2))
