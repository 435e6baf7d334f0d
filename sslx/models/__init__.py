"""The sslx model zoo: encoders plus classifier and projection heads.

Every model is built by :func:`create_model` and called as::

  variables = model.init(key, images, train=False)       # {'params'[, 'batch_stats']}
  outputs, updates = model.apply(variables, images, train=True,
                                 mutable=['batch_stats'])  # BN models in training
  outputs = model.apply(variables, images, train=False)

``outputs`` is ``{'logits': [batch, num_classes], 'features': [batch, feature_dim]}``
plus ``'projection': [batch, projection_dim]`` when ``projection_dim > 0``.

=============  ==========================================  ============
name           encoder                                     feature_dim
=============  ==========================================  ============
``mlp``        :class:`~sslx.models.small.MLP`              256
``cnn``        :class:`~sslx.models.small.SmallCNN`         128
``convnet``    :class:`~sslx.models.small.ConvNet`          ``widths[-1]`` (256)
``wrn28_2``    :class:`~sslx.models.wide_resnet.WideResNet` 128
``wrn28_8``    WideResNet, width 8                          512
``wide_resnet`` WideResNet, ``depth``/``width`` kwargs      64 * width
``resnet18``   :class:`~sslx.models.resnet.ResNet`          512
``resnet50``   ResNet, bottleneck blocks                    2048
``vit``        :class:`~sslx.models.vit.ViT` (pre-norm,     ``embed_dim`` (192)
               sin-cos or learned positions, cls or gap)
=============  ==========================================  ============
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslx.models.heads import EncoderWithHeads
from sslx.models.heads import ProjectionHead
from sslx.models.resnet import ResNet
from sslx.models.small import ConvNet
from sslx.models.small import MLP
from sslx.models.small import SmallCNN
from sslx.models.vit import ViT
from sslx.models.wide_resnet import WideResNet

# name -> (encoder class, attributes the name fixes).
_ENCODERS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    'mlp': (MLP, {}),
    'cnn': (SmallCNN, {}),
    'convnet': (ConvNet, {}),
    'wrn28_2': (WideResNet, {'depth': 28, 'width': 2}),
    'wrn28_8': (WideResNet, {'depth': 28, 'width': 8}),
    'wide_resnet': (WideResNet, {}),
    'resnet18': (ResNet, {'stage_sizes': (2, 2, 2, 2), 'block': 'basic'}),
    'resnet50': (ResNet, {'stage_sizes': (3, 4, 6, 3), 'block': 'bottleneck'}),
    'vit': (ViT, {}),
}

MODEL_NAMES: tuple[str, ...] = tuple(_ENCODERS)

_NOT_KWARGS = frozenset({'parent', 'name', 'dtype'})


def create_model(
    name: str,
    *,
    num_classes: int,
    projection_dim: int = 0,
    projection_hidden_dim: int = 0,
    projection_layers: int = 2,
    stop_gradient_classifier: bool = False,
    dtype: Any = jnp.float32,
    **model_kwargs: Any,
) -> nn.Module:
  """Builds a model from the zoo by name.

  Args:
    name: one of :data:`MODEL_NAMES`.
    num_classes: number of classifier outputs, >= 1.
    projection_dim: if > 0, add a SimCLR projection head with this output size.
    projection_hidden_dim: hidden width of the projection head; 0 means the
      encoder's feature dimension.
    projection_layers: Dense layers in the projection head (2: SimCLR v1, 3: v2).
    stop_gradient_classifier: compute the logits from ``stop_gradient(features)``
      (an online linear probe, as in SimCLR).
    dtype: compute dtype (e.g. ``jnp.bfloat16`` on GPU/TPU). Parameters and all
      outputs stay float32.
    **model_kwargs: attributes of the encoder, e.g. ``hidden_dims`` (mlp),
      ``width`` (cnn, wide_resnet), ``depth`` (wide_resnet), ``stem``
      (``'cifar'`` or ``'imagenet'``, resnets), ``bn_momentum``.

  Returns:
    An :class:`~sslx.models.heads.EncoderWithHeads` module; its parameters are
    ``{'encoder', 'classifier'[, 'projection_head']}``.

  Raises:
    ValueError: unknown ``name`` or encoder kwarg, or an out-of-range argument.

  Example:
    >>> model = create_model('wrn28_2', num_classes=10)
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> model.apply(variables, x, train=False)['logits'].shape
    (2, 10)
  """
  if name not in _ENCODERS:
    raise ValueError(f'Unknown model name {name!r}; known names: {", ".join(MODEL_NAMES)}.')
  if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
    raise ValueError(f'`num_classes` must be a positive int, got {num_classes!r}.')
  if projection_dim < 0:
    raise ValueError(f'`projection_dim` must be >= 0 (0: no head), got {projection_dim}.')
  if projection_hidden_dim < 0:
    raise ValueError(
        f'`projection_hidden_dim` must be >= 0 (0: feature dim), got {projection_hidden_dim}.')
  if projection_layers < 1:
    raise ValueError(f'`projection_layers` must be >= 1, got {projection_layers}.')

  encoder_cls, fixed = _ENCODERS[name]
  allowed = sorted({f.name for f in dataclasses.fields(encoder_cls)} - _NOT_KWARGS - set(fixed))
  unknown = sorted(set(model_kwargs) - set(allowed))
  if unknown:
    fixed_note = f' ({name!r} fixes {sorted(fixed)})' if set(unknown) & set(fixed) else ''
    raise ValueError(
        f'Unknown keyword argument(s) {unknown} for model {name!r}{fixed_note}; '
        f'allowed: {allowed}.')

  encoder = encoder_cls(**fixed, **model_kwargs, dtype=dtype)
  classifier_kernel_init = (nn.initializers.xavier_normal() if encoder_cls is WideResNet
                            else nn.initializers.lecun_normal())
  return EncoderWithHeads(
      encoder=encoder,
      num_classes=num_classes,
      projection_dim=projection_dim,
      projection_hidden_dim=projection_hidden_dim,
      projection_layers=projection_layers,
      stop_gradient_classifier=stop_gradient_classifier,
      classifier_kernel_init=classifier_kernel_init,
      dtype=dtype)


def count_params(params: Any) -> int:
  """Number of scalars in a pytree of arrays (or ``jax.ShapeDtypeStruct``\\ s).

  Pass ``variables['params']`` to leave BatchNorm running statistics out.

  Example:
    >>> model = create_model('mlp', num_classes=10, hidden_dims=(32,))
    >>> shapes = jax.eval_shape(model.init, jax.random.key(0),
    ...                         jnp.zeros((1, 8, 8, 1)), train=False)
    >>> count_params(shapes['params'])  # 64 * 32 + 32 + 32 * 10 + 10
    2410
  """
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


__all__ = [
    'ConvNet',
    'EncoderWithHeads',
    'MLP',
    'MODEL_NAMES',
    'ProjectionHead',
    'ResNet',
    'SmallCNN',
    'ViT',
    'WideResNet',
    'count_params',
    'create_model',
]
