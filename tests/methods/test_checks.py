"""The declarative option validators (sslx.methods.checks): pure Python, no JAX."""

import math

import ml_collections
import pytest

from sslx.methods import Validator, area_range, boolean, check, integer, number, one_of

NAN, INF = math.nan, math.inf


def _passes(validator, values):
  return [v for v in values if validator.ok(v)]


def test_number_closed_and_open_ends():
  assert _passes(number(0, 1), [-0.1, 0, 0.0, 0.5, 1, 1.0, 1.1]) == [0, 0.0, 0.5, 1, 1.0]
  assert _passes(number(0, 1, high_open=True), [0, 0.5, 1.0]) == [0, 0.5]
  assert _passes(number(0, 1, low_open=True), [0, 0.5, 1.0]) == [0.5, 1.0]
  assert _passes(number(0, 1, low_open=True, high_open=True), [0, 1e-9, 1.0]) == [1e-9]
  assert _passes(number(0, low_open=True), [-1, 0, 1e-9, 1e300]) == [1e-9, 1e300]
  assert _passes(number(high=2), [-1e300, 2, 2.5]) == [-1e300, 2]
  assert _passes(number(None, 2), [-1e300, 2, 2.5]) == [-1e300, 2]  # None: unbounded


def test_number_refuses_bool_nan_inf_and_non_numbers():
  for v in (True, False, NAN, INF, -INF, "0.5", None, [0.5], (0.5,)):
    assert not number().ok(v), v
    assert not number(0, 1).ok(v), v
  # inf only where asked for, and only inside the range
  assert number(0, allow_inf=True).ok(INF) and not number(0, allow_inf=True).ok(-INF)
  assert not number(0, allow_inf=True).ok(NAN)
  assert not number(0, high_open=True, allow_inf=True).ok(INF)


def test_number_wanted_text():
  assert number(0, 1).wanted == "a number in [0, 1]"
  assert number(0, 1, high_open=True).wanted == "a number in [0, 1)"
  assert number(0, 0.5, low_open=True).wanted == "a number in (0, 0.5]"
  assert number(0, low_open=True).wanted == "a finite number > 0"
  assert number(1).wanted == "a finite number >= 1"
  assert number(high=1, high_open=True).wanted == "a finite number < 1"
  assert number().wanted == "a finite number"
  assert number(0, allow_inf=True).wanted == "a number >= 0 or inf"


def test_number_and_integer_refuse_bad_bounds():
  with pytest.raises(ValueError, match="`low` must be <= `high`, got 1 > 0"):
    number(1, 0)
  with pytest.raises(ValueError, match="`high` must be a number or None, got nan"):
    number(0, NAN)
  with pytest.raises(ValueError, match="`low` must be <= `high`, got 3 > 2"):
    integer(3, 2)


def test_integer():
  assert _passes(integer(1), [0, 1, 7, 1.0, 2.0, True, "3", None, NAN]) == [1, 7]
  assert _passes(integer(0, 2), [-1, 0, 2, 3]) == [0, 2]
  assert _passes(integer(high=0), [-5, 0, 1]) == [-5, 0]
  assert _passes(integer(), [-5, 0, 5, False, 0.0]) == [-5, 0, 5]
  assert [integer(1).wanted, integer(0, 2).wanted, integer(high=0).wanted, integer().wanted] == [
      "an int >= 1", "an int in [0, 2]", "an int <= 0", "an int"]


def test_boolean_and_one_of():
  assert _passes(boolean(), [True, False, 0, 1, "yes", None]) == [True, False]
  views = one_of("simclr", "strong")
  assert _passes(views, ["simclr", "strong", "weak", None, 1]) == ["simclr", "strong"]
  assert views.wanted == "one of ('simclr', 'strong')"
  assert _passes(one_of(0, 1), [0, 1, True, False, 0.0]) == [0, 1, 0.0]  # a bool is not 1
  with pytest.raises(ValueError, match="at least one choice"):
    one_of()


def test_area_range():
  v = area_range()
  assert _passes(v, [(0.2, 1.0), [0.5, 0.5], (1, 1), (0.0, 1.0), (0.5, 0.2), (0.2, 1.1),
                     (0.2, True), (0.2, NAN), (0.2, 0.5, 1.0), 0.5, "0.2,1"]) == [
      (0.2, 1.0), [0.5, 0.5], (1, 1)]
  assert v.message("a.crop_scale", (0.5, 0.2)) == (
      "a.crop_scale must be (low, high) with 0 < low <= high <= 1, got (0.5, 0.2)")


def test_check_names_field_wanted_and_got_in_table_order():
  options = ml_collections.ConfigDict(dict(threshold=1.5, temperature=0.5, hard_label="yes",
                                           queue_size=-1, views="weak", ema_p=True))
  errors = check("my_method", options, {
      "threshold": number(0, 1),
      "temperature": number(0, low_open=True),  # passes
      "hard_label": boolean(),
      "queue_size": integer(0, hint="0: no queue"),
      "views": one_of("simclr", "strong"),
      "ema_p": number(0, 1, high_open=True),
  })
  assert errors == [
      "my_method.threshold must be a number in [0, 1], got 1.5",
      "my_method.hard_label must be True or False, got 'yes'",
      "my_method.queue_size must be an int >= 0 (0: no queue), got -1",
      "my_method.views must be one of ('simclr', 'strong'), got 'weak'",
      "my_method.ema_p must be a number in [0, 1), got True",
  ]
  options = ml_collections.ConfigDict(dict(threshold=NAN, temperature=1e-3))
  assert check("my_method", options, {"threshold": number(0, 1),
                                      "temperature": number(0, low_open=True)}) == [
      "my_method.threshold must be a number in [0, 1], got nan"]


def test_check_reports_a_missing_field_and_takes_a_custom_validator():
  options = ml_collections.ConfigDict(dict(dim=6))
  multiple_of_4 = Validator("a multiple of 4", lambda v: isinstance(v, int) and v % 4 == 0)
  assert check("m", options, {"dim": multiple_of_4, "k": integer(1)}) == [
      "m.dim must be a multiple of 4, got 6", "m.k is missing; it must be an int >= 1"]
  assert check("m", {"dim": 8}, {"dim": multiple_of_4}) == []  # a plain dict works too


def test_flags_and_pool_options_once_left_unchecked_are_refused_by_name():
  from sslx.methods import fixmatch, label_propagation, mae
  options = fixmatch.OPTIONS.copy_and_resolve_references()
  assert fixmatch.option_errors(options) == []
  options = ml_collections.ConfigDict({**options.to_dict(), "soft_targets": 1,
                                       "distribution_alignment": "yes"})
  errors = fixmatch.option_errors(options)
  assert "fixmatch.soft_targets must be True or False, got 1" in errors
  assert "fixmatch.distribution_alignment must be True or False, got 'yes'" in errors

  options = label_propagation.DEEP_LP_OPTIONS.copy_and_resolve_references()
  assert label_propagation.deep_lp_option_errors(options) == []
  options.start_step, options.embed_batch_size = -1, 0
  errors = label_propagation.deep_lp_option_errors(options)
  assert any(e.startswith("deep_lp.start_step must be an int") and e.endswith("got -1")
             for e in errors), errors
  assert any(e.startswith("deep_lp.embed_batch_size must be an int") and e.endswith("got 0")
             for e in errors), errors

  for bad in (0.5, (0.2, True), (0.2, 0.5, 1.0), "0.2,1"):
    options = ml_collections.ConfigDict({**mae.OPTIONS.to_dict(), "crop_scale": bad})
    assert [e for e in mae.option_errors(options) if e.startswith("mae.crop_scale must be")], bad
