"""Heads shared by every encoder: the classifier, the SimCLR projection MLP, and
the wrapper that puts them on top of an encoder.

Every model made by :func:`sslx.models.create_model` is an :class:`EncoderWithHeads`:

.. code-block:: text

    images [B, H, W, C] --encoder--> features [B, D] --Dense--> logits [B, num_classes]
                                              \\--ProjectionHead--> projection [B, projection_dim]

and returns ``{'logits', 'features'[, 'projection']}``, all float32 whatever the
compute ``dtype``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]


def require_image_batch(images: jax.Array, *, model: str) -> None:
  """Raises ``ValueError`` unless ``images`` is a float-able ``[B, H, W, C]`` batch."""
  if images.ndim != 4:
    raise ValueError(
        f'{model}: `images` must be a [batch, height, width, channels] array, '
        f'got shape {tuple(images.shape)}.')


class ProjectionHead(nn.Module):
  """The SimCLR projection MLP ``g(h)``.

  ``num_layers - 1`` hidden blocks ``Dense(hidden_dim, no bias) -> BatchNorm ->
  ReLU`` followed by a final ``Dense(projection_dim)``. ``num_layers`` counts the
  Dense layers: 2 is SimCLR v1's head, 3 is SimCLR v2's. (The official SimCLR code
  also batch-normalises the final output; this head leaves it linear, as most
  re-implementations do.)

  Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
  Representations", ICML 2020, arXiv:2002.05709, Sec. 2.1; Chen et al., "Big
  Self-Supervised Models are Strong Semi-Supervised Learners", NeurIPS 2020,
  arXiv:2006.10029, Sec. 2.2.

  Attributes:
    projection_dim: output dimension (128 in SimCLR).
    hidden_dim: width of the hidden layers; 0 means the input feature dimension.
    num_layers: number of Dense layers, >= 1 (1 makes the head linear).
    bn_momentum: decay of the BatchNorm running averages (0.9 in SimCLR).
    bn_epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters are float32.

  Example:
    >>> head = ProjectionHead(projection_dim=128)
    >>> h = jnp.ones((4, 512))
    >>> z, _ = head.apply(head.init(jax.random.key(0), h, train=False), h,
    ...                   train=True, mutable=['batch_stats'])
    >>> z.shape
    (4, 128)
  """

  projection_dim: int
  hidden_dim: int = 0
  num_layers: int = 2
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, train: bool) -> jax.Array:
    """Maps ``[batch, feature_dim]`` features to ``[batch, projection_dim]``."""
    chex.assert_rank(features, 2)
    hidden_dim = self.hidden_dim or features.shape[-1]
    x = features.astype(self.dtype)
    for i in range(self.num_layers - 1):
      x = nn.Dense(hidden_dim, use_bias=False, dtype=self.dtype, name=f'dense{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, dtype=self.dtype, name=f'bn{i}')(x)
      x = nn.relu(x)
    x = nn.Dense(self.projection_dim, dtype=self.dtype,
                 name=f'dense{self.num_layers - 1}')(x)
    return x


class EncoderWithHeads(nn.Module):
  """An encoder plus a linear classifier and an optional projection head.

  Attributes:
    encoder: a module called as ``encoder(images, train=...)`` returning pooled
      features ``[batch, feature_dim]``.
    num_classes: number of classifier outputs.
    projection_dim: if > 0, add a :class:`ProjectionHead` and return its output
      under ``'projection'``.
    projection_hidden_dim: hidden width of the projection head (0: feature_dim).
    projection_layers: Dense layers in the projection head (2: SimCLR v1, 3: v2).
    stop_gradient_classifier: compute the logits from ``stop_gradient(features)``,
      so the classifier is an online linear probe that trains without shaping
      the encoder (SimCLR's linear evaluation during pre-training).
    classifier_kernel_init: initializer of the classifier kernel.
    dtype: compute dtype of the encoder and projection head. The classifier runs
      in float32 and every output is float32.

  Returns (from ``__call__``):
    ``{'logits': [batch, num_classes], 'features': [batch, feature_dim]}`` plus
    ``'projection': [batch, projection_dim]`` when ``projection_dim > 0``.
  """

  encoder: nn.Module
  num_classes: int
  projection_dim: int = 0
  projection_hidden_dim: int = 0
  projection_layers: int = 2
  stop_gradient_classifier: bool = False
  classifier_kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
    batch_size = images.shape[0]
    features = self.encoder(images, train=train)
    chex.assert_rank(features, 2)
    chex.assert_axis_dimension(features, 0, batch_size)
    features = features.astype(jnp.float32)

    classifier_input = features
    if self.stop_gradient_classifier:
      classifier_input = jax.lax.stop_gradient(features)
    logits = nn.Dense(self.num_classes, kernel_init=self.classifier_kernel_init,
                      dtype=jnp.float32, name='classifier')(classifier_input)
    outputs = {'logits': logits, 'features': features}

    if self.projection_dim > 0:
      projection = ProjectionHead(
          projection_dim=self.projection_dim,
          hidden_dim=self.projection_hidden_dim,
          num_layers=self.projection_layers,
          dtype=self.dtype,
          name='projection_head')(features, train=train)
      outputs['projection'] = projection.astype(jnp.float32)
    return outputs
