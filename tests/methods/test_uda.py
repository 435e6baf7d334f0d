"""UDA: TSA and the consistency term against the authors' formulas, one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import fixmatch_consistency, tsa_cross_entropy, tsa_threshold, uda_consistency


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _authors_tsa(schedule, step, num_steps, num_classes):
  """google-research/uda get_tsa_threshold(start=1/K, end=1)."""
  r = step / num_steps
  coeff = {"linear_schedule": r, "exp_schedule": np.exp((r - 1) * 5),
           "log_schedule": 1 - np.exp(-r * 5)}[schedule]
  return coeff * (1 - 1 / num_classes) + 1 / num_classes


def _authors_anneal_sup_loss(logits, labels, eta):
  """anneal_sup_loss: drop examples whose correct-class prob > eta; mean over the kept."""
  log_p = _log_softmax(logits)
  ce = -log_p[np.arange(len(labels)), labels]
  mask = 1.0 - (np.exp(-ce) > eta)
  return (ce * mask).sum() / max(mask.sum(), 1.0), mask


def _authors_uda(ori_logits, aug_logits, temp, thresh):
  """KL(softmax(ori / T) || softmax(aug)) * 1[max softmax(ori) > thresh], batch mean."""
  log_t = _log_softmax(np.asarray(ori_logits, np.float64) / temp)
  kl = (np.exp(log_t) * (log_t - _log_softmax(aug_logits))).sum(-1)
  mask = (np.exp(_log_softmax(ori_logits)).max(-1) > thresh).astype(np.float64)
  return (kl * mask).mean(), mask


def test_tsa_threshold_matches_the_authors_and_hand_values():
  for name, ours in (("linear_schedule", "linear"), ("exp_schedule", "exp"),
                     ("log_schedule", "log")):
    for step in (0, 250, 700, 1000):
      np.testing.assert_allclose(tsa_threshold(step, 1000, schedule=ours, num_classes=10),
                                 _authors_tsa(name, step, 1000, 10), rtol=1e-6)
  assert float(tsa_threshold(500, 1000, schedule="linear", num_classes=10)) == pytest.approx(0.55)
  assert float(tsa_threshold(1000, 1000, schedule="exp", num_classes=10)) == pytest.approx(1.0)
  assert float(tsa_threshold(0, 1000, schedule="log", num_classes=10)) == pytest.approx(0.1)
  assert float(tsa_threshold(3, 1000, schedule="none", num_classes=10)) == 1.0
  jitted = jax.jit(lambda s: tsa_threshold(s, 1000, schedule="log", num_classes=10))(300)
  np.testing.assert_allclose(jitted, _authors_tsa("log_schedule", 300, 1000, 10), rtol=1e-6)
  with pytest.raises(ValueError, match="schedule"):
    tsa_threshold(0, 10, schedule="cosine", num_classes=10)


def test_tsa_cross_entropy_matches_the_authors():
  rng = np.random.default_rng(0)
  logits = (2 * rng.normal(size=(10, 4))).astype(np.float32)
  labels = rng.integers(0, 4, size=10)
  for eta in (0.3, 0.6, 1.0):
    expected, mask = _authors_anneal_sup_loss(logits, labels, eta)
    loss, aux = tsa_cross_entropy(logits, labels, threshold=eta)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_array_equal(aux["mask"], mask)
  assert 0 < float(tsa_cross_entropy(logits, labels, threshold=0.3)[1]["trained_ratio"]) < 1
  # eta = 1: the plain mean cross-entropy.
  plain = -_log_softmax(logits)[np.arange(10), labels].mean()
  np.testing.assert_allclose(tsa_cross_entropy(logits, labels, threshold=1.0)[0], plain,
                             rtol=1e-5)
  # Every example dropped: 0, not 0 / 0.
  assert float(tsa_cross_entropy(logits, labels, threshold=0.0)[0]) == 0.0
  with pytest.raises(ValueError, match="labels"):
    tsa_cross_entropy(logits, labels[:3], threshold=1.0)


def test_uda_consistency_matches_the_authors_and_fixmatch_gradient():
  rng = np.random.default_rng(1)
  weak = (3 * rng.normal(size=(12, 5))).astype(np.float32)
  strong = (3 * rng.normal(size=(12, 5))).astype(np.float32)
  for temp, thresh in ((0.4, 0.8), (1.0, 0.0), (0.7, 0.5)):
    expected, mask = _authors_uda(weak, strong, temp, thresh)
    loss, aux = uda_consistency(weak, strong, threshold=thresh, temperature=temp)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_array_equal(aux["mask"], mask)
  loss, aux = uda_consistency(weak, strong, threshold=0.5, temperature=0.7)
  assert 0 < float(aux["mask_rate"]) < 1
  jitted = jax.jit(lambda a, b: uda_consistency(a, b, threshold=0.5, temperature=0.7)[0])
  np.testing.assert_allclose(jitted(weak, strong), loss, rtol=1e-6)
  perm = rng.permutation(12)
  np.testing.assert_allclose(
      uda_consistency(weak[perm], strong[perm], threshold=0.5, temperature=0.7)[0], loss,
      rtol=1e-6)
  # KL and FixMatch's soft-target cross-entropy differ by a constant: same gradient.
  g_kl = jax.grad(lambda s: uda_consistency(weak, s, threshold=0.5, temperature=0.7)[0])(strong)
  g_ce = jax.grad(lambda s: fixmatch_consistency(weak, s, threshold=0.5, soft_targets=True,
                                                 sharpen_temperature=0.7)[0])(strong)
  np.testing.assert_allclose(g_kl, g_ce, atol=1e-6)
  assert float(jnp.abs(g_kl).sum()) > 0
  g_weak = jax.grad(lambda w: uda_consistency(w, strong, threshold=0.5, temperature=0.7)[0])(weak)
  assert float(jnp.abs(g_weak).sum()) == 0.0
  # Hand-computed: identical logits at T = 1 give KL 0; a uniform strong view against a
  # confident [log 3, 0] weak view gives 0.75 log 1.5 + 0.25 log 0.5.
  assert float(uda_consistency(weak, weak, threshold=0.0, temperature=1.0)[0]) == pytest.approx(
      0.0, abs=1e-6)
  hand = uda_consistency(jnp.array([[np.log(3.0), 0.0]]), jnp.zeros((1, 2)), threshold=0.7,
                         temperature=1.0)[0]
  assert float(hand) == pytest.approx(0.75 * np.log(1.5) + 0.25 * np.log(0.5), rel=1e-5)
  with pytest.raises(ValueError, match="temperature"):
    uda_consistency(weak, strong, temperature=0.0)
  with pytest.raises(ValueError, match="logits_weak"):
    uda_consistency(weak, strong[:, :3])


def test_option_errors_name_the_field():
  config = load_experiment("uda_digits", "smoke")
  config.uda.tsa = "cosine"
  with pytest.raises(ValueError, match="uda.tsa"):
    experiment.setup(config, devices=jax.devices()[:1])


def test_smoke_training_steps_with_linear_tsa():
  config = load_experiment("uda_digits", "smoke")
  config.uda.tsa = "linear"
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  etas = []
  for _ in range(2):
    state, metrics = exp.train_step(state, exp.input.arrays)
    etas.append(float(metrics["uda/tsa_threshold"]))
    assert np.isfinite(float(metrics["loss"]))
  # smoke: 6 steps, 10 classes: eta = 0.1 + 0.9 * step / 6.
  np.testing.assert_allclose(etas, [0.1, 0.1 + 0.9 / 6], rtol=1e-6)
  assert float(metrics["loss/uda"]) == pytest.approx(
      float(metrics["uda/sup_loss"]) + float(metrics["uda/unsup_loss"]), rel=1e-5)
  assert "loss/supervised" not in metrics
