import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx import optim


def _cfg(**kw):
  c = optim.default_optimizer_config()
  c.update(kw)
  return c


def test_fixmatch_schedule_values():
  sched = optim.create_schedule(_cfg(learning_rate=0.03, schedule="fixmatch"), 1000)
  np.testing.assert_allclose(sched(0), 0.03, rtol=1e-6)
  np.testing.assert_allclose(sched(1000), 0.03 * math.cos(7 * math.pi / 16), rtol=1e-6)
  np.testing.assert_allclose(sched(500), 0.03 * math.cos(7 * math.pi / 32), rtol=1e-6)


def test_cosine_schedule_with_warmup():
  sched = optim.create_schedule(_cfg(learning_rate=0.1, schedule="cosine", warmup_steps=10), 110)
  np.testing.assert_allclose(sched(0), 0.0, atol=1e-8)
  np.testing.assert_allclose(sched(5), 0.05, rtol=1e-5)
  np.testing.assert_allclose(sched(10), 0.1, rtol=1e-5)
  np.testing.assert_allclose(sched(60), 0.05, rtol=1e-5)  # half way down the cosine
  np.testing.assert_allclose(sched(110), 0.0, atol=1e-7)


def test_fixmatch_schedule_warmup_then_decay():
  sched = optim.create_schedule(_cfg(learning_rate=0.2, schedule="fixmatch", warmup_steps=4), 100)
  np.testing.assert_allclose(sched(2), 0.1, rtol=1e-6)
  np.testing.assert_allclose(sched(50), 0.2 * math.cos(7 * math.pi * 50 / 1600), rtol=1e-6)


def test_sgd_weight_decay_only_on_kernels():
  # A method's own matrix (DINO's/SwAV's prototypes) is a kernel by its shape, not its name.
  params = {"conv": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones((2,))},
            "bn": {"scale": jnp.ones((2,))}, "head": {"prototypes": jnp.ones((4, 3))}}
  tx, _ = optim.create_optimizer(_cfg(name="sgd", learning_rate=1.0, momentum=0.0,
                                      weight_decay=0.1, schedule="constant"), 10)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1)  # -lr * wd * w
  np.testing.assert_allclose(updates["head"]["prototypes"], -0.1)
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)
  np.testing.assert_allclose(updates["bn"]["scale"], 0.0)


def test_lars_adapts_every_matrix_and_no_vector():
  """The trust ratio scales a step by 1e-3 |w| / |g| on matrices; vectors take lr * g."""
  params = {"dense": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.ones((2,))},
            "head": {"v": jnp.full((2, 2), 2.0)}}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  tx, _ = optim.create_optimizer(_cfg(name="lars", learning_rate=1.0, momentum=0.0,
                                      weight_decay=0.0, schedule="constant"), 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  adapted = -1e-3 * (4.0 / 1.0) * 0.5  # -lr * 1e-3 * |w| / |g| * g, |w| = 4, |g| = 1
  np.testing.assert_allclose(updates["dense"]["kernel"], adapted, rtol=1e-5)
  np.testing.assert_allclose(updates["head"]["v"], adapted, rtol=1e-5)
  np.testing.assert_allclose(updates["dense"]["bias"], -0.5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
def test_each_optimizer_descends_a_quadratic(name):
  lr = {"sgd": 0.1, "lars": 50.0, "adamw": 0.1}[name]  # LARS scales by 1e-3 * |w|/|g|
  tx, _ = optim.create_optimizer(_cfg(name=name, learning_rate=lr, weight_decay=0.0,
                                      schedule="constant"), 100)
  params = {"dense": {"kernel": jnp.full((2, 2), 3.0)}}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["dense"]["kernel"] ** 2)
  before = loss(params)
  for _ in range(20):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  assert loss(params) < 0.5 * before


@pytest.mark.parametrize("field,value,needle", [
    ("name", "rmsprop", "optimizer.name"),
    ("schedule", "step", "optimizer.schedule"),
    ("learning_rate", 0.0, "optimizer.learning_rate"),
    ("weight_decay", -1.0, "optimizer.weight_decay"),
    ("momentum", 1.5, "optimizer.momentum"),
])
def test_bad_optimizer_config_names_the_field(field, value, needle):
  with pytest.raises(ValueError, match=needle):
    optim.create_optimizer(_cfg(**{field: value}), 10)
