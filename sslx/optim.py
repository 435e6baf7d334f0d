"""Optimizers and learning-rate schedules built from `config.optimizer`.

The recipes:

* ``sgd``: SGD with (Nesterov) momentum and L2 weight decay on kernels (every parameter
  of 2 or more dimensions) only,
  as FixMatch (Sohn et al. 2020) trains its WideResNets. The decay is added to the
  gradient before momentum (``grad + wd * w``), the PyTorch ``SGD(weight_decay=...)``
  convention that USB/TorchSSL use; biases and BatchNorm scales are not decayed.
* ``lars``: LARS (You et al. 2017) as SimCLR uses it; BatchNorm parameters and biases
  (every 1-D parameter) are excluded from both weight decay and trust-ratio adaptation.
* ``adamw``: AdamW with decoupled decay on kernels.

Schedules (``config.optimizer.schedule``):

* ``constant``: ``lr``.
* ``cosine``: linear warmup over ``warmup_steps`` then cosine decay to 0 at ``num_steps``.
* ``fixmatch``: ``lr * cos(7 * pi * k / (16 * K))`` (FixMatch, Sec. 3 / App. B.1),
  with ``K = num_steps``; after optional linear warmup.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULES = ("constant", "cosine", "fixmatch")


def default_optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="sgd",
      learning_rate=0.03,
      momentum=0.9,
      nesterov=True,
      weight_decay=5e-4,
      schedule="fixmatch",
      warmup_steps=0,
      grad_clip_norm=0.0,  # 0 turns clipping off
  ))


def validate_optimizer_config(cfg) -> list[str]:
  """Returns one message per problem, naming the field."""
  errors = []
  if cfg.name not in OPTIMIZERS:
    errors.append(f"optimizer.name={cfg.name!r} is unknown; choose one of {OPTIMIZERS}")
  if cfg.schedule not in SCHEDULES:
    errors.append(f"optimizer.schedule={cfg.schedule!r} is unknown; choose one of {SCHEDULES}")
  if not _is_number(cfg.learning_rate) or cfg.learning_rate <= 0:
    errors.append(f"optimizer.learning_rate must be a number > 0, got {cfg.learning_rate!r}")
  if not _is_number(cfg.weight_decay) or cfg.weight_decay < 0:
    errors.append(f"optimizer.weight_decay must be a number >= 0, got {cfg.weight_decay!r}")
  if not _is_number(cfg.momentum) or not 0 <= cfg.momentum < 1:
    errors.append(f"optimizer.momentum must be in [0, 1), got {cfg.momentum!r}")
  if not isinstance(cfg.warmup_steps, int) or cfg.warmup_steps < 0:
    errors.append(f"optimizer.warmup_steps must be an int >= 0, got {cfg.warmup_steps!r}")
  if not _is_number(cfg.grad_clip_norm) or cfg.grad_clip_norm < 0:
    errors.append(f"optimizer.grad_clip_norm must be a number >= 0, got {cfg.grad_clip_norm!r}")
  return errors


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def create_schedule(cfg, num_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step (a jittable callable)."""
  lr, warmup = float(cfg.learning_rate), int(cfg.warmup_steps)
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1), end_value=0.0)
  elif cfg.schedule == "fixmatch":
    total = float(num_steps)

    def main(step):
      # FixMatch's decay over the whole run, counted from step 0 as in the paper.
      return lr * jnp.cos(7.0 * jnp.pi * step / (16.0 * total))
  else:
    raise ValueError(f"optimizer.schedule={cfg.schedule!r} is unknown; choose one of {SCHEDULES}")
  if warmup <= 0:
    return main

  def warmed(step):
    return jnp.where(step < warmup, lr * step / warmup, main(step))
  return warmed


def _kernel_mask(params):
  """True for every parameter of 2 or more dimensions (decayed, LARS-adapted), False for
  vectors (biases, norm scales/offsets).

  By shape, not by name: a method's own matrices (DINO's and SwAV's prototypes, a ViT's
  class/mask tokens) are weights like any kernel, as solo-learn's LARS
  (``exclude_bias_n_norm``) and timm's ``add_weight_decay`` (MAE's pretraining) treat
  them. Keyed on the name ``kernel``, they got plain SGD at LARS's base rate.
  """
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def create_optimizer(cfg, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns ``(optimizer, schedule)`` for ``config.optimizer``."""
  errors = validate_optimizer_config(cfg)
  if errors:
    raise ValueError("; ".join(errors))
  schedule = create_schedule(cfg, num_steps)
  wd = float(cfg.weight_decay)
  if cfg.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(wd, mask=_kernel_mask) if wd > 0 else optax.identity(),
        optax.sgd(schedule, momentum=float(cfg.momentum) or None, nesterov=bool(cfg.nesterov)),
    )
  elif cfg.name == "lars":
    tx = optax.lars(schedule, weight_decay=wd, weight_decay_mask=_kernel_mask,
                    trust_ratio_mask=_kernel_mask, momentum=float(cfg.momentum),
                    nesterov=bool(cfg.nesterov))
  else:  # adamw
    tx = optax.adamw(schedule, weight_decay=wd, mask=_kernel_mask)
  if cfg.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(float(cfg.grad_clip_norm)), tx)
  return tx, schedule
