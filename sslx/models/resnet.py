"""ResNet-18 / ResNet-50 encoders with a CIFAR or an ImageNet stem.

The architecture is torchvision's (``torchvision.models.resnet``), i.e. ResNet v1.5:

* ``stem='imagenet'``: 7x7 conv stride 2 -> BN -> ReLU -> 3x3 max-pool stride 2;
* ``stem='cifar'``: 3x3 conv stride 1 -> BN -> ReLU, no max-pool (the stem used
  for 32x32 images by SimCLR's CIFAR experiments and most SSL code bases);
* four stages with ``width * (1, 2, 4, 8)`` channels, strides 1, 2, 2, 2;
  basic blocks (two 3x3 convs) for ResNet-18, bottleneck blocks
  (1x1 -> 3x3 with the stride -> 1x1 expanding 4x) for ResNet-50;
  the shortcut is a 1x1 conv + BN when the shape changes;
* convs have no bias, kernels are He-normal with fan-out (torchvision's
  ``kaiming_normal_(mode='fan_out')``), padding is torchvision's explicit padding;
* BatchNorm running-average decay 0.9 and epsilon 1e-5 (PyTorch momentum 0.1).

Global average pooling gives features of dimension 512 (ResNet-18) or 2048
(ResNet-50). With the ImageNet stem and a 1000-class classifier the parameter
counts are torchvision's: 11,689,512 (ResNet-18) and 25,557,032 (ResNet-50).

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv:1512.03385.
"""

from __future__ import annotations

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslx.models import conv as conv_lib
from sslx.models.heads import require_image_batch

Dtype = Any

STEMS = ('cifar', 'imagenet')
BLOCKS = ('basic', 'bottleneck')

conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _pad(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """PyTorch's symmetric ``padding=kernel_size // 2``."""
  p = kernel_size // 2
  return ((p, p), (p, p))


class ResNetBlock(nn.Module):
  """Basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 x4) residual block."""

  features: int
  strides: int = 1
  block: str = 'basic'
  zero_init_residual: bool = False
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                             dtype=self.dtype)
    last_norm_scale_init = (nn.initializers.zeros if self.zero_init_residual
                            else nn.initializers.ones)

    def conv(features, kernel_size, strides, name):
      return nn.Conv(features, (kernel_size, kernel_size), strides=strides,
                     conv_general_dilated=conv_lib.conv_general_dilated,
                     padding=_pad(kernel_size), use_bias=False,
                     kernel_init=conv_kernel_init, dtype=self.dtype, name=name)

    if self.block == 'basic':
      out_features = self.features
      y = nn.relu(norm(name='bn1')(conv(self.features, 3, self.strides, 'conv1')(x)))
      y = conv(self.features, 3, 1, 'conv2')(y)
      y = norm(scale_init=last_norm_scale_init, name='bn2')(y)
    else:
      out_features = 4 * self.features
      y = nn.relu(norm(name='bn1')(conv(self.features, 1, 1, 'conv1')(x)))
      y = nn.relu(norm(name='bn2')(conv(self.features, 3, self.strides, 'conv2')(y)))
      y = conv(out_features, 1, 1, 'conv3')(y)
      y = norm(scale_init=last_norm_scale_init, name='bn3')(y)

    shortcut = x
    if x.shape[-1] != out_features or self.strides != 1:
      shortcut = conv(out_features, 1, self.strides, 'shortcut_conv')(x)
      shortcut = norm(name='shortcut_bn')(shortcut)
    return nn.relu(shortcut + y)


class ResNet(nn.Module):
  """ResNet encoder returning pooled features ``[batch, feature_dim]``.

  Attributes:
    stage_sizes: blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18,
      ``(3, 4, 6, 3)`` for ResNet-50.
    block: ``'basic'`` or ``'bottleneck'``.
    stem: ``'cifar'`` (3x3 stride-1 conv, no max-pool; for 32x32 inputs) or
      ``'imagenet'`` (7x7 stride-2 conv + 3x3 stride-2 max-pool).
    width: channels of the stem and first stage (64).
    zero_init_residual: initialise the last BN scale of each block to zero
      (Goyal et al., 2017), torchvision's ``zero_init_residual``.
    bn_momentum: decay of the BatchNorm running averages (0.9, PyTorch's 0.1).
    bn_epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters are float32.

  Example:
    >>> resnet = ResNet(stage_sizes=(2, 2, 2, 2), block='basic', stem='cifar')
    >>> x = jnp.ones((2, 32, 32, 3))
    >>> variables = resnet.init(jax.random.key(0), x, train=False)
    >>> resnet.apply(variables, x, train=False).shape
    (2, 512)
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = 'basic'
  stem: str = 'cifar'
  width: int = 64
  zero_init_residual: bool = False
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    if self.stem not in STEMS:
      raise ValueError(f'ResNet: `stem` must be one of {STEMS}, got {self.stem!r}.')
    if self.block not in BLOCKS:
      raise ValueError(f'ResNet: `block` must be one of {BLOCKS}, got {self.block!r}.')
    if not self.stage_sizes or any(int(n) < 1 for n in self.stage_sizes):
      raise ValueError(
          f'ResNet: `stage_sizes` must be a non-empty sequence of positive block '
          f'counts, got {tuple(self.stage_sizes)}.')
    if self.width < 1:
      raise ValueError(f'ResNet: `width` must be >= 1, got {self.width}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    require_image_batch(images, model='ResNet')
    x = images.astype(self.dtype)
    kernel_size, strides = (3, 1) if self.stem == 'cifar' else (7, 2)
    x = nn.Conv(self.width, (kernel_size, kernel_size), strides=strides,
                conv_general_dilated=conv_lib.conv_general_dilated,
                padding=_pad(kernel_size), use_bias=False, kernel_init=conv_kernel_init,
                dtype=self.dtype, name='stem_conv')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype, name='stem_bn')(x)
    x = nn.relu(x)
    if self.stem == 'imagenet':
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    for stage, num_blocks in enumerate(self.stage_sizes):
      for i in range(int(num_blocks)):
        x = ResNetBlock(
            features=self.width * 2**stage,
            strides=2 if (stage > 0 and i == 0) else 1,
            block=self.block,
            zero_init_residual=self.zero_init_residual,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            dtype=self.dtype,
            name=f'stage{stage}_block{i}')(x, train=train)
    return jnp.mean(x, axis=(1, 2))
