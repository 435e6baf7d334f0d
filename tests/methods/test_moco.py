"""MoCo v3 through the trainer: the momentum schedule, the momentum encoder's EMA over
steps with the official ordering (m of the step it is used in), the predictor as the
method's own module (the loss itself is in tests/losses/test_momentum_contrast.py)."""

import math

import jax
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.methods import moco
from sslx.methods.moco import momentum


def test_momentum_follows_adjust_moco_momentum():
  # main_moco.py: m = 1 - 0.5 * (1 + cos(pi * epoch / epochs)) * (1 - moco_m).
  assert float(momentum(0, 100, 0.99)) == pytest.approx(0.99)
  assert float(momentum(50, 100, 0.99)) == pytest.approx(0.995)
  assert float(momentum(100, 100, 0.99)) == pytest.approx(1.0)
  assert float(momentum(25, 100, 0.9)) == pytest.approx(1 - 0.05 * (1 + np.cos(np.pi / 4)))
  assert float(momentum(70, 100, 0.99, cosine=False)) == pytest.approx(0.99)


def test_momentum_encoder_is_an_ema_with_the_official_momentum_and_the_predictor_trains():
  config = load_experiment("moco_digits", "smoke")
  config.moco.base_momentum = 0.5
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  host = lambda t: jax.tree.map(np.asarray, t)
  target = host(state.method_params["moco"]["momentum_encoder"]["model"])
  jax.tree.map(np.testing.assert_array_equal, target, host(state.params["model"]))  # f_k = f
  predictor = host(state.params["moco"]["predictor"])
  # The output BatchNorm has no affine parameters, the Dense layers no bias.
  assert sorted(predictor) == ["BatchNorm_0", "Dense_0", "Dense_1"]
  assert "bias" not in predictor["Dense_0"] and "bias" not in predictor["Dense_1"]
  for k in range(3):
    state, metrics = exp.train_step(state, exp.input.arrays)
    # Used at step k + 1 (the official update at the start of a step): m(k + 1).
    m = float(momentum(k + 1, config.num_steps, 0.5))
    expected = jax.tree.map(lambda t, o: m * t + (1 - m) * o, target,
                            host(state.params["model"]))
    target = host(state.method_params["moco"]["momentum_encoder"]["model"])
    jax.tree.map(lambda e, t: np.testing.assert_allclose(t, e, rtol=1e-5, atol=1e-7),
                 expected, target)
    np.testing.assert_allclose(float(metrics["moco/momentum"]),
                               float(momentum(k, config.num_steps, 0.5)), rtol=1e-6)
  assert all(not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(predictor), jax.tree.leaves(host(state.params["moco"]["predictor"]))))
  # Two directions, each at most 2T * log(N) (a uniform softmax over N keys is log N).
  n = config.batch_size * config.unlabeled_ratio
  assert 0.0 < float(metrics["loss/moco"]) <= 2 * (2 * config.moco.temperature * np.log(n)) * 1.5
  assert 0.0 <= float(metrics["moco/accuracy"]) <= 1.0


def test_a_queue_smaller_than_the_batch_is_refused_naming_the_field():
  config = load_experiment("moco_digits", "smoke")
  config.moco.queue_size = 8  # the smoke batch has 16 unlabeled images
  exp = experiment.setup(config, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=r"moco.queue_size \(8\) must be at least the unlabeled "
                                       r"batch \(16 images\)"):
    exp.train_step(exp.state, exp.input.arrays)


def test_option_errors_name_the_field():
  options = moco.OPTIONS.copy_and_resolve_references()
  assert moco.option_errors(options) == []
  options.temperature, options.base_momentum, options.views = 0.0, 1.5, "weak"
  options.queue_size = -1
  errors = moco.option_errors(options)
  assert any("moco.queue_size" in e and "-1" in e for e in errors)
  assert any("moco.temperature" in e and "0.0" in e for e in errors)
  assert any("moco.base_momentum" in e and "1.5" in e for e in errors)
  assert "moco.views must be one of ('simclr', 'strong'), got 'weak'" in errors


def test_queue_option_keeps_a_queue_per_view_of_unit_keys():
  config = load_experiment("moco_digits", "smoke")
  config.moco.queue_size = 20  # 16 unlabeled images a step: the second step wraps around
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  queue0 = np.asarray(state.method_state["moco"]["queue"])
  assert queue0.shape == (2, 20, config.model.projection_dim)
  np.testing.assert_allclose(np.linalg.norm(queue0, axis=-1), 1.0, rtol=1e-5)
  state, metrics = exp.train_step(state, exp.input.arrays)
  queue1 = np.asarray(state.method_state["moco"]["queue"])
  assert int(state.method_state["moco"]["pointer"]) == 16
  assert not np.allclose(queue1[:, :16], queue0[:, :16], atol=1e-3)
  np.testing.assert_array_equal(queue1[:, 16:], queue0[:, 16:])  # not reached yet
  np.testing.assert_allclose(np.linalg.norm(queue1, axis=-1), 1.0, rtol=1e-5)
  assert not np.allclose(queue1[0, :16], queue1[1, :16])  # two views, two queues
  state, metrics = exp.train_step(state, exp.input.arrays)
  assert int(state.method_state["moco"]["pointer"]) == 32 % 20
  # v2's loss, both directions: each a cross-entropy over 1 + 20 logits, finite, > 0.
  assert 0.0 < float(metrics["loss/moco"]) < 2 * (2 / config.moco.temperature + np.log(21))
  assert 0.0 <= float(metrics["moco/accuracy"]) <= 1.0


@pytest.mark.parametrize("field", ['temperature', 'base_momentum'])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_options_are_refused(field, bad):
  from sslx.config import config_errors
  config = load_experiment("moco_digits", "smoke")
  config.moco[field] = bad
  assert any(f"moco.{field}" in e for e in config_errors(config))
