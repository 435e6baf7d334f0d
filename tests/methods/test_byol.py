"""BYOL: the loss against the official formula, the momentum schedule, the target's EMA
over steps and the predictor as the method's own trained module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import byol_loss
from sslx.methods.byol import momentum


def _official(p, z):
  """solo-learn's byol_loss_func / BYOL's regression_loss: 2 - 2 * mean cosine."""
  p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
  cos = (p * z).sum(-1) / np.maximum(np.linalg.norm(p, axis=-1) * np.linalg.norm(z, axis=-1), 1e-12)
  return 2 - 2 * cos.mean()


def test_byol_loss_matches_the_official_formula():
  rng = np.random.default_rng(0)
  p, z = rng.normal(size=(2, 8, 5)).astype(np.float32)
  np.testing.assert_allclose(byol_loss(p, z), _official(p, z), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(byol_loss)(p, z), byol_loss(p, z), rtol=1e-6)
  perm = rng.permutation(8)
  np.testing.assert_allclose(byol_loss(p[perm], z[perm]), byol_loss(p, z), rtol=1e-6)
  # Hand values: same direction 0, opposite 4, orthogonal 2 (scale does not matter).
  e1, e2 = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 3.0]])
  assert float(byol_loss(e1, 5 * e1)) == pytest.approx(0.0, abs=1e-6)
  assert float(byol_loss(e1, -e1)) == pytest.approx(4.0)
  assert float(byol_loss(e1, e2)) == pytest.approx(2.0)
  assert float(jnp.abs(jax.grad(lambda t: byol_loss(p, t))(z)).sum()) == 0.0  # stop-gradient
  jax.test_util.check_grads(lambda x: byol_loss(x, z), (p,), order=1, modes=["rev"],
                            atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="same shape"):
    byol_loss(p, z[:, :4])


def test_momentum_follows_the_cosine_schedule():
  assert float(momentum(0, 100, 0.99, 1.0)) == pytest.approx(0.99)
  assert float(momentum(50, 100, 0.99, 1.0)) == pytest.approx(0.995)
  assert float(momentum(100, 100, 0.99, 1.0)) == pytest.approx(1.0)


def test_target_is_a_momentum_average_and_the_predictor_trains():
  config = load_experiment("byol_digits", "smoke")
  config.byol.base_momentum = 0.5
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  host = lambda t: jax.tree.map(np.asarray, t)
  target = host(state.method_params["byol"]["target"]["model"])
  predictor = host(state.params["byol"]["predictor"])
  stats = host(state.model_state["byol"]["predictor"])
  for k in range(3):
    state, metrics = exp.train_step(state, exp.input.arrays)
    tau = float(momentum(k, config.num_steps, 0.5, 1.0))
    expected = jax.tree.map(lambda t, o: tau * t + (1 - tau) * o, target,
                            host(state.params["model"]))
    target = host(state.method_params["byol"]["target"]["model"])
    jax.tree.map(lambda e, t: np.testing.assert_allclose(t, e, rtol=1e-5, atol=1e-7),
                 expected, target)
    np.testing.assert_allclose(float(metrics["byol/tau"]), tau, rtol=1e-6)
  assert all(not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(predictor), jax.tree.leaves(host(state.params["byol"]["predictor"]))))
  assert not np.allclose(jax.tree.leaves(stats)[0],
                         jax.tree.leaves(host(state.model_state["byol"]["predictor"]))[0])
  assert 0.0 <= float(metrics["loss/byol"]) <= 8.0
