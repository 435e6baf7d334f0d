"""SimSiam: the loss against the official formula, its stop-gradient, and the predictor as
the method's own trained module with no target tree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import simsiam_loss
from sslx.methods.simsiam import output_std


def _official(p1, p2, z1, z2):
  """main_simsiam.py: -(cos(p1, z2).mean() + cos(p2, z1).mean()) * 0.5, torch's cosine."""
  def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na = np.maximum(np.linalg.norm(a, axis=-1), 1e-8)
    nb = np.maximum(np.linalg.norm(b, axis=-1), 1e-8)
    return (a * b).sum(-1) / (na * nb)
  return -(cos(p1, z2).mean() + cos(p2, z1).mean()) * 0.5


def test_simsiam_loss_matches_the_official_formula():
  rng = np.random.default_rng(0)
  p1, p2, z1, z2 = rng.normal(size=(4, 8, 5)).astype(np.float32)
  sym = lambda a, b, c, d: 0.5 * (simsiam_loss(a, d) + simsiam_loss(b, c))
  np.testing.assert_allclose(sym(p1, p2, z1, z2), _official(p1, p2, z1, z2), rtol=1e-5)
  np.testing.assert_allclose(jax.jit(sym)(p1, p2, z1, z2), sym(p1, p2, z1, z2), rtol=1e-6)
  perm = rng.permutation(8)
  np.testing.assert_allclose(simsiam_loss(p1[perm], z2[perm]), simsiam_loss(p1, z2), rtol=1e-6)
  # Pairs matter: permuting one side changes the value.
  assert abs(float(simsiam_loss(p1[perm], z2) - simsiam_loss(p1, z2))) > 1e-2
  # Hand values: same direction -1, opposite +1, orthogonal 0 (scale does not matter);
  # a batch of two mixes them: (-1 + 0) / 2.
  e1, e2 = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 3.0]])
  assert float(simsiam_loss(e1, 5 * e1)) == pytest.approx(-1.0)
  assert float(simsiam_loss(e1, -e1)) == pytest.approx(1.0)
  assert float(simsiam_loss(e1, e2)) == pytest.approx(0.0, abs=1e-7)
  assert float(simsiam_loss(jnp.concatenate([e1, e1]), jnp.concatenate([2 * e1, e2]))) == (
      pytest.approx(-0.5))
  # Stop-gradient on the target; finite, correct gradients on the prediction.
  assert float(jnp.abs(jax.grad(lambda t: simsiam_loss(p1, t))(z2)).sum()) == 0.0
  jax.test_util.check_grads(lambda x: simsiam_loss(x, z2), (p1,), order=1, modes=["rev"],
                            atol=1e-2, rtol=1e-2)
  g = jax.grad(lambda x: simsiam_loss(x, z2))(jnp.zeros_like(p1).at[1:].set(p1[1:]))
  assert np.isfinite(np.asarray(g)).all()  # a zero prediction
  assert simsiam_loss(p1.astype(jnp.bfloat16), z2).dtype == jnp.float32
  with pytest.raises(ValueError, match="same shape"):
    simsiam_loss(p1, z2[:, :4])
  with pytest.raises(ValueError, match=r"`prediction` must be \[batch, dim\]"):
    simsiam_loss(p1[0], z2[0])


def test_output_std_is_the_collapse_monitor():
  # Collapsed outputs: 0; the 2d orthonormal basis and its negatives: per-dim std 1/sqrt(2).
  assert float(output_std(jnp.ones((6, 4)))) == pytest.approx(0.0, abs=1e-7)
  z = jnp.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -1.0]])
  assert float(output_std(z)) == pytest.approx(1 / np.sqrt(2), rel=1e-6)


def test_smoke_step_trains_the_predictor_and_has_no_target():
  exp = experiment.setup(load_experiment("simsiam_digits", "smoke"), devices=jax.devices()[:1])
  host = lambda t: jax.tree.map(np.asarray, t)
  state = exp.state
  assert "simsiam" not in state.method_params or not state.method_params["simsiam"]
  predictor = host(state.params["simsiam"]["predictor"])
  assert predictor["Dense_0"]["kernel"].shape == (16, 4)  # projection 16 -> bottleneck 4
  assert "bias" not in predictor["Dense_0"]
  for _ in range(2):
    state, metrics = exp.train_step(state, exp.input.arrays)
  loss = float(metrics["loss/simsiam"])
  assert -1.0 <= loss <= 1.0
  assert float(metrics["simsiam/cosine"]) == pytest.approx(-loss)
  assert 0.0 < float(metrics["simsiam/output_std"]) <= 1.0
  assert all(not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(predictor), jax.tree.leaves(host(state.params["simsiam"]["predictor"]))))
