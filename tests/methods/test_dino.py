"""DINO: the loss against DINOLoss rewritten in numpy, hand values, the centre EMA and
teacher-temperature warm-up over steps, the frozen last layer, the teacher as an EMA of
model + head, and one smoke training step."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import dino_center_update, dino_loss, dino_teacher_temperature
from sslx.methods import dino as dino_method


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _official(student_output, teacher_output, center, *, ncrops, teacher_temp, student_temp=0.1,
              center_momentum=0.9):
  """facebookresearch/dino DINOLoss.forward + update_center, in float64 numpy: the crops are
  concatenated on the batch axis and chunked, the centre updated after the loss."""
  student_out = np.split(np.asarray(student_output, np.float64) / student_temp, ncrops)
  t = (np.asarray(teacher_output, np.float64) - center) / teacher_temp
  teacher_out = np.split(np.exp(_log_softmax(t)), 2)
  total, n_terms = 0.0, 0
  for iq, q in enumerate(teacher_out):
    for v in range(len(student_out)):
      if v == iq:
        continue
      total += np.sum(-q * _log_softmax(student_out[v]), axis=-1).mean()
      n_terms += 1
  batch_center = np.sum(teacher_output, axis=0, keepdims=True) / len(teacher_output)
  return total / n_terms, center * center_momentum + batch_center[0] * (1 - center_momentum)


def _inputs(v=5, b=6, k=7, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(v, b, k)).astype(np.float32),
          rng.normal(size=(2, b, k)).astype(np.float32),
          (0.3 * rng.normal(size=k)).astype(np.float32))


def test_dino_loss_matches_the_official_formula():
  s, t, c = _inputs()
  loss, aux = dino_loss(s, t, c, teacher_temperature=0.04, student_temperature=0.1)
  want, want_center = _official(s.reshape(-1, 7), t.reshape(-1, 7), c, ncrops=5,
                                teacher_temp=0.04)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(dino_center_update(c, aux["batch_center"], momentum=0.9),
                             want_center, rtol=1e-5, atol=1e-7)
  assert aux["num_pairs"] == 2 * 5 - 2
  jitted = jax.jit(lambda s, t, c: dino_loss(s, t, c, teacher_temperature=0.04)[0])
  np.testing.assert_allclose(jitted(s, t, c), loss, rtol=1e-5)
  # Permuting the batch (the same permutation in every crop) changes nothing.
  perm = np.random.default_rng(1).permutation(6)
  np.testing.assert_allclose(
      dino_loss(s[:, perm], t[:, perm], c, teacher_temperature=0.04)[0], loss, rtol=1e-5)


def test_dino_loss_hand_values_and_gradients():
  # Teacher logits equal: uniform targets over 2 prototypes; a uniform student: log 2.
  zeros = jnp.zeros((2, 1, 2))
  loss, aux = dino_loss(zeros, zeros, jnp.zeros(2), teacher_temperature=0.04)
  assert float(loss) == pytest.approx(np.log(2.0), rel=1e-6)
  assert float(aux["teacher_entropy"]) == pytest.approx(np.log(2.0), rel=1e-6)
  # A centred-away teacher: target (1, 0) once centre removes nothing and T_t -> sharp;
  # student logits (a, 0) at T_s = 1 give -log sigmoid(a) per pair.
  t = jnp.array([[[10.0, 0.0]], [[10.0, 0.0]]])
  st = jnp.array([[[1.0, 0.0]], [[2.0, 0.0]], [[3.0, 0.0]]])
  loss, _ = dino_loss(st, t, jnp.zeros(2), teacher_temperature=0.01, student_temperature=1.0)
  nls = lambda a: np.log1p(np.exp(-a))
  # pairs: (0,1), (0,2), (1,0), (1,2)
  assert float(loss) == pytest.approx((nls(2) + nls(3) + nls(1) + nls(3)) / 4, rel=1e-5)
  s, t, c = _inputs()
  f = lambda s, t: dino_loss(s, t, c, teacher_temperature=0.04)[0]
  gs, gt = jax.grad(f, argnums=(0, 1))(s, t)
  assert np.all(np.isfinite(gs)) and np.abs(gs).sum() > 0
  assert float(jnp.abs(gt).sum()) == 0.0  # the teacher is a target
  jax.test_util.check_grads(lambda x: f(x, t), (s,), order=1, modes=["rev"], atol=1e-2,
                            rtol=1e-2)
  with pytest.raises(ValueError, match="student"):
    dino_loss(s[:, :3], t, c, teacher_temperature=0.04)
  with pytest.raises(ValueError, match="center"):
    dino_loss(s, t, c[:3], teacher_temperature=0.04)


def test_center_ema_over_steps_and_temperature_warmup():
  rng = np.random.default_rng(0)
  center, want = jnp.zeros(4), np.zeros(4)
  for _ in range(5):
    t = rng.normal(size=(2, 3, 4)).astype(np.float32)
    _, aux = dino_loss(rng.normal(size=(3, 3, 4)), t, center, teacher_temperature=0.05)
    center = dino_center_update(center, aux["batch_center"], momentum=0.9)
    want = 0.9 * want + 0.1 * t.reshape(-1, 4).mean(0)
    np.testing.assert_allclose(center, want, rtol=1e-5, atol=1e-7)
  # The official per-epoch schedule: linspace(warm, final, W) then final.
  official = np.concatenate([np.linspace(0.04, 0.07, 5), np.full(3, 0.07)])
  got = [float(dino_teacher_temperature(s, warmup_temperature=0.04, temperature=0.07,
                                        warmup_steps=5)) for s in range(8)]
  np.testing.assert_allclose(got, official, rtol=1e-6)
  assert float(dino_teacher_temperature(0, warmup_temperature=0.04, temperature=0.07,
                                        warmup_steps=0)) == pytest.approx(0.07)


def test_frozen_last_layer_gets_no_gradient_but_passes_it_on():
  head = dino_method.DINOHead(hidden_dim=8, bottleneck_dim=4)
  last = dino_method.WeightNormLinear(out_dim=5, norm_last_layer=False)
  x = jax.random.normal(jax.random.key(0), (3, 6))
  params = {"head": head.init(jax.random.key(1), x, train=False)["params"]}
  params["last_layer"] = last.init(jax.random.key(2), jnp.zeros((1, 4)), train=False)["params"]
  modules = {"head": head, "last_layer": last}

  def loss(p, freeze):
    ctx = types.SimpleNamespace(extra=lambda name, v, params: modules[name].apply(
        {"params": params[name]}, v, train=True))
    out = dino_method._head(ctx, x, p, freeze)
    return jnp.sum(jnp.sin(out)), out

  (v_free, out_free), g_free = jax.value_and_grad(loss, has_aux=True)(params, None)
  (v_frozen, out_frozen), g_frozen = jax.value_and_grad(loss, has_aux=True)(params, True)
  np.testing.assert_allclose(out_frozen, out_free, rtol=1e-6)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(g_frozen["last_layer"]))
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(g_free["last_layer"]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               g_frozen["head"], g_free["head"])
  # norm_last_layer: unit columns, so |output| <= 1 for the unit bottleneck.
  last_n = dino_method.WeightNormLinear(out_dim=5)
  z = head.apply({"params": params["head"]}, x, train=False)
  out = last_n.apply(last_n.init(jax.random.key(3), z, train=False), z, train=False)
  assert float(jnp.max(jnp.abs(out))) <= 1.0 + 1e-6


def test_dino_training_steps_teacher_center_and_crops():
  config = load_experiment("dino_digits", "smoke")
  config.dino.base_momentum = 0.5
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  host = lambda t: jax.tree.map(np.asarray, t)
  teacher = host(state.method_params["dino"]["teacher"])
  assert set(teacher) == {"model", "dino"} and set(teacher["dino"]) == {"head", "last_layer"}
  center = np.zeros(config.dino.out_dim)
  for k in range(3):
    state, metrics = exp.train_step(state, exp.input.arrays)
    tau = float(dino_method.momentum(k, config.num_steps, 0.5, 1.0))
    online = host({"model": state.params["model"], "dino": state.params["dino"]})
    expected = jax.tree.map(lambda t, o: tau * t + (1 - tau) * o, teacher, online)
    teacher = host(state.method_params["dino"]["teacher"])
    jax.tree.map(lambda e, t: np.testing.assert_allclose(t, e, rtol=1e-5, atol=1e-6),
                 expected, teacher)
    # c_k = 0.9 c_{k-1} + 0.1 mean(teacher outputs), and |teacher output| <= 1 here
    # (unit bottleneck, unit last-layer columns).
    new_center = np.asarray(state.method_state["dino"]["center"])
    assert np.all(np.abs(new_center - 0.9 * center) <= 0.1 + 1e-6)
    assert not np.allclose(new_center, 0.9 * center)
    np.testing.assert_allclose(float(metrics["dino/center_norm"]),
                               np.linalg.norm(new_center), rtol=1e-5)
    center = new_center
    assert np.isfinite(float(metrics["loss/dino"]))
  assert 0 < float(metrics["dino/teacher_entropy"]) <= np.log(config.dino.out_dim) + 1e-5
  assert float(metrics["dino/teacher_temperature"]) == pytest.approx(0.07)


def test_head_batchnorm_option_normalises_over_the_batch_and_tracks_online_statistics():
  head = dino_method.DINOHead(hidden_dim=8, bottleneck_dim=4, use_bn=True)
  x = jax.random.normal(jax.random.key(0), (16, 6)) + 5.0
  variables = head.init(jax.random.key(1), x, train=False)
  assert "batch_stats" not in dino_method.DINOHead(8, 4).init(jax.random.key(1), x, train=False)
  _, new = head.apply(variables, x, train=True, mutable=["batch_stats"])
  dense = variables["params"]["Dense_0"]
  hidden = np.asarray(x) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
  # torch's BatchNorm1d momentum 0.1: running mean 0.9 * 0 + 0.1 * batch mean.
  np.testing.assert_allclose(new["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * hidden.mean(0),
                             rtol=1e-5, atol=1e-6)

  config = load_experiment("dino_digits", "smoke")
  config.dino.use_bn_in_head = True
  exp = experiment.setup(config, devices=jax.devices()[:1])
  before = np.asarray(exp.state.model_state["dino"]["head"]["batch_stats"]["BatchNorm_0"]["mean"])
  state, metrics = exp.train_step(exp.state, exp.input.arrays)
  after = np.asarray(state.model_state["dino"]["head"]["batch_stats"]["BatchNorm_0"]["mean"])
  assert np.isfinite(float(metrics["loss/dino"])) and not np.allclose(before, after)
  options = ml_collections.ConfigDict({**config.dino.to_dict(), "use_bn_in_head": 1})
  assert "dino.use_bn_in_head must be True or False, got 1" in dino_method.option_errors(options)
