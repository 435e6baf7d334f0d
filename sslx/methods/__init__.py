"""Methods, composed by config: ``config.loss.terms = {'supervised': 1.0, 'fixmatch': 1.0}``.

Each method is one file that registers a :class:`~sslx.methods.base.Method` (see
``sslx/methods/base.py`` for what a method can declare, and README "Adding a method").
Every file in this package is imported here; a file elsewhere (a fork's, a paper's) is
imported by naming its module in ``config.loss.imports``. Each method's options live in
``config.<method name>`` and its ``option_errors`` checks them, usually with one table of
:mod:`sslx.methods.checks` validators (``check``, ``number``, ``integer``, ``boolean``, ``one_of``,
``area_range``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from sslx.methods.base import (MODEL_OUTPUTS, POOLS, REGISTRY, Active, Context, Extra, Method,
                               ModelInfo, Target, View, import_methods, make_loss_fn,
                               merged_views, model_variables, register, stream_key,
                               update_targets)
from sslx.methods.checks import Validator, area_range, boolean, check, integer, number, one_of

# Built-in methods: every module of this package but the API (base, checks) registers its
# method(s) on import, so a new method file needs no edit here.
def _import_builtin_methods():
  import importlib
  import pkgutil
  for module in pkgutil.iter_modules(__path__):
    if module.name not in ("base", "checks"):
      importlib.import_module(f"{__name__}.{module.name}")


_import_builtin_methods()

BASE_AUGMENTATIONS = ("none", "weak", "strong", "simclr", "global_crop", "local_crop")


def method_option_configs() -> dict[str, ml_collections.ConfigDict]:
  """config block name -> default options, one per registered method."""
  return {name: ml_collections.ConfigDict(m.options.to_dict()) for name, m in REGISTRY.items()}


def default_augment_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      flip=True,  # random horizontal flips in weak/strong views (off for digits, SVHN)
      translate=0.125,  # max translation as a fraction of the image side (weak view)
      num_ops=2,  # RandAugment ops per strong view
      op_prob=0.5,  # probability each drawn op is applied
      cutout=0.5,  # Cutout square side as a fraction of the image side (0 = off)
      simclr_strength=0.5,  # colour-jitter strength s (SimCLR uses 0.5 on CIFAR, 1.0 on ImageNet)
      simclr_crop_scale=(0.08, 1.0),  # random-resized-crop area range
      simclr_blur=False,  # Gaussian blur (SimCLR uses it on ImageNet, not on CIFAR)
      # Multi-crop (SwAV, DINO): SimCLR views resized to a global and a local size.
      multicrop_global_size=0,  # output side of 'global_crop' views (0: the image side)
      multicrop_global_scale=(0.4, 1.0),  # area range (DINO; SwAV: (0.14, 1))
      multicrop_local_size=0,  # output side of 'local_crop' views (0: 96/224 of the image side)
      multicrop_local_scale=(0.05, 0.4),  # area range (DINO; SwAV: (0.05, 0.14))
  ))


def make_augmenters(cfg, active=None) -> dict:
  """augmentation name -> ``fn(key, images)``: the shared ones (``config.augment``) and the
  active methods' own."""
  # local imports: keep `import sslx.methods` light
  from sslx.augment.multicrop import multicrop_view
  from sslx.augment.randaugment import strong
  from sslx.augment.simclr import simclr_view
  from sslx.augment.weak import weak
  out = {
      "none": lambda key, images: images,
      "weak": lambda key, images: weak(key, images, flip=cfg.flip, translate=cfg.translate),
      "strong": lambda key, images: strong(key, images, flip=cfg.flip, translate=cfg.translate,
                                           num_ops=cfg.num_ops, op_prob=cfg.op_prob,
                                           cutout=cfg.cutout),
      "simclr": lambda key, images: simclr_view(key, images, strength=cfg.simclr_strength,
                                                crop_scale=tuple(cfg.simclr_crop_scale),
                                                blur=cfg.simclr_blur, flip=cfg.flip),
      "global_crop": lambda key, images: multicrop_view(
          key, images, size=cfg.multicrop_global_size, scale=cfg.multicrop_global_scale,
          local=False, strength=cfg.simclr_strength, blur=cfg.simclr_blur, flip=cfg.flip),
      "local_crop": lambda key, images: multicrop_view(
          key, images, size=cfg.multicrop_local_size, scale=cfg.multicrop_local_scale,
          local=True, strength=cfg.simclr_strength, blur=cfg.simclr_blur, flip=cfg.flip),
  }
  for name, a in (active or {}).items():
    if a.method.augmentations is not None:
      for aug_name, fn in a.method.augmentations(cfg, a.options).items():
        if aug_name in BASE_AUGMENTATIONS:
          raise ValueError(f"{name}: augmentation {aug_name!r} shadows a built-in one")
        out[aug_name] = fn
  return out


def active_methods(config) -> dict[str, Active]:
  """name -> Active(method, weight, options, views) for every method with a weight != 0."""
  import_methods(config.loss.get("imports", ()))
  out = {}
  for name, w in config.loss.terms.items():
    if float(w) == 0.0:
      continue
    method = REGISTRY[name]
    options = config.get(name, method.options)
    out[name] = Active(method, float(w), options, method.views_for(options))
  return out


def model_info(model, image_shape, num_classes: int, pool_sizes, num_steps: int,
               labeled_labels=None) -> ModelInfo:
  """Feature/projection sizes of `model`, read from its abstract output shapes, and the
  labeled class prior of `labeled_labels` (uniform when None)."""
  import numpy as np
  counts = np.zeros(num_classes)
  if labeled_labels is not None:
    known = np.asarray(labeled_labels)
    counts = np.bincount(known[known >= 0], minlength=num_classes)[:num_classes].astype(float)
  prior = (counts / counts.sum() if counts.sum() else np.full(num_classes, 1.0 / num_classes))
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0], x)
  return ModelInfo(num_classes=num_classes, image_shape=tuple(image_shape),
                   feature_dim=int(shapes["features"].shape[-1]),
                   projection_dim=int(shapes["projection"].shape[-1]) if "projection" in shapes else 0,
                   pool_sizes=dict(pool_sizes), num_steps=num_steps,
                   labeled_class_prior=tuple(float(p) for p in prior))


def extra_modules(active, info: ModelInfo) -> dict[str, dict[str, Extra]]:
  """method name -> {extra name: Extra} for the active methods that own modules."""
  return {name: dict(a.method.extras(a.options, info)) for name, a in active.items()
          if a.method.extras is not None}


def init_method_parts(active, extras, info: ModelInfo, params_model, rng):
  """The methods' extra params/collections, target trees and state at step 0.

  Returns ``(params, model_state_extras, method_params, method_state)`` where ``params``
  is the full optimized tree ``{'model': ..., method: {extra: ...}}``.
  """
  params, extra_state = {"model": params_model}, {}
  for name, modules in extras.items():
    params[name], extra_state[name] = {}, {}
    for extra_name, extra in modules.items():
      shape = extra.input
      if isinstance(shape, str):
        shape = {"features": (info.feature_dim,), "projection": (info.projection_dim,),
                 "logits": (info.num_classes,)}[shape]
      variables = dict(jax.jit(lambda k, x, m=extra.module: m.init(k, x, train=False))(
          stream_key(rng, f"{name}/{extra_name}"), jnp.zeros((1, *shape), jnp.float32)))
      params[name][extra_name] = variables.pop("params")
      extra_state[name][extra_name] = variables
  method_params = {}
  for name, a in active.items():
    if a.method.targets is not None:
      method_params[name] = {t: jax.tree.map(jnp.copy, target.source(params))
                             for t, target in a.method.targets(a.options).items()}
  method_state = {name: a.method.init_state(a.options, info) for name, a in active.items()
                  if a.method.init_state is not None}
  return params, extra_state, method_params, method_state


def config_errors(config) -> list[str]:
  errors = []
  try:
    import_methods(config.loss.get("imports", ()))
  except ValueError as e:
    return [str(e)]
  terms = config.loss.terms
  for name, weight in terms.items():
    if name not in REGISTRY:
      errors.append(f"loss.terms has an unknown method {name!r}; known: {tuple(REGISTRY)} "
                    "(a method of your own: name its module in loss.imports)")
    elif (not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0
          or weight == float("inf")):
      errors.append(f"loss.terms.{name} must be a finite weight >= 0, got {weight!r}")
  if not errors and not any(float(w) > 0 for w in terms.values()):
    errors.append(f"loss.terms must give at least one term a weight > 0, got {terms.to_dict()}")
  for name in terms.keys():
    if name in REGISTRY and name in config:
      errors.extend(e if e.startswith(f"{name}.") else f"{name}.{e}"
                    for e in REGISTRY[name].option_errors(config[name]))
  for name in terms.keys():
    if name in REGISTRY and REGISTRY[name].needs_projection and not config.model.get(
        "projection_dim"):
      errors.append(f"loss.terms.{name} needs a projection head: set model.projection_dim > 0 "
                    f"(e.g. 128), got {config.model.get('projection_dim')!r}")
  if config.data.streaming:
    for n in terms.keys():
      if n in REGISTRY and (REGISTRY[n].refresh or REGISTRY[n].needs_pool_indices):
        what = ("re-embeds the whole unlabeled pool" if REGISTRY[n].refresh
                else "keeps state per example of the data pools")
        errors.append(f"loss.terms.{n}: {n} {what}, so it needs the dataset on the devices "
                      "(data.streaming=False), got data.streaming=True")
  if errors:  # the checks below read the options checked above
    return errors
  active = active_methods(config)
  try:
    views = merged_views(active)
  except ValueError as e:
    return [f"loss.terms: {e}"]
  for name, view in views.items():
    if view.pool not in POOLS:
      errors.append(f"view {name!r}: pool {view.pool!r} is not one of {POOLS}")
  try:
    augmenters = make_augmenters(config.augment, active)
  except ValueError as e:
    return errors + [str(e)]
  for name, view in views.items():
    if view.augment not in augmenters:
      errors.append(f"view {name!r}: augmentation {view.augment!r} is unknown; known: "
                    f"{tuple(augmenters)}")
  needs_unlabeled = any(v.pool == "unlabeled" for v in views.values())
  if needs_unlabeled and config.unlabeled_ratio < 1:
    errors.append(f"loss.terms {tuple(terms.keys())} read unlabeled images, so unlabeled_ratio "
                  f"must be >= 1, got {config.unlabeled_ratio!r}")
  return errors


__all__ = ["Active", "Context", "Extra", "MODEL_OUTPUTS", "Method", "ModelInfo", "POOLS",
           "REGISTRY", "Target", "Validator", "View", "active_methods", "area_range", "boolean",
           "check", "config_errors", "default_augment_config", "extra_modules", "import_methods",
           "init_method_parts", "integer", "make_augmenters", "make_loss_fn", "merged_views",
           "method_option_configs", "model_info", "model_variables", "number", "one_of",
           "register", "stream_key", "update_targets"]
