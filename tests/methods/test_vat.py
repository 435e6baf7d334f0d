"""VAT: the KL, entropy and power iteration against USB's formulas; one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import entropy_loss, kl_with_logits, vat_perturbation


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _usb_kl_div_with_logit(q_logit, p_logit):
  q, logq, logp = np.exp(_log_softmax(q_logit)), _log_softmax(q_logit), _log_softmax(p_logit)
  return (q * logq).sum(1).mean(0) - (q * logp).sum(1).mean(0)


def _usb_entropy(logits):
  logp = _log_softmax(logits)
  return -(np.exp(logp) * logp).sum(1).mean(0)


def test_kl_and_entropy_match_usb_and_hand_values():
  rng = np.random.default_rng(0)
  a = (2 * rng.normal(size=(6, 4))).astype(np.float32)
  b = (2 * rng.normal(size=(6, 4))).astype(np.float32)
  np.testing.assert_allclose(kl_with_logits(a, b), _usb_kl_div_with_logit(a, b), rtol=1e-5)
  np.testing.assert_allclose(jax.jit(kl_with_logits)(a, b), kl_with_logits(a, b), rtol=1e-6)
  np.testing.assert_allclose(entropy_loss(a), _usb_entropy(a), rtol=1e-5)
  perm = rng.permutation(6)
  np.testing.assert_allclose(kl_with_logits(a[perm], b[perm]), kl_with_logits(a, b), rtol=1e-6)
  assert float(kl_with_logits(a, a)) == pytest.approx(0.0, abs=1e-6)
  assert float(entropy_loss(jnp.zeros((3, 2)))) == pytest.approx(np.log(2.0))
  g_target = jax.grad(lambda t: kl_with_logits(t, b))(a)
  assert float(jnp.abs(g_target).sum()) == 0.0
  with pytest.raises(ValueError, match="logits"):
    kl_with_logits(a, b[:, :3])


def _linear_model(rng, dim=6, num_classes=4):
  w = rng.normal(size=(dim, num_classes)).astype(np.float32)
  return w, (lambda x: x.reshape(x.shape[0], -1) @ w)


def _kl_hessians(x, w):
  """Per example, the Hessian in x of KL(q || softmax((x + r) W)) at r = 0: W (diag p - p p^T) W^T."""
  p = np.exp(_log_softmax(np.asarray(x, np.float64) @ w))
  return np.stack([w @ (np.diag(pi) - np.outer(pi, pi)) @ w.T for pi in p])


def test_one_power_iteration_is_the_hessian_times_the_random_direction():
  rng = np.random.default_rng(1)
  w, model = _linear_model(rng)
  x = rng.normal(size=(5, 6)).astype(np.float32)
  key = jax.random.key(3)
  r = vat_perturbation(model, x, model(x), key, xi=1e-3, eps=2.0, num_iters=1)
  # USB: d ~ N(0, 1), d = xi d / |d|, d = grad KL, r = eps d / |d|; for small xi the
  # gradient is xi * H d / |d|.
  d = np.asarray(jax.random.normal(key, x.shape, jnp.float32), np.float64)
  hd = np.einsum("bij,bj->bi", _kl_hessians(x, w), d / np.linalg.norm(d, axis=1, keepdims=True))
  expected = 2.0 * hd / np.linalg.norm(hd, axis=1, keepdims=True)
  np.testing.assert_allclose(r, expected, atol=2e-3)
  np.testing.assert_allclose(np.linalg.norm(r, axis=1), 2.0, rtol=1e-5)
  jitted = jax.jit(lambda xx, k: vat_perturbation(model, xx, model(xx), k, xi=1e-3, eps=2.0))
  # xi * H d is a difference of float32 probabilities ~1e-3 apart: rounding differs
  # between the fused (jit) and op-by-op programs at ~1e-4 relative.
  np.testing.assert_allclose(jitted(x, key), r, atol=2e-3)


def test_power_iteration_finds_the_most_sensitive_direction():
  rng = np.random.default_rng(2)
  w, model = _linear_model(rng)
  x = rng.normal(size=(4, 6)).astype(np.float32)
  r = np.asarray(vat_perturbation(model, x, model(x), jax.random.key(0), xi=1e-3, eps=1.0,
                                  num_iters=30))
  for i, h in enumerate(_kl_hessians(x, w)):
    top = np.linalg.eigh(h)[1][:, -1]
    assert abs(float(r[i] @ top)) == pytest.approx(1.0, abs=1e-3)
  # Gradients reach the model through the adversarial pass, finitely, not through r_adv.
  g = jax.grad(lambda m: kl_with_logits(model(x), (x + r) @ m))(jnp.asarray(w))
  assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0
  with pytest.raises(ValueError, match="num_iters"):
    vat_perturbation(model, x, model(x), jax.random.key(0), num_iters=0)
  with pytest.raises(ValueError, match="target_logits"):
    vat_perturbation(model, x, model(x)[:2], jax.random.key(0))


def test_smoke_step_leaves_the_running_statistics_to_the_shared_pass():
  def first_step(terms, eps=1.0):
    config = load_experiment("vat_digits", "smoke")
    config.loss.terms = terms
    config.vat.eps = eps
    exp = experiment.setup(config, devices=jax.devices()[:1])
    return exp.train_step(exp.state, exp.input.arrays)

  state, metrics = first_step({"supervised": 1.0, "vat": 1.0}, eps=0.0)
  assert np.isfinite(float(metrics["loss"]))
  # eps = 0: the adversarial pass is the clean pass (same images, same batch statistics),
  # so the KL vanishes; taken from the shared pass, the clean logits would differ.
  assert float(metrics["vat/r_adv_norm"]) == 0.0
  assert float(metrics["vat/kl"]) == pytest.approx(0.0, abs=1e-6)
  assert float(metrics["vat/ramp"]) == 0.0
  assert float(metrics["loss/vat"]) == pytest.approx(0.06 * float(metrics["vat/entropy"]),
                                                     rel=1e-5)
  # Same views, same shared pass, no perturbed pass: BatchNorm statistics must agree.
  other, _ = first_step({"supervised": 1.0, "pseudo_label": 1.0})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               state.model_state, other.model_state)
