"""SwAV (Caron et al., NeurIPS 2020): swapped prediction of online cluster assignments.

The l2-normalised projections ``z`` of every crop are scored against ``K`` l2-normalised
prototypes ``C`` (this method's extra module): ``s = z^T C``. For each global crop ``i``
the codes ``q_i`` are the Sinkhorn-Knopp equipartition of ``exp(s_i / epsilon)`` over the
**global** batch (3 iterations, epsilon 0.05; no gradient), and every other crop predicts
them:

.. math::
  \\ell = \\frac{1}{A} \\sum_{i < A} \\frac{1}{V - 1} \\sum_{v \\ne i}
    -\\frac{1}{B} \\sum_b q_i[b] \\cdot \\log\\mathrm{softmax}(s_v[b] / T), \\quad T = 0.1

(:func:`sslx.losses.swav_loss`). Multi-crop: the ``A = 2`` global crops and the small
local crops (``View(.., 'global_crop' | 'local_crop')``, :mod:`sslx.augment.multicrop`),
in the shared forward pass. Under sslx's jit over a device mesh the batch sums in
Sinkhorn-Knopp are global with no extra code (the official ``dist.all_reduce``).

Optionally a **queue** (``queue_size > 0``, method state) of the last embeddings of each
global crop is scored with the current prototypes and prepended to the batch before
Sinkhorn-Knopp, for small batches; it starts filling at ``queue_start_step`` and is used
once full (the official code: ``epoch_queue_starts``, used when its last row is non-zero).

Follows facebookresearch/swav ``main_swav.py`` (options default to its arguments and
its multi-crop recipe), which differs from the paper's text in: the loss is averaged
over the predicting crops and the assigned crops; the prototypes are frozen for the
first iterations (``freeze_prototypes_niters`` = 313, here ``freeze_prototypes_steps``).
Differences of sslx: the official code re-normalises the stored prototype weights
before every step; here the module normalises its weights in the forward pass (the
same scores; the gradient is projected onto the sphere's tangent rather than taken
and then projected back). Frozen prototypes get a zero gradient, but sslx's optimizer
still applies weight decay/momentum to them (the official code drops their gradient).
The official queue is one per GPU with ``queue_length / world_size`` rows; here one
global queue of ``queue_size`` rows (the same total). Crops use the SimCLR colour
recipe of ``config.augment``. Schedules are per step.

Diagnostics: the entropy of the mean code (log K when prototypes are used evenly), the
mean confidence of the codes, whether the queue is in use.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.augment.multicrop import view_names
from sslx.losses.clustering import swav_loss
from sslx.methods.base import Context, Extra, Method, View, register
from sslx.methods.checks import check, integer, number

OPTIONS = ml_collections.ConfigDict(dict(
    num_global_crops=2,  # crops the codes are computed for (official crops_for_assign [0, 1])
    num_local_crops=6,  # official multi-crop recipe nmb_crops [2, 6] (script default [2])
    num_prototypes=3000,  # official nmb_prototypes
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iterations=3,
    queue_size=0,  # rows per global crop (official queue_length 0; 3840 for small batches)
    queue_start_step=0,  # start filling the queue (official epoch_queue_starts: 15 epochs)
    freeze_prototypes_steps=313,  # prototypes get no gradient before this step (official)
))


def _normalize(x, axis=-1):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


class Prototypes(nn.Module):
  """``K`` l2-normalised prototypes: ``[batch, dim] -> [batch, K]`` scores ``x C / |C|``.

  Bias-free and linear in ``x`` (zero at zero), which :func:`swav_method_loss` uses to
  freeze them. ``C`` has torch's Linear default initialisation, as the official code.
  """
  num_prototypes: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    bound = 1.0 / math.sqrt(x.shape[-1])
    c = self.param("prototypes", lambda k, s: jax.random.uniform(k, s, jnp.float32, -bound, bound),
                   (x.shape[-1], self.num_prototypes))
    return x @ _normalize(c, axis=0)


def _views(options):
  global_names, local_names = view_names(options.num_global_crops, options.num_local_crops)
  return {**{v: View("unlabeled", "global_crop") for v in global_names},
          **{v: View("unlabeled", "local_crop") for v in local_names}}


def init_state(options, info):
  if not options.queue_size:
    return {}
  return {"queue": jnp.zeros((options.num_global_crops, options.queue_size, info.projection_dim),
                             jnp.float32),
          "filled": jnp.zeros((), jnp.int32)}


def swav_method_loss(ctx: Context):
  o = ctx.options
  global_names, local_names = view_names(o.num_global_crops, o.num_local_crops)
  names = global_names + local_names
  n = ctx.images[global_names[0]].shape[0]
  z = _normalize(jnp.concatenate([ctx.outputs[v]["projection"] for v in names]))
  scores = ctx.extra("prototypes", z)
  if o.freeze_prototypes_steps > 0:
    # Linear and bias-free: the same scores and gradient for z, none for the prototypes.
    frozen = (jax.lax.stop_gradient(scores)
              + ctx.extra("prototypes", z - jax.lax.stop_gradient(z)))
    scores = jnp.where(ctx.step < o.freeze_prototypes_steps, frozen, scores)
  scores = scores.reshape(len(names), n, -1)
  options = dict(num_assign=len(global_names), temperature=o.temperature, epsilon=o.epsilon,
                 num_iterations=o.sinkhorn_iterations)
  loss, aux = swav_loss(scores, **options)
  metrics, state = {}, ctx.state
  if o.queue_size:
    queue = state["queue"]
    a, size, dim = queue.shape
    queue_scores = jax.lax.stop_gradient(
        ctx.extra("prototypes", queue.reshape(a * size, dim))).reshape(a, size, -1)
    queue_loss, queue_aux = swav_loss(scores, queue_scores=queue_scores, **options)
    use = (ctx.step >= o.queue_start_step) & (state["filled"] >= size)
    loss = jnp.where(use, queue_loss, loss)
    aux = jax.tree.map(lambda x, y: jnp.where(use, x, y), queue_aux, aux)
    # FIFO: the newest embeddings of each global crop first.
    embeddings = jax.lax.stop_gradient(z[:a * n]).reshape(a, n, dim)
    pushed = jnp.concatenate([embeddings, queue], axis=1)[:, :size]
    filling = ctx.step >= o.queue_start_step
    state = {"queue": jnp.where(filling, pushed, queue),
             "filled": jnp.where(filling, jnp.minimum(state["filled"] + n, size), state["filled"])}
    metrics["queue_in_use"] = use.astype(jnp.float32)
  codes = aux["codes"]  # [A, B, K]
  mean_code = jnp.mean(codes, axis=(0, 1))
  metrics["code_entropy"] = -jnp.sum(mean_code * jnp.log(jnp.maximum(mean_code, 1e-30)))
  metrics["code_confidence"] = jnp.mean(jnp.max(codes, axis=-1))
  return loss, metrics, state


def option_errors(options) -> list[str]:
  errors = check("swav", options, {
      "num_global_crops": integer(1),
      "num_local_crops": integer(0),
      "num_prototypes": integer(1),
      "sinkhorn_iterations": integer(0),
      "queue_size": integer(0),
      "queue_start_step": integer(0),
      "freeze_prototypes_steps": integer(0),
      "temperature": number(0, low_open=True),
      "epsilon": number(0, low_open=True),
  })
  if not errors and options.num_global_crops + options.num_local_crops < 2:
    errors.append(f"swav needs at least 2 crops to swap predictions, got num_global_crops="
                  f"{options.num_global_crops} and num_local_crops={options.num_local_crops}")
  return errors


METHOD = register(Method(
    name="swav", loss=swav_method_loss, options=OPTIONS, option_errors=option_errors,
    views=_views, needs_projection=True, init_state=init_state,
    extras=lambda options, info: {"prototypes": Extra(Prototypes(options.num_prototypes),
                                                      input="projection")}))
