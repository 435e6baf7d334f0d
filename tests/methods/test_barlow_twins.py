"""Barlow Twins through the trainer: one smoke step of experiments/barlow_twins_digits.py
(the loss itself is tested in tests/losses/test_decorrelation.py)."""

import math

import jax
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.methods import barlow_twins


def test_smoke_step_uses_the_projection_and_reports_the_correlation():
  config = load_experiment("barlow_twins_digits", "smoke")
  exp = experiment.setup(config, devices=jax.devices()[:1])
  before = jax.tree.map(np.asarray, exp.state.params["model"])
  state = exp.state
  for _ in range(2):  # step 0 is at learning rate 0 (warm-up)
    state, metrics = exp.train_step(state, exp.input.arrays)
  loss = float(metrics["loss/barlow_twins"])
  d = config.model.projection_dim
  # Bounded by the identity's worst case: each C_ij is a correlation, |C_ij| <= 1.
  assert 0.0 < loss <= d * 4 + config.barlow_twins.lambda_offdiag * d * (d - 1)
  assert -1.0 <= float(metrics["barlow_twins/on_diagonal"]) <= 1.0
  assert 0.0 <= float(metrics["barlow_twins/off_diagonal"]) <= 1.0
  changed = jax.tree.map(lambda a, b: not np.allclose(a, np.asarray(b)), before,
                         state.params["model"])
  assert any(jax.tree.leaves(changed["projection_head"]))
  assert any(jax.tree.leaves(changed["encoder"]))


def test_option_errors_name_the_field():
  options = barlow_twins.OPTIONS.copy_and_resolve_references()
  assert barlow_twins.option_errors(options) == []
  options.lambda_offdiag, options.views = -1.0, "weak"
  errors = barlow_twins.option_errors(options)
  assert any("barlow_twins.lambda_offdiag" in e and "-1.0" in e for e in errors)
  assert "barlow_twins.views must be one of ('simclr', 'strong'), got 'weak'" in errors
  with pytest.raises(ValueError, match="barlow_twins.lambda_offdiag"):
    config = load_experiment("barlow_twins_digits", "smoke")
    config.barlow_twins.lambda_offdiag = -0.5
    experiment.setup(config, devices=jax.devices()[:1])


@pytest.mark.parametrize("field", ['lambda_offdiag'])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_options_are_refused(field, bad):
  from sslx.config import config_errors
  config = load_experiment("barlow_twins_digits", "smoke")
  config.barlow_twins[field] = bad
  assert any(f"barlow_twins.{field}" in e for e in config_errors(config))
