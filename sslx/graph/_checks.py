"""Input checks shared by sslx.graph and the graph pseudo-label losses (private).

Checks that need values (NaN features, label range, classes without labels) run only on
concrete arrays, never under `jit`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def check_int(name: str, value, low: int, high: Optional[int] = None,
               high_doc: str = "") -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"`{name}` must be an int, got {value!r}.")
  value = int(value)
  if value < low or (high is not None and value > high):
    upper = f", {high}]" if high is not None else ", inf)"
    raise ValueError(
        f"`{name}` must be in [{low}{upper}{high_doc}, got {value}.")
  return value


def check_features(name: str, x) -> jax.Array:
  """Rank-2 float array; NaN/inf rejected when the values are known."""
  if jnp.ndim(x) != 2:
    raise ValueError(
        f"`{name}` must have rank 2 ([num_points, num_features]), got shape "
        f"{tuple(jnp.shape(x))}.")
  dtype = jnp.result_type(x)
  if not (jnp.issubdtype(dtype, jnp.floating)
          or jnp.issubdtype(dtype, jnp.integer)):
    raise ValueError(f"`{name}` must be a numeric array, got dtype {dtype}.")
  if not is_traced(x):
    finite = np.isfinite(np.asarray(x)).all(axis=1)
    if not finite.all():
      bad = np.flatnonzero(~finite)
      raise ValueError(
          f"`{name}` must be finite, got NaN or infinite values in "
          f"{bad.size} row(s), first at row {int(bad[0])}.")
  return jnp.asarray(x, jnp.float32)


def check_labels(labels, num_points: int, num_classes: int, *,
                  require_labeled: bool, require_all_classes: bool,
                  name: str = "labels", points: str = "points") -> jax.Array:
  """Labels [N] int in [-1, C); value checks only on concrete arrays."""
  if jnp.ndim(labels) != 1:
    raise ValueError(
        f"`{name}` must have rank 1 ([num_{points}]), got shape "
        f"{tuple(jnp.shape(labels))}.")
  if jnp.shape(labels)[0] != num_points:
    raise ValueError(
        f"`{name}` must have one entry per {points[:-1]}: got "
        f"{jnp.shape(labels)[0]} labels for {num_points} {points}.")
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(
        f"`{name}` must be integers (-1 for unlabeled), got dtype "
        f"{jnp.result_type(labels)}.")
  if not is_traced(labels):
    values = np.asarray(labels)
    bad = (values < -1) | (values >= num_classes)
    if bad.any():
      raise ValueError(
          f"`{name}` must be in [-1, {num_classes}) (-1 for unlabeled, "
          f"num_classes={num_classes}), got {int(values[bad][0])} at index "
          f"{int(np.flatnonzero(bad)[0])}.")
    if require_labeled and not (values >= 0).any():
      raise ValueError(
          f"`{name}` has no labeled point: all entries are -1; at least one "
          f"point per class needs its label.")
    if require_all_classes:
      missing = np.setdiff1d(np.arange(num_classes), values[values >= 0])
      if missing.size:
        raise ValueError(
            f"`{name}` has no labeled point of class(es) "
            f"{missing.tolist()} (num_classes={num_classes}); every class "
            f"needs at least one labeled point to be propagated.")
  return jnp.asarray(labels, jnp.int32)


def check_graph(indices, weights) -> Tuple[jax.Array, jax.Array]:
  if jnp.ndim(indices) != 2:
    raise ValueError(
        f"`indices` must have rank 2 ([num_points, k]), got shape "
        f"{tuple(jnp.shape(indices))}.")
  if not jnp.issubdtype(jnp.result_type(indices), jnp.integer):
    raise ValueError(
        f"`indices` must be integers, got dtype {jnp.result_type(indices)}.")
  if jnp.shape(weights) != jnp.shape(indices):
    raise ValueError(
        f"`weights` must have the shape of `indices` {tuple(jnp.shape(indices))}"
        f", got {tuple(jnp.shape(weights))}.")
  n = jnp.shape(indices)[0]
  if not is_traced(indices):
    values = np.asarray(indices)
    bad = (values < 0) | (values >= n)
    if bad.any():
      raise ValueError(
          f"`indices` must be in [0, {n}) (rows of the graph), got "
          f"{int(values[bad][0])}.")
  if not is_traced(weights):
    w = np.asarray(weights)
    if not np.isfinite(w).all() or (w < 0).any():
      raise ValueError(
          "`weights` must be finite and non-negative (edge weights).")
  return (jnp.asarray(indices, jnp.int32), jnp.asarray(weights, jnp.float32))
