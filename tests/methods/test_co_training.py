"""Co-training: the cross pseudo-label loss, Deep Co-Training's JS term, FGSM views,
view difference and ramp against their formulas, the method on stand-in networks against
the loss written in numpy (plain and with every Deep Co-Training term), and one training
step that trains both networks."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import (co_training_js_divergence, co_training_view_difference,
                         cross_pseudo_label_loss, exp_rampup, fgsm_perturbation)
from sslx.methods import co_training


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _cross_pl(teacher, student, tau):
  p = _softmax(teacher)
  mask = p.max(-1) >= tau
  ce = -np.log(_softmax(student))[np.arange(len(p)), p.argmax(-1)]
  return (mask * ce).mean(), mask


def _js(z1, z2):
  """Qiao et al. Eq. 3: H(mean) - (H(p1) + H(p2)) / 2, averaged over the batch."""
  h = lambda p: -(p * np.log(p)).sum(-1)
  p1, p2 = _softmax(z1), _softmax(z2)
  return (h((p1 + p2) / 2) - (h(p1) + h(p2)) / 2).mean()


def test_cross_pseudo_label_loss():
  rng = np.random.default_rng(0)
  teacher = (3 * rng.normal(size=(8, 5))).astype(np.float32)
  student = rng.normal(size=(8, 5)).astype(np.float32)
  loss, mask = cross_pseudo_label_loss(teacher, student, threshold=0.7)
  want, want_mask = _cross_pl(teacher, student, 0.7)
  assert 0 < want_mask.sum() < 8  # the threshold bites both ways on this draw
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_array_equal(mask, want_mask)
  jitted = jax.jit(lambda a, b: cross_pseudo_label_loss(a, b, threshold=0.7))(teacher, student)
  np.testing.assert_allclose(jitted[0], loss, rtol=1e-6)
  p = rng.permutation(8)
  np.testing.assert_allclose(cross_pseudo_label_loss(teacher[p], student[p], threshold=0.7)[0],
                             loss, rtol=1e-5)
  # Hand value: a confident teacher on class 1, a uniform 2-class student: log 2 / 2 rows.
  hand, _ = cross_pseudo_label_loss(jnp.array([[0.0, 9.0], [0.0, 0.0]]), jnp.zeros((2, 2)),
                                    threshold=0.9)
  np.testing.assert_allclose(hand, np.log(2) / 2, rtol=1e-6)
  g_t, g_s = jax.grad(lambda a, b: cross_pseudo_label_loss(a, b, threshold=0.7)[0],
                      argnums=(0, 1))(teacher, student)
  assert float(jnp.abs(g_t).sum()) == 0.0 and np.isfinite(np.asarray(g_s)).all()
  with pytest.raises(ValueError, match="threshold"):
    cross_pseudo_label_loss(teacher, student, threshold=1.5)
  with pytest.raises(ValueError, match="logits_student"):
    cross_pseudo_label_loss(teacher, student[:, :4], threshold=0.5)


def test_js_divergence_and_ramp():
  rng = np.random.default_rng(1)
  z1, z2 = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(2))
  js = co_training_js_divergence(z1, z2)
  np.testing.assert_allclose(js, _js(z1, z2), rtol=1e-5)
  np.testing.assert_allclose(co_training_js_divergence(z2, z1), js, rtol=1e-6)  # symmetric
  np.testing.assert_allclose(jax.jit(co_training_js_divergence)(z1, z2), js, rtol=1e-6)
  assert float(co_training_js_divergence(z1, z1)) == pytest.approx(0.0, abs=1e-6)
  # Hand value: two confident networks that disagree: JS = log 2; finite gradients there.
  far = jnp.array([[60.0, -60.0]]), jnp.array([[-60.0, 60.0]])
  np.testing.assert_allclose(co_training_js_divergence(*far), np.log(2), rtol=1e-5)
  g = jax.grad(co_training_js_divergence, argnums=(0, 1))(*far)
  assert all(np.isfinite(np.asarray(x)).all() for x in g)
  g = jax.grad(co_training_js_divergence, argnums=(0, 1))(z1, z2)
  assert all(float(jnp.abs(x).sum()) > 0 for x in g)  # both networks learn from it
  # exp(-5 (1 - t)^2), t = step / (warmup * num_steps), clipped at 1.
  got = [float(exp_rampup(s, 100, warmup=0.2)) for s in (0, 10, 20, 50)]
  np.testing.assert_allclose(got, [np.exp(-5), np.exp(-5 * 0.25), 1.0, 1.0], rtol=1e-6)
  assert float(exp_rampup(0, 100, warmup=0.0)) == 1.0


def test_method_on_stand_in_networks_matches_the_formula():
  rng = np.random.default_rng(2)
  k, n_l, n_u = 3, 3, 5
  w1, w2 = (rng.normal(size=(4, k)).astype(np.float32) * 3 for _ in range(2))
  flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
  images = {"labeled_weak": rng.normal(size=(n_l, 2, 2, 1)),
            "unlabeled_weak": rng.normal(size=(n_u, 2, 2, 1)),
            "unlabeled_weak_2": rng.normal(size=(n_u, 2, 2, 1))}
  images = {n: x.astype(np.float32) for n, x in images.items()}
  labels = np.array([0, 2, 1])
  truth = np.array([0, -1, 2, 1, 1])
  options = ml_collections.ConfigDict(dict(co_training.OPTIONS))
  options.threshold, options.js_weight = 0.6, 10.0
  ctx = types.SimpleNamespace(
      options=options, images=images, step=4, num_steps=100,
      batch={"labeled_labels": jnp.asarray(labels), "unlabeled_labels": jnp.asarray(truth)},
      outputs={n: {"logits": jnp.asarray(flat(x) @ w1, jnp.float32)} for n, x in images.items()},
      extra=lambda name, x: {"logits": jnp.asarray(x).reshape(len(x), -1) @ w2})
  loss, metrics = co_training.co_training_loss(ctx)
  f1 = lambda n: flat(images[n]) @ w1
  f2 = lambda n: flat(images[n]) @ w2
  ce = lambda z, y: -np.log(_softmax(z))[np.arange(len(y)), y].mean()
  sup = ce(f1("labeled_weak"), labels) + ce(f2("labeled_weak"), labels)
  to2, m12 = _cross_pl(f1("unlabeled_weak"), f2("unlabeled_weak_2"), 0.6)
  to1, _ = _cross_pl(f2("unlabeled_weak_2"), f1("unlabeled_weak"), 0.6)
  ramp = np.exp(-5 * (1 - 4 / (100 * 2 / 15)) ** 2)
  js = _js(f1("unlabeled_weak"), f2("unlabeled_weak"))
  np.testing.assert_allclose(loss, sup + ramp * (to1 + to2) + 10 * ramp * js, rtol=1e-5)
  assert float(metrics["mask_rate_1to2"]) == pytest.approx(m12.mean())
  known = truth >= 0
  acc = (f2("unlabeled_weak_2").argmax(-1) == truth)[known].mean()
  assert float(metrics["net2_pseudo_label_accuracy"]) == pytest.approx(acc)


def test_fgsm_and_the_view_difference():
  a = jnp.array([[1.0, -2.0], [0.0, 3.0]])
  delta = fgsm_perturbation(lambda x: jnp.sum(a * x), jnp.zeros((2, 2)), epsilon=0.1)
  np.testing.assert_allclose(delta, [[0.1, -0.1], [0.0, 0.1]])  # eps * sign(grad), hand value
  jitted = jax.jit(lambda x: fgsm_perturbation(lambda y: jnp.sum(a * y), x, epsilon=0.1))
  np.testing.assert_allclose(jitted(jnp.zeros((2, 2))), delta)
  with pytest.raises(ValueError, match="epsilon"):
    fgsm_perturbation(lambda x: jnp.sum(x), jnp.zeros((2,)), epsilon=-1.0)
  rng = np.random.default_rng(3)
  z = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(4)]
  got = co_training_view_difference(*z)
  h = lambda p, q: -(p * np.log(q)).sum(-1)
  want = (h(_softmax(z[0]), _softmax(z[3])) + h(_softmax(z[1]), _softmax(z[2]))).mean()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(co_training_view_difference)(*z), got, rtol=1e-6)
  p = rng.permutation(5)
  np.testing.assert_allclose(co_training_view_difference(*(x[p] for x in z)), got, rtol=1e-5)
  # Hand value: uniform predictions over 2 classes: 2 log 2.
  np.testing.assert_allclose(co_training_view_difference(*[jnp.zeros((3, 2))] * 4),
                             2 * np.log(2), rtol=1e-6)
  grads = jax.grad(co_training_view_difference, argnums=(0, 1, 2, 3))(*z)
  assert all(np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0 for g in grads)
  with pytest.raises(ValueError, match="logits_2_on_adv_1"):
    co_training_view_difference(z[0], z[1], z[2], z[3][:, :3])


def test_method_with_the_deep_co_training_terms_matches_the_formula():
  rng = np.random.default_rng(4)
  k, n_l, n_u, eps = 3, 2, 4, 0.05
  w1, w2 = (rng.normal(size=(4, k)).astype(np.float32) * 2 for _ in range(2))
  flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
  images = {"labeled_weak": rng.normal(size=(n_l, 2, 2, 1)),
            "unlabeled_weak": rng.normal(size=(n_u, 2, 2, 1)),
            "unlabeled_weak_2": rng.normal(size=(n_u, 2, 2, 1))}
  images = {n: x.astype(np.float32) for n, x in images.items()}
  labels = np.array([1, 0])
  options = ml_collections.ConfigDict(dict(co_training.OPTIONS))
  options.pl_weight, options.js_weight, options.dif_weight, options.epsilon = 0.0, 10.0, 0.5, eps
  linear = lambda w: lambda x, **kw: {"logits": jnp.asarray(x).reshape(len(x), -1) @ w}
  ctx = types.SimpleNamespace(
      options=options, images=images, step=50, num_steps=100,
      batch={"labeled_labels": jnp.asarray(labels)},
      outputs={n: {"logits": jnp.asarray(flat(x) @ w1, jnp.float32)} for n, x in images.items()},
      forward=linear(w1), extra=lambda name, x, **kw: linear(w2)(x))
  loss, metrics = co_training.co_training_loss(ctx)
  # In numpy: FGSM of a linear softmax classifier, grad_x CE = (softmax(x w) - y) w^T / B.
  x = np.concatenate([images["labeled_weak"], images["unlabeled_weak"]])
  def adversarial(w):
    z = flat(x) @ w
    y = np.eye(k)[np.concatenate([labels, z[n_l:].argmax(-1)])]
    grad = (_softmax(z) - y) @ w.T / len(x)
    return flat(x) + eps * np.sign(grad)
  g1, g2 = adversarial(w1), adversarial(w2)
  p1, p2 = _softmax(flat(x) @ w1), _softmax(flat(x) @ w2)
  h = lambda p, q: -(p * np.log(q)).sum(-1)
  dif = (h(p1, _softmax(g1 @ w2)) + h(p2, _softmax(g2 @ w1))).mean()
  ce = lambda z, y: -np.log(_softmax(z))[np.arange(len(y)), y].mean()
  sup = ce(flat(images["labeled_weak"]) @ w1, labels) + ce(flat(images["labeled_weak"]) @ w2,
                                                           labels)
  js = _js(flat(images["unlabeled_weak"]) @ w1, flat(images["unlabeled_weak"]) @ w2)
  np.testing.assert_allclose(loss, sup + 10 * js + 0.5 * dif, rtol=1e-5)  # ramp 1 at t = 0.5
  np.testing.assert_allclose(metrics["view_difference"], dif, rtol=1e-5)


def test_option_errors_name_the_field():
  config = load_experiment("co_training_digits", "smoke")
  config.co_training.model = "{'name': 'cnn'}"  # not JSON
  with pytest.raises(ValueError, match="co_training.model"):
    experiment.setup(config, devices=jax.devices()[:1])


def test_smoke_training_step_trains_both_networks():
  config = load_experiment("co_training_digits", "smoke")
  config.co_training.js_weight, config.co_training.dif_weight = 10.0, 0.5  # every term on
  exp = experiment.setup(config, devices=jax.devices()[:1])
  net1 = jax.tree.map(np.asarray, exp.state.params["model"])
  net2 = jax.tree.map(np.asarray, exp.state.params["co_training"]["net2"])
  # Network 2 is the same architecture as network 1, initialised differently.
  assert jax.tree.map(np.shape, net1) == jax.tree.map(np.shape, net2)
  assert not np.allclose(net1["classifier"]["kernel"], net2["classifier"]["kernel"])
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  assert np.isfinite(float(metrics["loss"]))
  assert "loss/supervised" not in metrics
  after = state.params["co_training"]["net2"]
  assert not np.allclose(net2["classifier"]["kernel"], after["classifier"]["kernel"])
  assert "co_training" in state.model_state  # network 2's own BatchNorm statistics
  assert np.isfinite(float(metrics["co_training/view_difference"]))
