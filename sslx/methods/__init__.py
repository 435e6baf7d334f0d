"""Methods as named loss terms, composed by config.

``config.loss.terms = {'supervised': 1.0, 'fixmatch': 1.0}`` turns on the listed terms
with their weights; each term's options live in ``config.<term name>``. One file per
method: copy it to start a new one and register it in ``_MODULES``.
"""

from __future__ import annotations

import ml_collections

from sslx.methods import fixmatch, label_propagation, simclr, supervised
from sslx.methods.base import (TERM_STATE_KEY, VIEWS, Term, TermInputs, apply_model,
                               make_loss_fn, model_variables)

# term name -> (Term, default options (config.<name>), option checker)
_REGISTRY = {
    "supervised": (supervised.TERM, supervised.OPTIONS, supervised.option_errors),
    "fixmatch": (fixmatch.TERM, fixmatch.OPTIONS, fixmatch.option_errors),
    "nt_xent": (simclr.TERM, simclr.OPTIONS, simclr.option_errors),
    "graph": (label_propagation.GRAPH_TERM, label_propagation.GRAPH_OPTIONS,
              label_propagation.option_errors),
    "deep_lp": (label_propagation.DEEP_LP_TERM, label_propagation.DEEP_LP_OPTIONS,
                label_propagation.option_errors),
}
TERMS: dict[str, Term] = {name: entry[0] for name, entry in _REGISTRY.items()}


def term_option_configs() -> dict[str, ml_collections.ConfigDict]:
  """config block name -> default options, one per term."""
  return {name: ml_collections.ConfigDict(entry[1].to_dict())
          for name, entry in _REGISTRY.items()}


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
  ))


def make_augmenters(cfg) -> dict:
  """augmentation name -> ``fn(key, images) -> images``, configured by ``config.augment``."""
  # local imports: keep `import sslx.methods` light
  from sslx.augment.randaugment import strong
  from sslx.augment.simclr import simclr_view
  from sslx.augment.weak import weak
  return {
      "none": lambda key, images: images,
      "weak": lambda key, images: weak(key, images, flip=cfg.flip, translate=cfg.translate),
      "strong": lambda key, images: strong(key, images, flip=cfg.flip, translate=cfg.translate,
                                           num_ops=cfg.num_ops, op_prob=cfg.op_prob,
                                           cutout=cfg.cutout),
      "simclr": lambda key, images: simclr_view(key, images, strength=cfg.simclr_strength,
                                                crop_scale=tuple(cfg.simclr_crop_scale),
                                                blur=cfg.simclr_blur, flip=cfg.flip),
  }


def init_term_states(config, num_classes: int, pool_sizes: dict[str, int]) -> dict:
  """Initial state of every active term that keeps one (empty dict if none does)."""
  return {name: term.init_state(options, num_classes, pool_sizes)
          for name, (term, _, options) in active_terms(config).items()
          if term.init_state is not None}


def active_terms(config) -> dict[str, tuple[Term, float, ml_collections.ConfigDict]]:
  return {name: (TERMS[name], float(w), config.get(name))
          for name, w in config.loss.terms.items() if float(w) != 0.0}


def config_errors(config) -> list[str]:
  errors = []
  terms = config.loss.terms
  for name, weight in terms.items():
    if name not in TERMS:
      errors.append(f"loss.terms has an unknown term {name!r}; known terms: {tuple(TERMS)}")
    elif not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
      errors.append(f"loss.terms.{name} must be a weight >= 0, got {weight!r}")
  if not errors and not any(float(w) > 0 for w in terms.values()):
    errors.append(f"loss.terms must give at least one term a weight > 0, got {terms.to_dict()}")
  for name in terms.keys():
    if name in _REGISTRY and name in config:
      errors.extend(e if e.startswith(f"{name}.") else f"{name}.{e}"
                    for e in _REGISTRY[name][2](config[name]))
  for name in terms.keys():
    if name in TERMS and TERMS[name].needs_projection and not config.model.get("projection_dim"):
      errors.append(f"loss.terms.{name} needs a projection head: set model.projection_dim > 0 "
                    f"(e.g. 128), got {config.model.get('projection_dim')!r}")
  if config.data.streaming and any(TERMS[n].refresh for n in terms.keys() if n in TERMS):
    errors.append(f"loss.terms {tuple(terms.keys())}: a term that re-embeds the whole pool "
                  "(deep_lp) needs the dataset on the devices, not data.streaming=True")
  if errors:  # the checks below read the options checked above
    return errors
  needs_unlabeled = any(VIEWS[v][0] == "unlabeled" for name in terms.keys() if name in TERMS
                        for v in TERMS[name].views_for(config.get(name)))
  if needs_unlabeled and config.unlabeled_ratio < 1:
    errors.append(f"loss.terms {tuple(terms.keys())} read unlabeled images, so unlabeled_ratio "
                  f"must be >= 1, got {config.unlabeled_ratio!r}")
  return errors


__all__ = ["TERM_STATE_KEY", "TERMS", "init_term_states", "model_variables", "Term", "TermInputs", "VIEWS", "active_terms", "apply_model",
           "config_errors", "default_augment_config", "make_augmenters", "make_loss_fn", "term_option_configs"]
