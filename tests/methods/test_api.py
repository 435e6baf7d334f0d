"""The method API: what a method file can declare, exercised by a fork's own method.

The fork's method lives in a module outside sslx (written to a temporary folder and named
in ``config.loss.imports``), and uses everything at once: its own view and augmentation
with targets, an extra module, a target tree with its own momentum, explicit state and a
private random stream. A short run through ``sslx.train.train_and_evaluate`` checks that
all of it is created, updated, checkpointed and resumed exactly.
"""

import json
import os
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import methods, train

FORK = textwrap.dedent('''
    """A fork's method: uses every declaration of the method API."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import ml_collections
    from sslx.methods import Context, Extra, Method, Target, View, register

    class Scale(nn.Module):
      @nn.compact
      def __call__(self, x, *, train):
        return x * self.param("scale", nn.initializers.ones, (x.shape[-1],))

    def flip_with_flag(key, images):
      flags = jax.random.bernoulli(key, 0.5, (images.shape[0],))
      return jnp.where(flags[:, None, None, None], images[:, :, ::-1], images), flags

    def loss(ctx: Context):
      feats = ctx.extra("scale", ctx.outputs["unlabeled_flipped"]["features"])
      slow = ctx.forward(ctx.images["unlabeled_flipped"], params="slow", train=False)
      noise = jax.random.normal(ctx.rng("noise"), ())
      value = jnp.mean((feats - slow["features"]) ** 2) + 0.0 * noise
      count = ctx.state["count"] + 1
      flips = jnp.mean(ctx.targets["unlabeled_flipped"].astype(jnp.float32))
      return value, {"flips": flips, "count": count}, {"count": count, "noise": noise}

    register(Method(
        name="fork_probe", loss=loss,
        options=ml_collections.ConfigDict(dict(decay=0.5)),
        views={"unlabeled_flipped": View("unlabeled", "flip_with_flag")},
        augmentations=lambda cfg, options: {"flip_with_flag": flip_with_flag},
        extras=lambda options, info: {"scale": Extra(Scale(), input="features")},
        targets=lambda options: {"slow": Target(momentum=lambda step, n: options.decay)},
        init_state=lambda options, info: {"count": jnp.zeros((), jnp.int32),
                                          "noise": jnp.zeros((), jnp.float32)}))
''')


@pytest.fixture(scope="module")
def fork_module(tmp_path_factory):
  folder = tmp_path_factory.mktemp("fork")
  (folder / "my_fork_method.py").write_text(FORK)
  sys.path.insert(0, str(folder))
  yield "my_fork_method"
  sys.path.remove(str(folder))


def _config(fork_module, num_steps=4):
  config = load_experiment("supervised_digits", "smoke")
  config.loss.imports = (fork_module,)
  methods.import_methods(config.loss.imports)  # registers the method: its options block exists
  config.fork_probe = methods.method_option_configs()["fork_probe"]
  config.loss.terms = {"supervised": 1.0, "fork_probe": 0.1}
  config.unlabeled_ratio = 1
  config.data.unlabeled_pool = "all"
  config.num_steps = num_steps
  config.checkpoint_every = 2
  return config


def test_a_fork_method_runs_checkpoints_and_resumes_exactly(fork_module, tmp_path):
  import shutil
  devices = jax.devices()[:1]
  whole = str(tmp_path / "whole")
  assert train.train_and_evaluate(_config(fork_module), whole, devices=devices)["steps"] == 4
  # The same run resumed from its step-2 checkpoint ends in the same state, bit for bit.
  resumed = str(tmp_path / "resumed")
  shutil.copytree(whole, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "4"))
  os.remove(os.path.join(resumed, "results.json"))
  assert train.train_and_evaluate(_config(fork_module), resumed,
                                  devices=devices)["resumed_from_step"] == 2
  exp = train.setup(_config(fork_module), devices=devices)
  restored = []
  for workdir in (whole, resumed):
    manager = train._checkpoint_manager(workdir, 10)  # pylint: disable=protected-access
    restored.append(train.restore_checkpoint(manager, exp.state, step=4))
    manager.close()
  a, b = restored
  assert set(a.params) == {"model", "fork_probe"} and "scale" in a.params["fork_probe"]
  assert set(a.method_params["fork_probe"]) == {"slow"}
  assert int(a.method_state["fork_probe"]["count"]) == 4
  assert float(a.method_state["fork_probe"]["noise"]) != 0.0  # its private stream was drawn
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_fork_target_follows_its_own_momentum(fork_module):
  exp = train.setup(_config(fork_module), devices=jax.devices()[:1])
  state = exp.state
  slow = jax.tree.map(np.asarray, state.method_params["fork_probe"]["slow"]["model"])
  state, _ = exp.train_step(state, exp.input.arrays)
  expected = jax.tree.map(lambda s, p: 0.5 * s + 0.5 * np.asarray(p), slow, state.params["model"])
  jax.tree.map(lambda e, g: np.testing.assert_allclose(np.asarray(g), e, rtol=1e-5, atol=1e-7),
               expected, state.method_params["fork_probe"]["slow"]["model"])


def test_adding_a_method_leaves_every_other_views_draws_unchanged():
  """Keys are derived from view names: adding nt_xent on two strong views changes no key
  of FixMatch's views (by position, 'unlabeled_weak' would move from index 2 to 3)."""
  seen = {}

  def run(spec, **options):
    seen.clear()
    active = {}
    for name, weight in spec.items():
      opts = methods.method_option_configs()[name]
      opts.update(options.get(name, {}))
      m = methods.REGISTRY[name]
      active[name] = methods.Active(m, weight, opts, m.views_for(opts))

    class Model:
      def apply(self, variables, x, train=False, rngs=None, mutable=False):
        f = x.reshape(x.shape[0], -1)
        return {"logits": f[:, :3], "features": f, "projection": f}

    def recording(aug):
      def fn(key, x):
        seen.setdefault(aug, []).append(np.asarray(jax.random.key_data(key)).tobytes())
        return x + jax.random.uniform(key, x.shape)
      return fn
    fn = methods.make_loss_fn(active, model=Model(), normalize=lambda x: x,
                              augmenters={a: recording(a) for a in ("weak", "strong", "simclr")},
                              extra_modules={}, num_classes=3, num_steps=10)
    batch = {"labeled_images": jnp.ones((2, 2, 2, 1)), "labeled_labels": jnp.zeros(2, jnp.int32),
             "unlabeled_images": jnp.ones((4, 2, 2, 1))}
    from sslx.step import TrainState
    state = TrainState(step=jnp.int32(0), params={"model": {}}, model_state={}, opt_state=(),
                       ema_params={}, method_state={"fixmatch": {
                           "model_distribution": jnp.full((3,), 1 / 3)}})
    fn({"model": {}}, state, batch, jax.random.key(0))
    return {a: sorted(k) for a, k in seen.items()}

  before = run({"supervised": 1.0, "fixmatch": 1.0})
  after = run({"supervised": 1.0, "fixmatch": 1.0, "nt_xent": 1.0}, nt_xent={"views": "strong"})
  assert before["weak"] == after["weak"]  # labeled_weak and unlabeled_weak: same draws
  assert set(before["strong"]) < set(after["strong"])  # one new strong view, the old one kept


def test_a_view_outside_the_shared_pass_reaches_images_but_not_the_online_model():
  """``View(..., shared_pass=False)``: images for another network only. The shared pass
  (and so its BatchNorm batch) holds the other views; a method that asks for the same
  view in the shared pass gets it there; a name reused for other images is refused."""
  from sslx.methods.base import View
  from sslx.step import TrainState
  passes, seen = [], {}

  class Model:
    def apply(self, variables, x, train=False, rngs=None, mutable=False):
      passes.append(x.shape[0])
      f = x.reshape(x.shape[0], -1)
      return {"logits": f[:, :3], "features": f, "projection": f}

  def method(name, views):
    def loss(ctx):
      seen[name] = (sorted(ctx.outputs), sorted(ctx.images))
      return jnp.zeros(()), {}
    m = methods.Method(name=name, loss=loss, views=views)
    return methods.Active(m, 1.0, m.options, m.views_for(m.options))

  def run(*active):
    passes.clear()
    fn = methods.make_loss_fn({a.method.name: a for a in active}, model=Model(),
                              normalize=lambda x: x, augmenters={"weak": lambda k, x: x + 1},
                              extra_modules={}, num_classes=3, num_steps=10)
    batch = {"labeled_images": jnp.ones((2, 2, 2, 1)), "unlabeled_images": jnp.ones((4, 2, 2, 1))}
    state = TrainState(step=jnp.int32(0), params={"model": {}}, model_state={}, opt_state=(),
                       ema_params={}, method_state={})
    fn({"model": {}}, state, batch, jax.random.key(0))

  teacher_only = method("two_nets", {"l": View("labeled", "weak"),
                                     "u2": View("unlabeled", "weak", shared_pass=False)})
  run(teacher_only)
  assert passes == [2]  # the labeled view only
  assert seen["two_nets"] == (["l"], ["l", "u2"])
  run(teacher_only, method("reader", {"u2": View("unlabeled", "weak")}))
  assert passes == [6]
  assert seen["two_nets"] == (["l", "u2"], ["l", "u2"])
  with pytest.raises(ValueError, match="'u2' is declared as"):
    run(teacher_only, method("other", {"u2": View("labeled", "weak")}))
