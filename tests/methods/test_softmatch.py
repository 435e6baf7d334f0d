"""SoftMatch: the truncated Gaussian weights, their EMAs and uniform alignment against
USB's hooks (in numpy), hand-computed values, the checkpointed state, one smoke step."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, train
from sslx.losses import (align_distribution, distribution_alignment_update, softmatch_update,
                         softmatch_weights)
from sslx.methods import softmatch


class UsbDistAlign:
  """USB's DistAlignEMAHook.dist_align (update, then align), re-written in numpy."""

  def __init__(self, k, m, target_type):
    self.m, self.update_target = m, target_type == "model"
    self.p_target, self.p_model = np.ones(k) / k, None

  def dist_align(self, ulb_probs, lb_probs=None):
    mean = ulb_probs.mean(0)
    self.p_model = mean if self.p_model is None else self.p_model * self.m + mean * (1 - self.m)
    if self.update_target:
      self.p_target = self.p_target * self.m + lb_probs.mean(0) * (1 - self.m)
    aligned = ulb_probs * (self.p_target + 1e-6) / (self.p_model + 1e-6)
    return aligned / aligned.sum(-1, keepdims=True)


class UsbSoftMatchWeighting:
  """USB's SoftMatchWeightingHook (per_class=False): update, then weight, in numpy."""

  def __init__(self, k, m, n_sigma=2):
    self.m, self.n_sigma, self.mu, self.var = m, n_sigma, 1.0 / k, 1.0

  def masking(self, probs):
    max_probs = probs.max(-1)
    self.mu = self.m * self.mu + (1 - self.m) * max_probs.mean()
    self.var = self.m * self.var + (1 - self.m) * max_probs.var(ddof=1)
    return np.exp(-(np.minimum(max_probs - self.mu, 0.0) ** 2) / (2 * self.var / self.n_sigma ** 2))


def test_hand_computed_values():
  # EMAs with lambda = .5 from USB's start (mu = 1/2 for two classes, var = 1):
  # batch mean .7, unbiased variance .08.
  mean, var = softmatch_update(jnp.float32(0.5), jnp.float32(1.0), jnp.array([0.9, 0.5]),
                               momentum=0.5)
  np.testing.assert_allclose([mean, var], [0.6, 0.54], rtol=1e-6)
  # Weights: 1 at or above the mean; exp(-.2^2 / (2 * .04 / 2^2)) = exp(-2) below.
  w = softmatch_weights(jnp.array([0.9, 0.7, 0.5]), jnp.float32(0.7), jnp.float32(0.04))
  np.testing.assert_allclose(w, [1.0, 1.0, np.exp(-2.0)], rtol=1e-5)
  # Uniform alignment undoes a model that favours class 0 as much as this prediction does.
  np.testing.assert_allclose(align_distribution(jnp.array([[0.8, 0.2]]), jnp.array([0.8, 0.2]),
                                                jnp.array([0.5, 0.5])), [[0.5, 0.5]], atol=1e-6)
  # The first alignment update sets p_model to the batch mean; later ones are EMAs.
  p, t, n = distribution_alignment_update(jnp.zeros(2), jnp.full(2, 0.5), jnp.int32(0),
                                          jnp.array([[0.8, 0.2], [0.4, 0.6]]), momentum=0.5)
  np.testing.assert_allclose(p, [0.6, 0.4], rtol=1e-6)
  assert int(n) == 1 and np.allclose(t, 0.5)
  p, t, n = distribution_alignment_update(p, t, n, jnp.array([[1.0, 0.0]]),
                                          jnp.array([[0.0, 1.0]]), momentum=0.5)
  np.testing.assert_allclose(p, [0.8, 0.2], rtol=1e-6)
  np.testing.assert_allclose(t, [0.25, 0.75], rtol=1e-6)
  with pytest.raises(ValueError, match="confidence"):
    softmatch_update(jnp.float32(0.5), jnp.float32(1.0), jnp.array([0.9]))
  with pytest.raises(ValueError, match="p_model"):
    align_distribution(jnp.ones((2, 3)) / 3, jnp.ones(2), jnp.ones(3))


@pytest.mark.parametrize("target", ["uniform", "model"])
def test_state_sequence_matches_usb_hooks(target):
  rng = np.random.default_rng(2)
  k, m = 4, 0.8
  da, weighting = UsbDistAlign(k, m, target), UsbSoftMatchWeighting(k, m)
  state = (jnp.zeros(k), jnp.full(k, 1.0 / k), jnp.int32(0), jnp.float32(1.0 / k),
           jnp.float32(1.0))

  @jax.jit
  def step(state, probs, probs_lb):
    p, t, n = distribution_alignment_update(*state[:3], probs,
                                            probs_lb if target == "model" else None, momentum=m)
    conf = jnp.max(align_distribution(probs, p, t), -1)
    mu, var = softmatch_update(state[3], state[4], conf, momentum=m)
    return (p, t, n, mu, var), softmatch_weights(conf, mu, var)

  for _ in range(10):
    probs = rng.dirichlet(np.full(k, 0.5), size=9).astype(np.float32)
    probs_lb = rng.dirichlet(np.full(k, 0.5), size=3).astype(np.float32)
    aligned = da.dist_align(probs.astype(np.float64), probs_lb.astype(np.float64))
    want = weighting.masking(aligned)
    state, weights = step(state, probs, probs_lb)
    np.testing.assert_allclose(weights, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state[0], da.p_model, rtol=1e-5)
    np.testing.assert_allclose(state[1], da.p_target, rtol=1e-5)
    np.testing.assert_allclose([state[3], state[4]], [weighting.mu, weighting.var], rtol=1e-5)
  assert 0 < float(jnp.min(weights)) < 1 and float(jnp.max(weights)) == 1.0


def test_option_errors_name_the_field():
  opts = ml_collections.ConfigDict({**softmatch.OPTIONS.to_dict(), "n_sigma": 0,
                                    "dist_uniform": "yes"})
  errors = softmatch.option_errors(opts)
  assert any("softmatch.n_sigma" in e for e in errors)
  assert any("softmatch.dist_uniform" in e for e in errors)
  assert "labeled_weak" not in softmatch.views(softmatch.OPTIONS)
  assert "labeled_weak" in softmatch.views(ml_collections.ConfigDict(dict(dist_uniform=False)))


def test_smoke_step_weights_and_state_survive_a_checkpoint(tmp_path):
  config = load_experiment("softmatch_digits", "smoke")
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  sm = state.method_state["softmatch"]
  assert int(sm["da_updates"]) == 1
  np.testing.assert_allclose(float(jnp.sum(sm["p_model"])), 1.0, rtol=1e-5)  # the batch mean
  np.testing.assert_allclose(float(sm["conf_mean"]), float(metrics["softmatch/conf_mean"]))
  assert 0 < float(metrics["softmatch/mask_rate"]) <= 1
  assert np.isfinite(float(metrics["loss/softmatch"]))
  assert np.isfinite(float(metrics["grad_norm"]))
  assert "softmatch/pseudo_label_accuracy" in metrics
  restored = flax.serialization.from_state_dict(sm, flax.serialization.to_state_dict(
      jax.tree.map(np.asarray, sm)))
  manager = train._checkpoint_manager(str(tmp_path), 2)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  back = train.restore_checkpoint(manager, exp.state).method_state["softmatch"]
  manager.close()
  for got in (restored, back):
    for name in sm:
      np.testing.assert_array_equal(got[name], sm[name])
