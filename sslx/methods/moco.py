"""MoCo v3 (Chen, Xie & He, ICCV 2021): queries from a predictor, keys from a momentum encoder.

Two views ``x_1, x_2`` of each unlabeled image go through the shared online encoder +
projection head (sslx's one forward pass) and a predictor MLP ``q`` (an extra module of
this method, trained with the model); a momentum encoder ``f_k`` (encoder + projection
head, a target tree of this method, ``state.method_params['moco']['momentum_encoder']``)
embeds both views as keys. The loss is the symmetric InfoNCE of
:func:`sslx.losses.moco_infonce`, in-batch negatives, scaled by ``2T``::

  L = ctr(q(f(x_1)), f_k(x_2)) + ctr(q(f(x_2)), f_k(x_1)),
  ctr(q, k) = 2T * CE(cos(q, k^T) / T, labels = diagonal)

Follows the official code (``facebookresearch/moco-v3``, ``moco/builder.py`` and
``main_moco.py``):

* the predictor is its ``_build_mlp(2, dim, mlp_dim, dim)``: ``Dense(hidden, no bias) ->
  BatchNorm -> ReLU -> Dense(dim, no bias) -> BatchNorm(no scale, no bias)``
  (:class:`Predictor`; ``predictor_hidden_dim`` 4096 as ``--moco-mlp-dim``);
* ``temperature`` 1.0 (``--moco-t``; the ViT recipes use 0.2);
* the momentum ``m`` goes from ``base_momentum`` 0.99 (``--moco-m``) to 1 on a half cosine
  over the run when ``cosine_momentum`` (``--moco-m-cos``, used by every published recipe)
  and stays constant otherwise; the code updates the momentum encoder at the *start* of
  each step with that step's ``m``, before computing keys. sslx updates targets after
  each step, so this method hands the trainer ``m(step + 1)``: the keys of step ``k`` come
  from exactly the official tree ``m(k) * f_k + (1 - m(k)) * f`` with ``f`` the parameters
  that step ``k`` starts from.

Where sslx differs: the projector is sslx's projection head (``model.projection_layers``
Dense layers, BN+ReLU between, a linear output with bias; the code's ends in a BatchNorm
without affine); the online network sees both views (and the labeled batch of the online
probe) in one forward pass and the momentum encoder both views in one pass, so BatchNorm
statistics span both views rather than one view at a time (as in :mod:`sslx.methods.byol`).
The encoder, not the momentum encoder, is
what the linear probe and kNN evaluate (the official ``main_lincls.py`` does the same).

``queue_size > 0`` turns on the queue of MoCo v1/v2 (He et al., CVPR 2020; Chen et al.
2020; ``facebookresearch/moco``): each query's negatives are the ``queue_size`` keys of
earlier steps instead of the other keys of the batch, with v2's loss
(:func:`sslx.losses.moco_v2_infonce`: no ``2T`` factor; v2 uses ``temperature`` 0.2 and a
constant momentum 0.999). Predictor and symmetric loss stay (a v3/v2 hybrid, as
solo-learn's ``mocov2plus`` symmetrises v2), and as there the queue is kept per view
(``state.method_state['moco']['queue']``, ``[2, K, dim]``): query 1 meets key 2 and view
2's queue, and each view's keys are enqueued after the loss. The queue starts as random
unit vectors (as the official ``randn`` + normalize, from a fixed key) and, under sslx's
jit over the mesh, is replicated and updated with the global batch of keys, so it is
identical on every device by construction (:func:`moco_enqueue` does the same inside
``shard_map`` via ``axis_name``). ``queue_size`` must be at least the global batch of
unlabeled images.

Diagnostics: ``accuracy`` (the fraction of queries whose own key is the most similar,
both directions) and ``momentum``.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.momentum_contrast import (moco_enqueue, moco_infonce, moco_logits,
                                           moco_v2_infonce)
from sslx.methods.base import Context, Extra, Method, TWO_VIEWS, Target, register, two_views
from sslx.methods.checks import boolean, check, integer, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    temperature=1.0,  # --moco-t (ResNet recipes 1.0, ViT 0.2)
    base_momentum=0.99,  # --moco-m
    cosine_momentum=True,  # --moco-m-cos: m -> 1 on a half cosine over the run
    predictor_hidden_dim=4096,  # --moco-mlp-dim
    views="simclr",  # 'simclr': two SimCLR views; 'strong': two RandAugment views
    queue_size=0,  # > 0: MoCo v2's queue of negatives (v2: 65536), per view
))

_VIEW_PAIRS = TWO_VIEWS


class Predictor(nn.Module):
  """MoCo v3's 2-layer predictor; its output BatchNorm has no scale or bias."""
  hidden_dim: int
  out_dim: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Dense(self.hidden_dim, use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = nn.Dense(self.out_dim, use_bias=False)(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, use_scale=False,
                        use_bias=False)(x)


def momentum(step, num_steps: int, base: float, cosine: bool = True):
  """MoCo v3's ``adjust_moco_momentum``: ``1 - (1 - base) * (1 + cos(pi t / T)) / 2`` (cosine)
  or ``base``."""
  if not cosine:
    return jnp.full((), base, jnp.float32)
  return 1.0 - (1.0 - base) * (1.0 + jnp.cos(math.pi * step / num_steps)) / 2.0


def init_state(options, info):
  if not options.queue_size:
    return {}
  queue = jax.random.normal(jax.random.key(0), (2, options.queue_size, info.projection_dim))
  return {"queue": queue / jnp.linalg.norm(queue, axis=-1, keepdims=True),
          "pointer": jnp.zeros((), jnp.int32)}


def moco_method_loss(ctx: Context):
  o = ctx.options
  first, second = _VIEW_PAIRS[o.views]
  q1 = ctx.extra("predictor", ctx.outputs[first]["projection"])
  q2 = ctx.extra("predictor", ctx.outputs[second]["projection"])
  n = ctx.images[first].shape[0]
  keys = ctx.forward(jnp.concatenate([ctx.images[first], ctx.images[second]]),
                     params="momentum_encoder", train=True)["projection"]
  k1, k2 = keys[:n], keys[n:]
  m = momentum(ctx.step, ctx.num_steps, o.base_momentum, o.cosine_momentum)
  if not o.queue_size:
    loss = (moco_infonce(q1, k2, temperature=o.temperature)
            + moco_infonce(q2, k1, temperature=o.temperature))
    hits = []
    for q, k in ((q1, k2), (q2, k1)):
      logits, positive = moco_logits(jax.lax.stop_gradient(q), k)
      hits.append(jnp.argmax(logits, axis=-1) == positive)
    accuracy = jnp.mean(jnp.concatenate(hits).astype(jnp.float32))
    return loss, {"accuracy": accuracy, "momentum": m}
  if o.queue_size < n:  # static shapes: raised when the step is traced, before training
    raise ValueError(f"moco.queue_size ({o.queue_size}) must be at least the unlabeled batch "
                     f"({n} images), the keys one step enqueues per view")
  queue = ctx.state["queue"]
  loss = (moco_v2_infonce(q1, k2, queue[1], temperature=o.temperature)
          + moco_v2_infonce(q2, k1, queue[0], temperature=o.temperature))
  hits = []
  unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  for q, k, negatives in ((q1, k2, queue[1]), (q2, k1, queue[0])):
    u, v = unit(jax.lax.stop_gradient(q)), unit(k)
    hits.append(jnp.sum(u * v, -1) > jnp.max(u @ negatives.T, -1))  # beats every queued key
  accuracy = jnp.mean(jnp.concatenate(hits).astype(jnp.float32))
  new_queue = []
  for view, k in enumerate((k1, k2)):
    queue_v, pointer = moco_enqueue(queue[view], ctx.state["pointer"], k)
    new_queue.append(queue_v)
  state = {"queue": jnp.stack(new_queue), "pointer": pointer}
  return loss, {"accuracy": accuracy, "momentum": m}, state


def option_errors(options) -> list[str]:
  return check("moco", options, {
      "temperature": number(0, low_open=True),
      "base_momentum": number(0, 1),
      "cosine_momentum": boolean(),
      "predictor_hidden_dim": integer(1),
      "queue_size": integer(0, hint="0: no queue"),
      "views": one_of(*_VIEW_PAIRS),
  })


METHOD = register(Method(
    name="moco", loss=moco_method_loss, options=OPTIONS, option_errors=option_errors,
    views=two_views, needs_projection=True, init_state=init_state,
    extras=lambda options, info: {"predictor": Extra(
        Predictor(options.predictor_hidden_dim, info.projection_dim), input="projection")},
    # m(step + 1): the official code updates at the start of a step, sslx after the previous.
    targets=lambda options: {"momentum_encoder": Target(momentum=lambda step, n: momentum(
        step + 1, n, options.base_momentum, options.cosine_momentum))}))
