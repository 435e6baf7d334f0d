"""DINO (Caron et al., ICCV 2021): self-distillation with no labels, multi-crop.

A student (the online model + this method's DINO head) matches a momentum teacher (an
EMA of model + head, the method's target tree) across crops:

.. math::
  \\ell = \\frac{1}{|\\mathcal{P}|} \\sum_{(i, v) \\in \\mathcal{P}} H\\big(
    \\mathrm{softmax}((g_t(x_i) - c) / \\tau_t),\\ \\mathrm{softmax}(g_s(x_v) / \\tau_s)\\big)

over every pair of a teacher crop ``i`` (the global crops) and a *different* student
crop ``v`` (global and local crops). The teacher's outputs are **centred** by ``c``, an
EMA (0.9) of their batch mean kept as method state (``state.method_state['dino']
['center']``), and **sharpened** by a low temperature ``tau_t`` (0.04, optionally warmed
up linearly), the student uses ``tau_s = 0.1``. The teacher follows
``theta_t <- m theta_t + (1 - m) theta_s`` with ``m`` 0.996 -> 1 on a cosine.

The head (``DINOHead``): an MLP ``Dense(hidden) -> GELU -> ... -> Dense(bottleneck)``
(3 layers), l2-normalisation, then a weight-normalised bias-free ``Dense(out_dim)``
whose column norms are fixed to 1 (``norm_last_layer=True``) or learned.

Follows facebookresearch/dino ``main_dino.py`` (``DINOLoss``, ``DINOHead``; options
default to its arguments), which differs from the paper's text in: the loss is averaged
over pairs (the paper writes a sum); the teacher temperature warm-up (paper: 0.04 ->
0.07 over 30 epochs; code default: 0.04 with no warm-up); the last layer is frozen for
the first epoch (``freeze_last_layer``, here ``freeze_last_layer_steps``: its gradient
is zero, but sslx's optimizer still applies weight decay and momentum to it, where the
official code skips the parameter). Differences of sslx: views come from the shared
multi-crop augmentation (:mod:`sslx.augment.multicrop`, SimCLR colour recipe), the
online model sees all crops in the shared forward pass (one per crop size), the
teacher both global crops in one pass; schedules are per step, not per epoch.

Diagnostics: teacher entropy (collapse to uniform: log out_dim; to one-hot: 0), teacher
temperature, tau, the norm of the centre.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.augment.multicrop import view_names
from sslx.losses.clustering import dino_center_update, dino_loss, dino_teacher_temperature
from sslx.methods.base import Context, Extra, Method, Target, View, register
from sslx.methods.checks import boolean, check, integer, number

OPTIONS = ml_collections.ConfigDict(dict(
    num_global_crops=2,  # teacher crops (official: 2)
    num_local_crops=8,  # student-only crops (official local_crops_number: 8)
    out_dim=65536,  # prototypes K (official 65536; solo-learn CIFAR 4096)
    hidden_dim=2048,  # head MLP width (official 2048)
    bottleneck_dim=256,  # head output before the last layer (official 256)
    num_layers=3,  # Dense layers of the head MLP (official 3)
    use_bn_in_head=False,  # BatchNorm after each hidden Dense of the head (official False)
    norm_last_layer=True,  # last layer's column norms fixed to 1 (official True)
    student_temperature=0.1,
    teacher_temperature=0.04,  # after the warm-up (official 0.04; paper 0.07)
    warmup_teacher_temperature=0.04,  # at step 0 (official 0.04)
    warmup_teacher_temperature_steps=0,  # linear warm-up (official 0 epochs; paper 30)
    center_momentum=0.9,
    base_momentum=0.996,  # teacher EMA at step 0 (official; solo-learn CIFAR 0.9995)
    final_momentum=1.0,
    freeze_last_layer_steps=0,  # last layer gets no gradient before this step (official 1 epoch)
))

_TRUNC_NORMAL = nn.initializers.truncated_normal(stddev=0.02)


class DINOHead(nn.Module):
  """The head's MLP and l2-normalisation: ``[batch, in] -> [batch, bottleneck_dim]``.

  ``use_bn``: ``Dense -> BatchNorm -> GELU`` hidden blocks (official ``use_bn_in_head``;
  torch's BatchNorm1d defaults: momentum 0.1, eps 1e-5).
  """
  hidden_dim: int
  bottleneck_dim: int
  num_layers: int = 3
  use_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    dense = lambda n: nn.Dense(n, kernel_init=_TRUNC_NORMAL, bias_init=nn.initializers.zeros)
    for _ in range(self.num_layers - 1):
      x = dense(self.hidden_dim)(x)
      if self.use_bn:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
      x = nn.gelu(x, approximate=False)  # torch's exact GELU
    x = dense(self.bottleneck_dim)(x)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class WeightNormLinear(nn.Module):
  """Bias-free ``Dense(out_dim)`` with weight normalisation: ``W[:, k] = g_k v_k / |v_k|``.

  ``g`` is fixed to 1 with ``norm_last_layer`` (then the layer is a cosine against
  ``out_dim`` unit vectors), else a parameter initialised to 1 (torch's ``weight_norm``
  after ``weight_g.fill_(1)``). ``v`` has torch's Linear default initialisation.
  Linear and zero at zero, which :func:`dino_method_loss` uses to freeze it.
  """
  out_dim: int
  norm_last_layer: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    bound = 1.0 / math.sqrt(x.shape[-1])
    v = self.param("v", _uniform(bound), (x.shape[-1], self.out_dim))
    w = v / jnp.maximum(jnp.linalg.norm(v, axis=0, keepdims=True), 1e-12)
    if not self.norm_last_layer:
      w = w * self.param("g", nn.initializers.ones, (self.out_dim,))
    return x @ w


def _uniform(bound):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def momentum(step, num_steps: int, base: float, final: float):
  """The teacher's EMA decay: ``final - (final - base) * (cos(pi * step / num_steps) + 1) / 2``."""
  return final - (final - base) * (jnp.cos(math.pi * step / num_steps) + 1.0) / 2.0


def _views(options):
  global_names, local_names = view_names(options.num_global_crops, options.num_local_crops)
  return {**{v: View("unlabeled", "global_crop") for v in global_names},
          **{v: View("unlabeled", "local_crop") for v in local_names}}


def _head(ctx: Context, features, params, freeze=None):
  z = ctx.extra("head", features, params=params)
  out = ctx.extra("last_layer", z, params=params)
  if freeze is None:
    return out
  # The last layer is linear and bias-free: the same value and input gradient, but no
  # gradient for its weights (its input is zero there).
  frozen = jax.lax.stop_gradient(out) + ctx.extra("last_layer", z - jax.lax.stop_gradient(z),
                                                  params=params)
  return jnp.where(freeze, frozen, out)


def dino_method_loss(ctx: Context):
  o = ctx.options
  global_names, local_names = view_names(o.num_global_crops, o.num_local_crops)
  names = global_names + local_names
  n = ctx.images[global_names[0]].shape[0]
  freeze = ctx.step < o.freeze_last_layer_steps if o.freeze_last_layer_steps > 0 else None
  student = _head(ctx, jnp.concatenate([ctx.outputs[v]["features"] for v in names]), "online",
                  freeze)
  teacher_features = ctx.forward(jnp.concatenate([ctx.images[v] for v in global_names]),
                                 params="teacher", train=True)["features"]
  teacher = _head(ctx, teacher_features, "teacher")
  temperature = dino_teacher_temperature(
      ctx.step, warmup_temperature=o.warmup_teacher_temperature,
      temperature=o.teacher_temperature, warmup_steps=o.warmup_teacher_temperature_steps)
  center = ctx.state["center"]
  loss, aux = dino_loss(student.reshape(len(names), n, -1),
                        teacher.reshape(len(global_names), n, -1), center,
                        teacher_temperature=temperature,
                        student_temperature=o.student_temperature)
  new_center = dino_center_update(center, aux["batch_center"], momentum=o.center_momentum)
  metrics = {"teacher_entropy": aux["teacher_entropy"], "teacher_temperature": temperature,
             "tau": momentum(ctx.step, ctx.num_steps, o.base_momentum, o.final_momentum),
             "center_norm": jnp.linalg.norm(new_center)}
  return loss, metrics, {"center": new_center}


def option_errors(options) -> list[str]:
  errors = check("dino", options, {
      "num_global_crops": integer(1),
      "num_local_crops": integer(0),
      "out_dim": integer(1),
      "hidden_dim": integer(1),
      "bottleneck_dim": integer(1),
      "num_layers": integer(1),
      "warmup_teacher_temperature_steps": integer(0),
      "freeze_last_layer_steps": integer(0),
      "student_temperature": number(0, low_open=True),
      "teacher_temperature": number(0, low_open=True),
      "warmup_teacher_temperature": number(0, low_open=True),
      "center_momentum": number(0, 1),
      "base_momentum": number(0, 1),
      "final_momentum": number(0, 1),
      "norm_last_layer": boolean(),
      "use_bn_in_head": boolean(),
  })
  if errors:  # the checks below compare fields checked above
    return errors
  if options.num_global_crops + options.num_local_crops < 2:
    errors.append(f"dino needs at least 2 crops for a (teacher, student) pair, got "
                  f"num_global_crops={options.num_global_crops} and "
                  f"num_local_crops={options.num_local_crops}")
  if options.base_momentum > options.final_momentum:
    errors.append(f"dino.base_momentum ({options.base_momentum}) must be <= "
                  f"dino.final_momentum ({options.final_momentum})")
  return errors


METHOD = register(Method(
    name="dino", loss=dino_method_loss, options=OPTIONS, option_errors=option_errors,
    views=_views,
    extras=lambda options, info: {
        "head": Extra(DINOHead(options.hidden_dim, options.bottleneck_dim, options.num_layers,
                               options.use_bn_in_head), input="features"),
        "last_layer": Extra(WeightNormLinear(options.out_dim, options.norm_last_layer),
                            input=(options.bottleneck_dim,))},
    targets=lambda options: {"teacher": Target(
        momentum=lambda step, n: momentum(step, n, options.base_momentum,
                                          options.final_momentum),
        source=lambda params: {"model": params["model"], "dino": params["dino"]})},
    init_state=lambda options, info: {"center": jnp.zeros((options.out_dim,), jnp.float32)}))
