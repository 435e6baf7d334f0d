"""``config.seed`` -> the run's random keys, collision-free over the whole int64 range.

``jax.random.key(seed)`` without ``jax_enable_x64`` keeps only the low 32 bits of the seed
(``2**40`` gives seed 0's key, ``-1`` gives ``2**32 - 1``'s). :func:`seed_key` gives every
int64 seed its own key and, for seeds in ``[0, 2**32)``, exactly the key
``jax.random.key(seed)`` gives, so runs with those seeds (the published tables use 0, 1, 2)
reproduce as before. Every place a seed becomes a key or a numpy seed goes through here.
"""

from __future__ import annotations

import numpy as np

SEED_MIN = -2**63
SEED_MAX = 2**63 - 1


def seed_errors(seed, field: str = "seed") -> list[str]:
  if isinstance(seed, bool) or not isinstance(seed, int):
    return [f"{field} must be an int, got {seed!r}"]
  if not SEED_MIN <= seed <= SEED_MAX:
    return [f"{field} must be in [-2**63, 2**63) (an int64), got {seed}"]
  return []


def _check(seed) -> None:
  errors = seed_errors(seed)
  if errors:
    raise ValueError(errors[0])


def seed_key(seed: int):
  """The run's base key: ``jax.random.key(seed)`` for ``0 <= seed < 2**32``; for any
  other int64 the threefry key of its 64 bits (a different key for every seed)."""
  import jax
  _check(seed)
  low, high = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
  base = jax.random.key(low)
  if high == 0:
    return base
  if jax.random.key_data(base).shape == (2,):  # threefry: key(s) is [s >> 32, s & 0xffffffff]
    return jax.random.wrap_key_data(np.array([high, low], np.uint32))
  return jax.random.fold_in(base, high)  # other PRNG implementations


def numpy_seed(seed: int) -> int:
  """A non-negative seed for ``np.random`` (``SeedSequence`` refuses negative ones):
  ``seed mod 2**64``, the identity for ``seed >= 0`` and one-to-one over int64."""
  _check(seed)
  return seed % 2**64
