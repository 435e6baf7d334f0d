"""Declarative checks of a method's options (its ``config.<method>`` block).

A method's ``option_errors`` is one table, plus plain code for what spans fields::

  def option_errors(options) -> list[str]:
    errors = check("my_method", options, {
        "threshold": number(0, 1),                    # a number in [0, 1]
        "temperature": number(0, low_open=True),      # a finite number > 0
        "ema_p": number(0, 1, high_open=True),        # a number in [0, 1)
        "queue_size": integer(0, hint="0: no queue"),
        "hard_label": boolean(),
        "views": one_of("simclr", "strong"),
    })
    if not errors and options.base_momentum > options.final_momentum:
      errors.append(...)  # fields that depend on each other: plain code
    return errors

Every message names the field, what is wanted and what was got:
``my_method.threshold must be a number in [0, 1], got 1.5``. Booleans are not numbers
(``True`` is not 1 here), NaN is in no range, and infinity fails unless a number allows it
(``allow_inf=True``). A check of your own is a :class:`Validator`:
``Validator("a multiple of 4", lambda v: isinstance(v, int) and v % 4 == 0)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Validator:
  """What one option must be: ``ok(value) -> bool`` and, for the message, ``wanted``
  (``'a number in [0, 1]'``) and an optional ``hint`` (``'0: no queue'``)."""
  wanted: str
  ok: Callable[[Any], bool]
  hint: str = ""

  def message(self, name: str, value) -> str:
    hint = f" ({self.hint})" if self.hint else ""
    return f"{name} must be {self.wanted}{hint}, got {value!r}"


def _is_real(v) -> bool:
  """int or float, not bool (``True`` is an int to Python, not a number to a config)."""
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(name: str, v):
  if v is not None and (not _is_real(v) or math.isnan(v)):
    raise ValueError(f"`{name}` must be a number or None, got {v!r}")


def number(low: float | None = -math.inf, high: float | None = math.inf, *,
           low_open: bool = False, high_open: bool = False, allow_inf: bool = False,
           hint: str = "") -> Validator:
  """An int or float (not a bool, not NaN) in ``low .. high``, each end closed unless
  ``low_open``/``high_open`` (None: unbounded); infinite only with ``allow_inf`` (and an
  infinite bound).

  ``number(0, 1)``: in [0, 1]; ``number(0, 1, high_open=True)``: in [0, 1);
  ``number(0, low_open=True)``: finite and > 0; ``number(0)``: finite and >= 0.
  """
  _bound("low", low)
  _bound("high", high)
  low, high = -math.inf if low is None else low, math.inf if high is None else high
  if low > high:
    raise ValueError(f"`low` must be <= `high`, got {low} > {high}")

  def ok(v) -> bool:
    if not _is_real(v) or math.isnan(v) or (math.isinf(v) and not allow_inf):
      return False
    return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)

  lo, hi = ">" if low_open else ">=", "<" if high_open else "<="
  if math.isfinite(low) and math.isfinite(high):
    wanted = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  else:
    wanted = "a number" if allow_inf else "a finite number"
    if math.isfinite(low):
      wanted += f" {lo} {low}"
    elif math.isfinite(high):
      wanted += f" {hi} {high}"
    if allow_inf:
      wanted += "".join(f" or {s}" for s in ("inf", "-inf") if ok(float(s)))
  return Validator(wanted, ok, hint)


def integer(low: int | None = None, high: int | None = None, *, hint: str = "") -> Validator:
  """A Python int (not a bool, not a float such as 2.0) in ``[low, high]`` (None: unbounded)."""
  _bound("low", low)
  _bound("high", high)
  if low is not None and high is not None and low > high:
    raise ValueError(f"`low` must be <= `high`, got {low} > {high}")

  def ok(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)
            and (low is None or v >= low) and (high is None or v <= high))

  if low is not None and high is not None:
    wanted = f"an int in [{low}, {high}]"
  elif low is not None:
    wanted = f"an int >= {low}"
  elif high is not None:
    wanted = f"an int <= {high}"
  else:
    wanted = "an int"
  return Validator(wanted, ok, hint)


def boolean(*, hint: str = "") -> Validator:
  """``True`` or ``False`` (not 0/1, not 'yes')."""
  return Validator("True or False", lambda v: isinstance(v, bool), hint)


def one_of(*choices, hint: str = "") -> Validator:
  """One of ``choices`` (compared with ``==``; ``True`` does not match a choice ``1``)."""
  if not choices:
    raise ValueError("one_of needs at least one choice, got none")

  def ok(v) -> bool:
    return any(isinstance(v, bool) == isinstance(c, bool) and v == c for c in choices)

  return Validator(f"one of {choices!r}", ok, hint)


def area_range(*, hint: str = "") -> Validator:
  """A crop's area range: a pair ``(low, high)`` of finite numbers, ``0 < low <= high <= 1``."""
  def ok(v) -> bool:
    return (isinstance(v, (tuple, list)) and len(v) == 2
            and all(_is_real(x) and math.isfinite(x) for x in v) and 0 < v[0] <= v[1] <= 1)

  return Validator("(low, high) with 0 < low <= high <= 1", ok, hint)


def check(method: str, options, table: Mapping[str, Validator]) -> list[str]:
  """The errors of ``options`` (a ``config.<method>`` block) against ``table``
  (``{field: Validator}``), in the table's order; ``[]`` when every field passes.

  A field missing from ``options`` is an error too (a config written before the field
  existed), not a ``KeyError``.
  """
  errors = []
  for field, validator in table.items():
    name = f"{method}.{field}"
    if field not in options:
      errors.append(f"{name} is missing; it must be {validator.wanted}")
      continue
    value = options[field]
    if not validator.ok(value):
      errors.append(validator.message(name, value))
  return errors
