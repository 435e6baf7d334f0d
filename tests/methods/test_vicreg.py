"""VICReg through the trainer: one smoke step of experiments/vicreg_digits.py (the loss
itself is tested in tests/losses/test_decorrelation.py)."""

import math

import jax
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.methods import vicreg


def test_smoke_step_reports_the_terms_that_make_the_loss():
  config = load_experiment("vicreg_digits", "smoke")
  exp = experiment.setup(config, devices=jax.devices()[:1])
  before = jax.tree.map(np.asarray, exp.state.params["model"])
  state = exp.state
  for _ in range(2):  # step 0 is at learning rate 0 (warm-up)
    state, metrics = exp.train_step(state, exp.input.arrays)
  o = config.vicreg
  terms = {k: float(metrics[f"vicreg/{k}"]) for k in ("invariance", "variance", "covariance")}
  np.testing.assert_allclose(
      float(metrics["loss/vicreg"]),
      o.sim_coeff * terms["invariance"] + o.std_coeff * terms["variance"]
      + o.cov_coeff * terms["covariance"], rtol=1e-5)
  assert 0.0 <= terms["variance"] <= 1.0 and terms["invariance"] > 0
  changed = jax.tree.map(lambda a, b: not np.allclose(a, np.asarray(b)), before,
                         state.params["model"])
  assert any(jax.tree.leaves(changed["projection_head"]))
  assert any(jax.tree.leaves(changed["encoder"]))


def test_option_errors_name_the_field():
  options = vicreg.OPTIONS.copy_and_resolve_references()
  assert vicreg.option_errors(options) == []
  options.cov_coeff, options.views = -2, "none"
  errors = vicreg.option_errors(options)
  assert any("vicreg.cov_coeff" in e and "-2" in e for e in errors)
  assert "vicreg.views must be one of ('simclr', 'strong'), got 'none'" in errors
  with pytest.raises(ValueError, match="vicreg.std_coeff"):
    config = load_experiment("vicreg_digits", "smoke")
    config.vicreg.std_coeff = -1.0
    experiment.setup(config, devices=jax.devices()[:1])


@pytest.mark.parametrize("field", ['sim_coeff', 'std_coeff', 'cov_coeff'])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_options_are_refused(field, bad):
  from sslx.config import config_errors
  config = load_experiment("vicreg_digits", "smoke")
  config.vicreg[field] = bad
  assert any(f"vicreg.{field}" in e for e in config_errors(config))
