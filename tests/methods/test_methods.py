"""Method terms and their composition, on fixed inputs with a stand-in model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import config as config_lib
from sslx import methods
from sslx.losses import cross_entropy


class _CountingLinear:
  """Dict-output linear model that counts its forward passes and their batch sizes."""

  def __init__(self, dim, num_classes, projection_dim=0):
    self.dim, self.num_classes, self.projection_dim = dim, num_classes, projection_dim
    self.calls = []

  def params(self, key):
    k1, k2 = jax.random.split(key)
    p = {"w": jax.random.normal(k1, (self.dim, self.num_classes))}
    if self.projection_dim:
      p["proj"] = jax.random.normal(k2, (self.dim, self.projection_dim))
    return p

  def apply(self, variables, x, train=False, mutable=False, rngs=None):
    self.calls.append(x.shape[0])
    p = variables["params"]
    f = x.reshape(x.shape[0], -1)
    out = {"logits": f @ p["w"], "features": f}
    if self.projection_dim:
      out["projection"] = f @ p["proj"]
    return out


def _batch(rng, n_labeled=4, n_unlabeled=6, side=2, num_classes=3):
  return {
      "labeled_images": jnp.asarray(rng.uniform(size=(n_labeled, side, side, 1)), jnp.float32),
      "labeled_labels": jnp.asarray(np.arange(n_labeled) % num_classes, jnp.int32),
      "unlabeled_images": jnp.asarray(rng.uniform(size=(n_unlabeled, side, side, 1)),
                                      jnp.float32),
      "unlabeled_labels": jnp.asarray(np.arange(n_unlabeled) % num_classes, jnp.int32),
  }


_IDENTITY = {a: (lambda key, x: x) for a in ("none", "weak", "strong", "simclr")}


def _terms(spec, **options):
  out = {}
  for name, weight in spec.items():
    opts = methods.method_option_configs()[name]
    opts.update(options.get(name, {}))
    method = methods.REGISTRY[name]
    out[name] = methods.Active(method, weight, opts, method.views_for(opts))
  return out


_INFO = methods.ModelInfo(num_classes=3, image_shape=(2, 2, 1), feature_dim=4, projection_dim=0,
                          pool_sizes={"labeled": 4, "unlabeled": 8}, num_steps=100)


def _loss(terms, model, params, batch, method_state=None, augmenters=_IDENTITY):
  """``(loss, (method_state, metrics))`` of the active `terms` at step 0."""
  from sslx.step import TrainState
  fn = methods.make_loss_fn(terms, model=model, normalize=lambda x: x, augmenters=augmenters,
                            extra_modules={}, num_classes=3, num_steps=100)
  if method_state is None:
    method_state = {n: a.method.init_state(a.options, _INFO) for n, a in terms.items()
                    if a.method.init_state}
  state = TrainState(step=jnp.int32(0), params={"model": params}, model_state={}, opt_state=(),
                     ema_params=params, method_params={}, method_state=method_state)
  loss, (_, method_state, metrics) = fn({"model": params}, state, batch, jax.random.key(0))
  return loss, (method_state, metrics)


def test_all_views_share_one_forward_pass():
  model = _CountingLinear(4, 3)
  batch = _batch(np.random.default_rng(0))
  _loss(_terms({"supervised": 1.0, "fixmatch": 1.0}), model, model.params(jax.random.key(0)),
        batch)
  assert model.calls == [4 + 6 + 6]  # labeled + weak + strong in ONE pass


def test_fixmatch_all_confident_equals_supervised_ce_on_pseudo_labels():
  model = _CountingLinear(4, 3)
  params = model.params(jax.random.key(1))
  batch = _batch(np.random.default_rng(1))
  loss, (_, metrics) = _loss(_terms({"fixmatch": 1.0}, fixmatch={"threshold": 0.0}),
                             model, params, batch)
  logits = model.apply({"params": params}, batch["unlabeled_images"])["logits"]
  pseudo = jnp.argmax(logits, -1)
  np.testing.assert_allclose(loss, cross_entropy(logits, pseudo), rtol=1e-6)
  assert float(metrics["fixmatch/mask_rate"]) == 1.0
  expected_acc = np.mean(np.asarray(pseudo) == np.asarray(batch["unlabeled_labels"]))
  np.testing.assert_allclose(metrics["fixmatch/pseudo_label_accuracy"], expected_acc)


def test_fixmatch_threshold_one_is_silent_and_gives_no_gradient():
  model = _CountingLinear(4, 3)
  params = model.params(jax.random.key(2))
  batch = _batch(np.random.default_rng(2))
  terms = _terms({"fixmatch": 1.0}, fixmatch={"threshold": 1.0})
  fn = lambda p: _loss(terms, model, p, batch)[0]
  assert float(fn(params)) == 0.0
  assert float(jnp.abs(jax.grad(fn)(params)["w"]).sum()) == 0.0


def test_composition_weights_scale_terms():
  model = _CountingLinear(4, 3, projection_dim=5)
  params = model.params(jax.random.key(3))
  batch = _batch(np.random.default_rng(3))
  opts = {"fixmatch": {"threshold": 0.0}, "nt_xent": {"views": "weak_strong"}}
  single = {n: float(_loss(_terms({n: 1.0}, **opts), model, params, batch)[0])
            for n in ("supervised", "fixmatch", "nt_xent")}
  total, (_, metrics) = _loss(_terms({"supervised": 2.0, "fixmatch": 0.5, "nt_xent": 3.0},
                                     **opts), model, params, batch)
  np.testing.assert_allclose(
      total, 2.0 * single["supervised"] + 0.5 * single["fixmatch"] + 3.0 * single["nt_xent"],
      rtol=1e-5)
  for n in single:  # each term is logged unweighted under its own name
    np.testing.assert_allclose(metrics[f"loss/{n}"], single[n], rtol=1e-5)


def test_distribution_alignment_state_tracks_mean_prediction():
  model = _CountingLinear(4, 3)
  params = model.params(jax.random.key(4))
  batch = _batch(np.random.default_rng(4))
  terms = _terms({"fixmatch": 1.0}, fixmatch={"distribution_alignment": True,
                                              "distribution_momentum": 0.5})
  _, (state, _) = _loss(terms, model, params, batch)
  probs = jax.nn.softmax(model.apply({"params": params}, batch["unlabeled_images"])["logits"])
  expected = 0.5 * np.full(3, 1 / 3) + 0.5 * np.asarray(probs.mean(0))
  np.testing.assert_allclose(state["fixmatch"]["model_distribution"], expected,
                             rtol=1e-5)


def test_views_get_independent_augmentations():
  model = _CountingLinear(4, 3)
  seen = {}

  def recording(name):
    def aug(key, x):
      seen.setdefault(name, []).append(np.asarray(jax.random.key_data(key)))
      return x + jax.random.uniform(key, x.shape)
    return aug
  augs = {a: recording(a) for a in ("none", "weak", "strong", "simclr")}
  _loss(_terms({"supervised": 1.0, "fixmatch": 1.0}), model,
        model.params(jax.random.key(5)), _batch(np.random.default_rng(5)), augmenters=augs)
  keys = [k for ks in seen.values() for k in ks]
  assert len(keys) == 3 and len({k.tobytes() for k in keys}) == 3


@pytest.mark.parametrize("experiment,mutate,needle", [
    ("simclr_digits", lambda c: c.model.update(projection_dim=0), "needs a projection head"),
    ("fixmatch_digits", lambda c: setattr(c, "unlabeled_ratio", 0), "unlabeled_ratio must be >= 1"),
    ("fixmatch_digits", lambda c: c.fixmatch.update(threshold=1.5), "fixmatch.threshold"),
    ("simclr_digits", lambda c: c.nt_xent.update(temperature=0.0), "nt_xent.temperature"),
    ("simclr_digits", lambda c: c.nt_xent.update(views="three"), "nt_xent.views"),
    ("fixmatch_digits", lambda c: setattr(c.loss, "terms", {"fixmatch": 0.0}), "at least one term"),
])
def test_method_config_errors(experiment, mutate, needle):
  config = load_experiment(experiment)
  mutate(config)
  with pytest.raises(ValueError, match=needle):
    config_lib.validate_config(config)


def test_deep_lp_term_looks_up_pool_pseudo_labels_and_waits_for_start():
  from sslx.losses import weighted_pseudo_label_loss
  model = _CountingLinear(4, 3)
  params = model.params(jax.random.key(6))
  batch = _batch(np.random.default_rng(6))
  batch["unlabeled_indices"] = jnp.array([5, 0, 2, 2, 7, 1], jnp.int32)
  pool_state = {"pseudo_labels": jnp.arange(8, dtype=jnp.int32) % 3,
                "certainty_weights": jnp.linspace(0.1, 0.8, 8),
                "class_weights": jnp.array([1.0, 2.0, 0.5])}
  terms = _terms({"deep_lp": 1.0}, deep_lp={"start_step": 0})
  loss, (state, metrics) = _loss(terms, model, params, batch,
                                 method_state={"deep_lp": pool_state})
  idx = batch["unlabeled_indices"]
  logits = model.apply({"params": params}, batch["unlabeled_images"])["logits"]
  expected = weighted_pseudo_label_loss(logits, pool_state["pseudo_labels"][idx],
                                        pool_state["certainty_weights"][idx],
                                        pool_state["class_weights"])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  late = _terms({"deep_lp": 1.0}, deep_lp={"start_step": 10})
  assert float(_loss(late, model, params, batch,
                     method_state={"deep_lp": pool_state})[0]) == 0.0


def test_deep_lp_refresh_labels_clusters_from_few_seeds():
  from sslx import train
  rng = np.random.default_rng(7)
  centers = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32)
  truth = np.repeat(np.arange(3), 20)
  pool = centers[truth] + 0.05 * rng.normal(size=(60, 4)).astype(np.float32)
  arrays = {"labeled_images": jnp.asarray(centers.reshape(3, 2, 2, 1)),
            "labeled_labels": jnp.arange(3, dtype=jnp.int32),
            "unlabeled_images": jnp.asarray(pool.reshape(60, 2, 2, 1)),
            "unlabeled_labels": jnp.asarray(truth, jnp.int32)}

  class Features:  # features = the pixels themselves
    def apply(self, variables, x, train=False):
      return {"features": x.reshape(x.shape[0], -1)}
  terms = _terms({"deep_lp": 1.0}, deep_lp={"k": 5, "embed_batch_size": 16})
  refresh = train.make_refresh_fn(terms, model=Features(), normalize=lambda x: x,
                                  num_classes=3, mesh=train.make_mesh())
  assert refresh.due(0) and not refresh.due(1)
  info = methods.ModelInfo(num_classes=3, image_shape=(2, 2, 1), feature_dim=4, projection_dim=0,
                           pool_sizes={"labeled": 3, "unlabeled": 60}, num_steps=10)
  init = methods.REGISTRY["deep_lp"].init_state(terms["deep_lp"].options, info)
  state = train.TrainState(step=jnp.int32(0), params={"model": {}}, model_state={},
                           opt_state=(), ema_params={}, method_state={"deep_lp": init})
  new = refresh(state, arrays).method_state["deep_lp"]
  np.testing.assert_array_equal(new["pseudo_labels"], truth)
  assert float(new["certainty_weights"].min()) > 0.0
  np.testing.assert_allclose(new["class_weights"], np.ones(3) * 63 / 3 / np.array([21, 21, 21]),
                             rtol=1e-5)
