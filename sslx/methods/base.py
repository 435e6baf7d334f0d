"""The method API: what one method file declares, and how active methods become one loss.

A *method* (``sslx/methods/<name>.py``) is a :class:`Method`: a loss over a
:class:`Context` plus declarations of what it needs. Everything is optional except the
loss:

``views``
  ``{view name: View(pool, augment)}``: images it reads, e.g.
  ``{"unlabeled_weak": View("unlabeled", "weak")}``. View names are global: two methods
  that name the same view share its images and its forward pass (FixMatch and the graph
  term both read ``unlabeled_weak``). Every view of every active method goes through the
  online model in ONE forward pass in train mode (shared BatchNorm statistics, as the
  official FixMatch and SimCLR code), one pass per image shape (multi-crop); its outputs
  are ``ctx.outputs[view]``. A view only another network reads (a teacher's clean input,
  a second network's view) is declared ``View(pool, augment, shared_pass=False)``: its
  images reach ``ctx.images`` but stay out of the shared pass and its BatchNorm batch.
``option_errors``
  ``option_errors(options) -> [message]``: what is wrong with ``config.<method>``, checked
  before anything is built; usually one table of :mod:`sslx.methods.checks` validators,
  ``check(name, options, {"threshold": number(0, 1), ...})``.
``augmentations``
  ``augmentations(config.augment, options) -> {name: fn(key, images)}``: augmentations
  of its own. ``fn`` returns images, or ``(images, targets)`` for a pretext task (the
  rotation index, a mask); the loss reads targets as ``ctx.targets[view]``.
``extras``
  ``extras(options, info) -> {name: Extra(module, input)}``: modules of its own (a
  predictor MLP, a rotation head, prototypes), created at init from ``info`` (feature and
  projection sizes) and trained with the model by the same optimizer. Parameters live
  in ``state.params[method][name]``, collections (BatchNorm) in
  ``state.model_state[method][name]``.
``targets``
  ``targets(options) -> {name: Target(source, momentum)}``: parameter trees that the
  optimizer does not touch (BYOL's target network, Mean Teacher's teacher, a momentum
  encoder): initialised as ``source(params)`` and after every update set to
  ``m * tree + (1 - m) * source(new params)`` with ``m = momentum(step, num_steps)``.
  Kept in ``state.method_params[method][name]``, checkpointed with the rest.
``init_state``
  ``init_state(options, info) -> pytree``: state kept between steps (queues, running
  class statistics, pool pseudo-labels), in ``state.method_state[method]``; the loss
  returns the new state as its third value.
``refresh``
  ``refresh(options, embed, arrays, state, num_classes) -> state``, run by the trainer
  every ``options.refresh_every`` steps from ``options.start_step`` over the
  device-resident pools (deep label propagation).
``needs_pool_indices``
  the loss reads ``ctx.batch['unlabeled_indices']`` or ``['labeled_indices']``
  (per-example state over a pool: FlexMatch's labels, SimMatch's labeled bank): the
  config check refuses ``data.streaming=True`` for it, as for a method with
  ``refresh``.

The loss ``loss(ctx) -> (loss, metrics[, new_state])`` reads ``ctx.outputs[view]``
(``{'logits', 'features'[, 'projection']}`` of the shared pass) and may run more passes:
``ctx.forward(images, params='online' | 'ema' | <target name>, train=...)`` and
``ctx.extra(name, x, params=...)`` (big_vision's distill trainer hands its loss
``fwd(name, params)`` the same way); a pass those cannot express (a module method with
its own arguments) applies ``ctx.model`` to ``ctx.params(which)['model']`` itself. Random keys come from ``ctx.rng(name)``: streams are
derived from names, never positions, so adding a method leaves every other method's
draws unchanged; the model gets a ``dropout`` stream.

``config.loss.terms = {'supervised': 1.0, 'fixmatch': 1.0}`` turns methods on with their
weights; each method's options are ``config.<name>``. A method registers itself with
:func:`register` when its file is imported; a fork's own file is imported by naming its
module in ``config.loss.imports``, with no edit to sslx.
"""

from __future__ import annotations

import dataclasses
import importlib
import zlib
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

POOLS = ("labeled", "unlabeled")
MODEL_OUTPUTS = ("logits", "features", "projection")


@dataclasses.dataclass(frozen=True)
class View:
  """Images a method reads: a batch pool and an augmentation, both by name."""
  pool: str  # 'labeled' | 'unlabeled'
  augment: str  # 'none' | 'weak' | 'strong' | 'simclr' | a method's own augmentation
  shared_pass: bool = True  # False: images only (ctx.images), no online forward pass


@dataclasses.dataclass(frozen=True)
class Extra:
  """A module a method owns, trained with the model.

  ``module`` is a flax module called as ``module.apply(variables, x, train=...)``;
  ``input`` names the model output it is initialised on (``'features'``,
  ``'projection'``, ``'logits'``) or gives the input shape without the batch axis.
  """
  module: Any
  input: str | tuple[int, ...] = "features"


def _model_only(params):
  return {"model": params["model"]}


@dataclasses.dataclass(frozen=True)
class Target:
  """A parameter tree updated by an exponential moving average, not by the optimizer.

  ``source(params)`` picks the part of the online parameters it follows (default: the
  model); ``momentum(step, num_steps)`` is the EMA decay after the update to ``step + 1``.
  """
  momentum: Callable[[jax.Array, int], jax.Array]
  source: Callable[[Any], Any] = _model_only


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What a method may size its extras and state by."""
  num_classes: int
  image_shape: tuple[int, ...]
  feature_dim: int
  projection_dim: int  # 0 without a projection head
  pool_sizes: Mapping[str, int]
  num_steps: int
  # Share of each class among the labeled examples ([num_classes]; uniform when unknown):
  # ReMixMatch's distribution-alignment target, a prior for class statistics.
  labeled_class_prior: tuple[float, ...] | None = None


# Two augmented views of each unlabeled image, by the kind a two-view method's
# ``options.views`` names: the view names (shared with every method that reads them) per kind.
TWO_VIEWS = {
    "simclr": ("unlabeled_simclr_1", "unlabeled_simclr_2"),
    "strong": ("unlabeled_strong", "unlabeled_strong_2"),
}


def two_views(options) -> dict[str, "View"]:
  """The two views of ``options.views`` ('simclr' or 'strong'), for a method's ``views``."""
  first, second = TWO_VIEWS[options.views]
  augment = "simclr" if options.views == "simclr" else "strong"
  return {first: View("unlabeled", augment), second: View("unlabeled", augment)}


def _no_errors(options) -> list[str]:
  del options
  return []


@dataclasses.dataclass(frozen=True)
class Method:
  """One method: its loss and what it needs (module docstring). Register it with :func:`register`."""
  name: str
  loss: Callable[["Context"], tuple]
  options: ml_collections.ConfigDict = dataclasses.field(
      default_factory=ml_collections.ConfigDict)
  views: Mapping[str, View] | Callable[[Any], Mapping[str, View]] = dataclasses.field(
      default_factory=dict)
  option_errors: Callable[[Any], list[str]] = _no_errors
  augmentations: Callable[[Any, Any], Mapping[str, Callable]] | None = None
  extras: Callable[[Any, ModelInfo], Mapping[str, Extra]] | None = None
  targets: Callable[[Any], Mapping[str, Target]] | None = None
  init_state: Callable[[Any, ModelInfo], Any] | None = None
  refresh: Callable[..., Any] | None = None
  needs_projection: bool = False  # the model must have a projection head
  # The loss reads ctx.batch['unlabeled_indices'] / ['labeled_indices'] (positions in the
  # device-resident pools: a pseudo-label per example, a bank row per labeled example), so
  # the method refuses data.streaming.
  needs_pool_indices: bool = False

  def views_for(self, options) -> dict[str, View]:
    return dict(self.views(options) if callable(self.views) else self.views)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds `method` under its name (at import of its file); returns it."""
  old = REGISTRY.get(method.name)
  if old is not None and old.loss is not method.loss:
    # Re-importing the same file (e.g. a reloaded config) re-registers; two files may not.
    if getattr(old.loss, "__module__", None) != getattr(method.loss, "__module__", None):
      raise ValueError(f"two methods are named {method.name!r}: {old.loss.__module__} and "
                       f"{method.loss.__module__}")
  REGISTRY[method.name] = method
  return method


def import_methods(modules) -> None:
  """Imports the modules named in ``config.loss.imports`` (their methods register)."""
  for name in modules or ():
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f"loss.imports: cannot import {name!r} ({e})") from e


def stream_key(root: jax.Array, name: str) -> jax.Array:
  """The RNG stream `name` of `root`: ``fold_in(root, crc32(name))``."""
  return jax.random.fold_in(root, zlib.crc32(name.encode()) & 0x7FFFFFFF)


# ---------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------


def model_variables(model_params, model_state) -> dict:
  """Flax variables of the model: its params and its collections (BatchNorm statistics)."""
  return {"params": model_params, **model_state.get("model", {})}


# ---------------------------------------------------------------------------
# The context a loss sees
# ---------------------------------------------------------------------------


class _Shared:
  """One step's values shared by every method's context (traced; mutable while tracing)."""

  def __init__(self, *, model, extra_modules, params, state, batch, rng, normalize, num_classes,
               num_steps):
    self.model, self.extra_modules, self.params, self.batch = model, extra_modules, params, batch
    self.model_state = state.model_state
    self.ema_params, self.method_params = state.ema_params, state.method_params
    self.step, self.rng, self.normalize = state.step, rng, normalize
    self.num_classes, self.num_steps = num_classes, num_steps
    self.images, self.targets, self.outputs = {}, {}, {}


class Context:
  """What a method's loss reads and runs. Built by the trainer for each active method."""

  def __init__(self, shared: _Shared, method: Method, options, state, views):
    self._shared, self._method = shared, method
    self.options, self.state = options, state
    self.step, self.batch = shared.step, shared.batch
    self.num_classes, self.num_steps = shared.num_classes, shared.num_steps
    self.outputs = {v: shared.outputs[v] for v in views if v in shared.outputs}
    self.images = {v: shared.images[v] for v in views}
    self.targets = {v: shared.targets[v] for v in views if v in shared.targets}

  def rng(self, name: str) -> jax.Array:
    """This step's random key for stream `name` (private to the method)."""
    return stream_key(self._shared.rng, f"{self._method.name}/{name}")

  @property
  def model(self):
    """The flax model (for a pass ``ctx.forward`` cannot express, e.g. a module method
    with extra arguments: MAE's encoder on the visible patches only)."""
    return self._shared.model

  @property
  def normalize(self):
    """``images (uint8) -> model input``: the run's input normalisation."""
    return self._shared.normalize

  def params(self, which="online"):
    """A parameter tree like ``state.params``: ``'online'`` (differentiated), ``'ema'`` or a
    target's name (both without gradient); ``params(...)['model']`` is the model's."""
    return self._params(which)

  def _params(self, which):
    """'online' (differentiated), 'ema', or a target name -> a params tree like state.params."""
    s = self._shared
    if not isinstance(which, str):
      return which
    if which == "online":
      return s.params
    if which == "ema":
      return {"model": jax.lax.stop_gradient(s.ema_params)}
    trees = s.method_params.get(self._method.name, {})
    if which not in trees:
      raise ValueError(f"{self._method.name}: no parameters named {which!r}; known: "
                       f"'online', 'ema', {sorted(trees)}")
    return jax.lax.stop_gradient(trees[which])

  def forward(self, images, *, params="online", train: bool = True, rng: str = "forward",
              update_stats: bool = True):
    """The model on normalised `images` with `params` ('online', 'ema', a target name).

    In train mode BatchNorm uses batch statistics; only online passes update the running
    statistics, and not with ``update_stats=False`` (USB's ``freeze_bn``: perturbed or
    extra passes that should not move them; also needed inside a ``jax.grad`` of the
    input). Non-online parameters get no gradient.
    """
    return _apply_model(self._shared, self._params(params)["model"], images, train=train,
                        key=self.rng(f"dropout/{rng}"),
                        online=params == "online" and update_stats)

  def extra(self, name: str, x, *, params="online", train: bool = True):
    """The method's own module `name` on `x`, with 'online' (trained) or a target's params."""
    s, m = self._shared, self._method.name
    tree = self._params(params)
    if m not in tree or name not in tree[m]:
      raise ValueError(f"{m}: parameters {params!r} have no extra module {name!r}")
    module = s.extra_modules[m][name]
    own_state = s.model_state.get(m, {}).get(name, {})
    variables = {"params": tree[m][name], **own_state}
    collections = list(own_state)
    if not (train and collections):
      return module.apply(variables, x, train=train)
    out, new = module.apply(variables, x, train=True, mutable=collections)
    if params == "online":
      s.model_state = {**s.model_state, m: {**s.model_state.get(m, {}), name: dict(new)}}
    return out


# ---------------------------------------------------------------------------
# Active methods -> one loss function
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Active:
  method: Method
  weight: float
  options: Any
  views: Mapping[str, View]


def make_loss_fn(active: Mapping[str, Active], *, model, normalize, augmenters, extra_modules,
                 num_classes: int, num_steps: int, nan_at_step: int = -1):
  """Builds ``loss_fn(params, state, batch, rng) -> (loss, (model_state, method_state, metrics))``.

  Args:
    active: name -> :class:`Active` for every method with a weight.
    model: the flax module (called with ``train=`` and ``rngs={'dropout': ...}``).
    normalize: uint8 images -> float model inputs.
    augmenters: augmentation name -> ``fn(key, images) -> images | (images, targets)``.
    extra_modules: method name -> {extra name: flax module}.
    num_classes, num_steps: passed on to the methods.
    nan_at_step: inject a NaN into the loss at this step (tests of the non-finite guard).
  """
  views = merged_views(active)

  def loss_fn(params, state, batch, rng):
    shared = _Shared(model=model, extra_modules=extra_modules, params=params, state=state,
                     batch=batch, rng=rng, normalize=normalize, num_classes=num_classes,
                     num_steps=num_steps)
    # 1. Views: each drawn with the key of its name.
    for name in sorted(views):
      view = views[name]
      out = augmenters[view.augment](stream_key(rng, f"view/{name}"), batch[f"{view.pool}_images"])
      if isinstance(out, tuple):
        out, shared.targets[name] = out
      shared.images[name] = normalize(out)
    # 2. One online forward pass per image shape (normally exactly one).
    by_shape: dict[tuple, list[str]] = {}
    for name in sorted(v for v in views if views[v].shared_pass):
      by_shape.setdefault(shared.images[name].shape[1:], []).append(name)
    for shape, group in by_shape.items():
      sizes = [shared.images[v].shape[0] for v in group]
      out = _apply_model(shared, params["model"], jnp.concatenate([shared.images[v] for v in group]),
                         train=True, key=stream_key(rng, f"dropout/{shape}"), online=True)
      pieces = {k: jnp.split(val, _offsets(sizes)) for k, val in out.items()}
      for j, v in enumerate(group):
        shared.outputs[v] = {k: pieces[k][j] for k in pieces}
    # 3. Weighted sum of the methods.
    total, metrics = jnp.zeros((), jnp.float32), {}
    method_state = dict(state.method_state)
    for name, a in active.items():
      result = a.method.loss(Context(shared, a.method, a.options, method_state.get(name), a.views))
      loss, method_metrics = result[:2]
      if len(result) == 3:
        method_state[name] = result[2]
      total = total + a.weight * loss
      metrics[f"loss/{name}"] = loss
      metrics.update({f"{name}/{k}": v for k, v in method_metrics.items()})
    if nan_at_step >= 0:
      total = jnp.where(state.step == nan_at_step, jnp.nan, total)
    metrics["loss"] = total
    return total, (shared.model_state, method_state, metrics)

  return loss_fn


def _apply_model(shared: _Shared, model_params, images, *, train: bool, key, online: bool):
  """The model in train/eval mode; an online train pass updates the running statistics."""
  variables = model_variables(model_params, shared.model_state)
  collections = [k for k in variables if k != "params"]
  if not (train and collections):
    return shared.model.apply(variables, images, train=train, rngs={"dropout": key})
  out, new = shared.model.apply(variables, images, train=True, mutable=collections,
                                rngs={"dropout": key})
  if online:
    shared.model_state = {**shared.model_state,
                          "model": {**shared.model_state.get("model", {}), **new}}
  return out


def merged_views(active: Mapping[str, Active]) -> dict[str, View]:
  """All views of the active methods; a name declared twice must mean the same images
  (pool and augmentation). It goes through the shared pass if any method asks for that."""
  views: dict[str, View] = {}
  for name, a in active.items():
    for view_name, view in a.views.items():
      old = views.setdefault(view_name, view)
      if (old.pool, old.augment) != (view.pool, view.augment):
        raise ValueError(f"view {view_name!r} is declared as {old} by one method "
                         f"and as {view} by {name!r}")
      if view.shared_pass and not old.shared_pass:
        views[view_name] = view
  return views


def update_targets(active: Mapping[str, Active], method_params, params, step, num_steps: int):
  """Every method's target trees after the update to ``step + 1`` (EMA of their source)."""
  out = dict(method_params)
  for name, a in active.items():
    if a.method.targets is None:
      continue
    trees = dict(out[name])
    for target_name, target in a.method.targets(a.options).items():
      m = jnp.asarray(target.momentum(step, num_steps), jnp.float32)
      trees[target_name] = jax.tree.map(lambda t, p: m * t + (1.0 - m) * p,
                                        trees[target_name], target.source(params))
    out[name] = trees
  return out


def _offsets(sizes):
  out, acc = [], 0
  for s in sizes[:-1]:
    acc += s
    out.append(acc)
  return out
