"""How named loss terms become one loss over one shared forward pass.

A *term* (one per method file: ``supervised``, ``fixmatch``, ``nt_xent``, ``graph``...)
declares the *views* it reads, e.g. ``("unlabeled_weak", "unlabeled_strong")``, and
computes ``(loss, metrics)`` from the model outputs on those views. The compositor

1. draws every view any active term needs (each view = a pool and an augmentation),
2. concatenates all views of the same shape into ONE forward pass in train mode, so
   BatchNorm statistics are shared across labeled, weak and strong images as in the
   official FixMatch and SimCLR code,
3. returns ``sum_i weight_i * loss_i`` and every term's metrics, prefixed by its name.

The trainer knows methods only through the function this builds:
``loss_fn(params, model_state, batch, rng, step) -> (loss, (model_state, metrics))``.

A term may keep state between steps (a running class distribution, pseudo-labels of
the whole unlabeled pool): it lives in ``model_state['terms'][name]``, so it is
checkpointed, restored and donated with the rest of the state, and the model never sees
it (:func:`model_variables` strips it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

# view name -> (pool, augmentation). Two draws of the same augmentation are two views.
VIEWS: dict[str, tuple[str, str]] = {
    "labeled_weak": ("labeled", "weak"),
    "labeled_strong": ("labeled", "strong"),
    "unlabeled_weak": ("unlabeled", "weak"),
    "unlabeled_strong": ("unlabeled", "strong"),
    "unlabeled_strong_2": ("unlabeled", "strong"),
    "unlabeled_simclr_1": ("unlabeled", "simclr"),
    "unlabeled_simclr_2": ("unlabeled", "simclr"),
}


@dataclasses.dataclass(frozen=True)
class TermInputs:
  """What a term sees: model outputs per view, the raw batch, its options and the step."""
  outputs: Mapping[str, Mapping[str, jax.Array]]  # view -> {'logits', 'features', ['projection']}
  batch: Mapping[str, jax.Array]
  options: Any  # the term's config block (config.<term name>), or None
  num_classes: int
  step: jax.Array
  state: Any = None  # the term's own state (model_state['terms'][name]), if it has one


@dataclasses.dataclass(frozen=True)
class Term:
  """A named loss term. `views` is a tuple, or a function of the term's options.

  ``compute(inputs)`` returns ``(loss, metrics)``, or ``(loss, metrics, new_state)`` for a
  term with ``init_state(options, num_classes, pool_sizes) -> state``.
  """
  name: str
  views: tuple[str, ...] | Callable[[Any], tuple[str, ...]]
  compute: Callable[..., tuple]
  needs_projection: bool = False
  init_state: Callable[..., Any] | None = None
  # refresh(options, embed, arrays, state, num_classes) -> state, run by the trainer every
  # `options.refresh_every` steps from `options.start_step` over the device-resident pools.
  refresh: Callable[..., Any] | None = None

  def views_for(self, options) -> tuple[str, ...]:
    return self.views(options) if callable(self.views) else self.views


TERM_STATE_KEY = "terms"


def model_variables(params, model_state) -> dict:
  """The flax variables of the model: params and its collections, without term state."""
  return {"params": params, **{k: v for k, v in model_state.items() if k != TERM_STATE_KEY}}


def apply_model(model, params, model_state, images, *, train: bool):
  """``model.apply`` with the mutable collections handled: returns (outputs, model_state)."""
  variables = model_variables(params, model_state)
  collections = [k for k in variables if k != "params"]
  if train and collections:
    outputs, new_state = model.apply(variables, images, train=True, mutable=collections)
    return outputs, {**model_state, **new_state}
  return model.apply(variables, images, train=train), model_state


def make_loss_fn(terms: Mapping[str, tuple[Term, float, Any]], *, model, normalize, augmenters,
                 num_classes: int, nan_at_step: int = -1):
  """Builds ``loss_fn(params, model_state, batch, rng, step)``.

  Args:
    terms: name -> (Term, weight, options) for every active term.
    model: the flax module.
    normalize: uint8 images -> float model inputs.
    augmenters: augmentation name -> ``fn(key, images) -> images``.
    num_classes: number of classes.
    nan_at_step: inject a NaN into the loss at this step (tests of the non-finite guard).
  """
  term_views = {name: term.views_for(options) for name, (term, _, options) in terms.items()}
  view_names = sorted({v for views in term_views.values() for v in views})

  def loss_fn(params, model_state, batch, rng, step):
    # 1. Views: one augmentation key per view, derived from the step key.
    images = {}
    for i, view in enumerate(view_names):
      pool, aug = VIEWS[view]
      images[view] = normalize(augmenters[aug](jax.random.fold_in(rng, i),
                                               batch[f"{pool}_images"]))
    # 2. One forward pass per image shape (normally exactly one).
    outputs, by_shape = {}, {}
    for view in view_names:
      by_shape.setdefault(images[view].shape[1:], []).append(view)
    for group in by_shape.values():
      sizes = [images[v].shape[0] for v in group]
      out, model_state = apply_model(model, params, model_state,
                                     jnp.concatenate([images[v] for v in group]), train=True)
      pieces = {k: jnp.split(val, _offsets(sizes)) for k, val in out.items()}
      for j, view in enumerate(group):
        outputs[view] = {k: pieces[k][j] for k in pieces}
    # 3. Weighted sum of the terms.
    total, metrics = jnp.zeros((), jnp.float32), {}
    states = dict(model_state.get(TERM_STATE_KEY, {}))
    for name, (term, weight, options) in terms.items():
      result = term.compute(TermInputs(
          outputs={v: outputs[v] for v in term_views[name]}, batch=batch, options=options,
          num_classes=num_classes, step=step, state=states.get(name)))
      loss, term_metrics = result[:2]
      if len(result) == 3:
        states[name] = result[2]
      total = total + weight * loss
      metrics[f"loss/{name}"] = loss
      metrics.update({f"{name}/{k}": v for k, v in term_metrics.items()})
    if nan_at_step >= 0:
      total = jnp.where(step == nan_at_step, jnp.nan, total)
    metrics["loss"] = total
    if states:
      model_state = {**model_state, TERM_STATE_KEY: states}
    return total, (model_state, metrics)

  return loss_fn


def _offsets(sizes):
  out, acc = [], 0
  for s in sizes[:-1]:
    acc += s
    out.append(acc)
  return out
