"""WideResNet as FixMatch uses it (WRN-28-2 for CIFAR-10/SVHN, WRN-28-8 for CIFAR-100).

Follows the official FixMatch/MixMatch code (google-research/fixmatch,
``libml/models.py``, class ``ResNet``), which USB/TorchSSL re-implement:

* stem: 3x3 conv to 16 channels;
* three groups of ``(depth - 4) / 6`` pre-activation basic blocks with
  ``16 * width``, ``32 * width``, ``64 * width`` channels, strides 1, 2, 2;
  a block is ``BN -> LeakyReLU -> conv3x3(stride) -> BN -> LeakyReLU -> conv3x3``
  plus a shortcut, a 1x1 conv (with the block's stride) when the channel count or
  resolution changes;
* in the first group's first block the shortcut is taken *after* the first
  BN + LeakyReLU ("activate before residual"); elsewhere it takes the raw input;
* final ``BN -> LeakyReLU -> global average pool`` gives the features;
* LeakyReLU slope 0.1; BatchNorm running-average decay 0.999 and epsilon 1e-3
  (TF ``batch_normalization(momentum=0.999)`` with its default epsilon, USB's
  ``BatchNorm2d(momentum=0.001, eps=0.001)``);
* convs have biases (TF ``conv2d`` default, USB ``bias=True``), kernels drawn from
  ``N(0, 2 / (k * k * out_channels))`` (He/Kaiming normal, fan-out), 'SAME'
  padding as in TF.

The classifier (Xavier/Glorot-normal kernel, as in FixMatch) is added by
:class:`sslx.models.heads.EncoderWithHeads`. WRN-28-2 with 10 classes has
1,469,642 parameters and WRN-28-8 with 100 classes 23,409,092, the counts of the
FixMatch TF model and of USB's ``wrn_28_2``/``wrn_28_8`` (bias-free convs, as in
older TorchSSL, would give 1,467,610 and 23,401,012). BN running statistics are
not parameters.

Reference: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016,
arXiv:1605.07146; Sohn et al., "FixMatch", NeurIPS 2020, arXiv:2001.07685.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslx.models import conv as conv_lib
from sslx.models.heads import require_image_batch

Dtype = Any

# N(0, 2 / fan_out), not truncated: FixMatch's random_normal(stddev=rsqrt(0.5*k*k*f)).
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class WideResNetBlock(nn.Module):
  """One pre-activation basic block (see the module docstring)."""

  features: int
  strides: int = 1
  activate_before_residual: bool = False
  leaky_relu_slope: float = 0.1
  bn_momentum: float = 0.999
  bn_epsilon: float = 1e-3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                             dtype=self.dtype)
    conv = functools.partial(nn.Conv, padding='SAME', kernel_init=conv_kernel_init,
                             conv_general_dilated=conv_lib.conv_general_dilated,
                             dtype=self.dtype)
    act = functools.partial(nn.leaky_relu, negative_slope=self.leaky_relu_slope)

    y = act(norm(name='bn1')(x))
    shortcut = y if self.activate_before_residual else x
    y = conv(self.features, (3, 3), strides=self.strides, name='conv1')(y)
    y = act(norm(name='bn2')(y))
    y = conv(self.features, (3, 3), name='conv2')(y)
    if x.shape[-1] != self.features or self.strides != 1:
      shortcut = conv(self.features, (1, 1), strides=self.strides, name='shortcut')(shortcut)
    return shortcut + y


class WideResNet(nn.Module):
  """WRN-``depth``-``width`` encoder returning pooled features ``[batch, 64 * width]``.

  Attributes:
    depth: total depth, ``6 * n + 4`` with ``n >= 1`` blocks per group (28 -> 4).
    width: widening factor ``k`` (2 for WRN-28-2, 8 for WRN-28-8).
    leaky_relu_slope: negative slope of the LeakyReLU (0.1 in FixMatch).
    bn_momentum: decay of the BatchNorm running averages (0.999 in FixMatch).
    bn_epsilon: BatchNorm epsilon (1e-3, TF's default used by FixMatch).
    dtype: compute dtype; parameters are float32.

  Example:
    >>> wrn = WideResNet(depth=28, width=2)
    >>> x = jnp.ones((2, 32, 32, 3))
    >>> variables = wrn.init(jax.random.key(0), x, train=False)
    >>> wrn.apply(variables, x, train=False).shape
    (2, 128)
  """

  depth: int = 28
  width: int = 2
  leaky_relu_slope: float = 0.1
  bn_momentum: float = 0.999
  bn_epsilon: float = 1e-3
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    if self.depth < 10 or (self.depth - 4) % 6 != 0:
      raise ValueError(
          f'WideResNet: `depth` must be 6 * n + 4 with n >= 1 (10, 16, 22, 28, ...), '
          f'got {self.depth}.')
    if self.width < 1:
      raise ValueError(f'WideResNet: `width` must be >= 1, got {self.width}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    require_image_batch(images, model='WideResNet')
    blocks_per_group = (self.depth - 4) // 6
    block = functools.partial(
        WideResNetBlock, leaky_relu_slope=self.leaky_relu_slope,
        bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=self.dtype)

    x = images.astype(self.dtype)
    x = nn.Conv(16, (3, 3), padding='SAME', kernel_init=conv_kernel_init,
                conv_general_dilated=conv_lib.conv_general_dilated,
                dtype=self.dtype, name='stem')(x)
    for group, channels in enumerate((16 * self.width, 32 * self.width, 64 * self.width)):
      for i in range(blocks_per_group):
        x = block(features=channels,
                  strides=2 if (group > 0 and i == 0) else 1,
                  activate_before_residual=(group == 0 and i == 0),
                  name=f'group{group}_block{i}')(x, train=train)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype, name='final_bn')(x)
    x = nn.leaky_relu(x, negative_slope=self.leaky_relu_slope)
    return jnp.mean(x, axis=(1, 2))
