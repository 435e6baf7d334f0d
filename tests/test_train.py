"""The trainer: a real run on digits, resume, workdir safety, the step's contract."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import REPO, load_experiment, read_jsonl
from sslx import config as config_lib
from sslx import train


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run") / "w")
  config = load_experiment("supervised_digits", "smoke")
  results = train.train_and_evaluate(config, workdir)
  return config, workdir, results


def test_run_writes_the_workdir(smoke_run):
  config, workdir, results = smoke_run
  for name in ("config.json", "metrics.jsonl", "results.json", "checkpoints",
               "labeled_indices.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert on_disk == results
  assert results["steps"] == config.num_steps and results["num_devices"] == 1
  assert 0.0 <= results["test_accuracy"] <= 1.0
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in rows] == [6, 12]
  assert {"loss", "learning_rate", "grad_norm", "test/accuracy", "test/accuracy_ema",
          "supervised/accuracy", "loss/supervised"} <= set(rows[-1])
  assert all(np.isfinite(r["loss"]) for r in rows)


def test_rerun_resumes_instead_of_retraining(smoke_run):
  config, workdir, results = smoke_run
  again = train.train_and_evaluate(config, workdir)
  assert again == results  # a finished run is not rerun: its results.json is returned as is
  assert len(read_jsonl(os.path.join(workdir, "metrics.jsonl"))) == 2  # nothing re-logged


def _listing(workdir):
  return sorted((root, tuple(sorted(files)), os.path.getmtime(root))
                for root, _, files in os.walk(workdir))


def test_workdir_of_a_different_config_is_refused_untouched(smoke_run):
  config, workdir, _ = smoke_run
  before = _listing(workdir)
  other = load_experiment("supervised_digits", "smoke")
  other.optimizer.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"(?s)optimizer\.learning_rate: 0.05 -> 0.5.*--overwrite"):
    train.train_and_evaluate(other, workdir)
  assert _listing(workdir) == before


def _bad(mutate):
  config = load_experiment("supervised_digits", "smoke")
  with config.unlocked():
    mutate(config)
  return config


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: setattr(c, "num_stepz", 10), "unknown field 'num_stepz'"),
    (lambda c: setattr(c, "num_steps", 0), "num_steps must be an int > 0"),
    (lambda c: setattr(c, "num_steps", -5), "num_steps must be an int > 0"),
    (lambda c: c.model.update(name="resnet7"), "model.name='resnet7' is unknown"),
    (lambda c: c.data.update(name="not_a_dataset"), "not_a_dataset"),
    (lambda c: setattr(c, "ema_decay", 1.0), "ema_decay"),
    (lambda c: c.loss.terms.update({"no_such_method": 1.0}), "unknown method 'no_such_method'"),
    (lambda c: c.model.update(depth_multiplier=3), "config.model"),
])
def test_bad_config_clear_error_and_nothing_written(tmp_path, mutate, needle):
  workdir = str(tmp_path / "w")
  with pytest.raises(ValueError, match=needle):
    train.train_and_evaluate(_bad(mutate), workdir)
  assert not os.path.exists(workdir)


def test_batch_not_divisible_by_devices_is_named():
  config = load_experiment("supervised_digits", "smoke")
  config.batch_size = 6
  errors = config_lib.device_errors(config, 4)
  assert any("batch_size=6 does not divide across 4 devices" in e for e in errors)
  assert not config_lib.device_errors(load_experiment("supervised_digits", "smoke"), 4)


# -- The step itself, on a tiny linear model over fixed data -----------------------------


class _Linear:
  """A stand-in module with the model contract (dict outputs), no BatchNorm."""

  def init(self, rng, x, train=False):
    del train
    return {"params": {"dense": {"kernel": 0.01 * jax.random.normal(rng, (x[0].size, 3)),
                                 "bias": jnp.zeros((3,))}}}

  def apply(self, variables, x, train=False, rngs=None):
    del train, rngs
    p = variables["params"]["dense"]
    feats = x.reshape(x.shape[0], -1)
    return {"logits": feats @ p["kernel"] + p["bias"], "features": feats}


@pytest.fixture(scope="module")
def tiny_step():
  from sslx import methods
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(8, 4, 4, 1), dtype=np.uint8)
  labels = np.arange(8, dtype=np.int32) % 3
  arrays = {"labeled_images": jnp.asarray(images), "labeled_labels": jnp.asarray(labels)}
  model = _Linear()
  config = load_experiment("supervised_digits", "smoke")
  loss_fn = methods.make_loss_fn(
      methods.active_methods(config), model=model, normalize=train.make_normalize(0.5, 0.25),
      augmenters={"weak": lambda key, x: x}, extra_modules={}, num_classes=3, num_steps=25)
  tx = optax.sgd(0.5)
  mesh = train.make_mesh()
  step = train.make_train_step(loss_fn=loss_fn, optimizer=tx, schedule=lambda s: 0.5,
                               mesh=mesh, seed=0, labeled_batch_size=8,
                               unlabeled_batch_size=0, ema_decay=0.9)

  def fresh_state():
    state = train.create_train_state(model, tx, (4, 4, 1), jax.random.key(1))
    return jax.device_put(state, train.replicated(mesh))
  return step, fresh_state, arrays


def test_step_loss_falls_traced_once_and_donates(tiny_step):
  step, fresh_state, arrays = tiny_step
  state = fresh_state()
  losses = []
  for _ in range(25):
    old = state
    state, metrics = step(state, arrays)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0]
  assert step.num_traces() == 1
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves(old.params))  # donated
  assert int(state.step) == 25


def test_step_ema_arithmetic(tiny_step):
  step, fresh_state, arrays = tiny_step
  state = fresh_state()
  p0 = jax.tree.map(np.asarray, state.params["model"])
  state, _ = step(state, arrays)
  p1 = jax.tree.map(np.asarray, state.params["model"])
  expected = jax.tree.map(lambda a, b: 0.9 * a + 0.1 * b, p0, p1)
  jax.tree.map(lambda e, got: np.testing.assert_allclose(got, e, rtol=1e-6, atol=1e-7),
               expected, jax.tree.map(np.asarray, state.ema_params))
  assert not np.allclose(p0["dense"]["kernel"], p1["dense"]["kernel"])
  np.testing.assert_allclose(
      train.ema_update({"w": jnp.array(2.0)}, {"w": jnp.array(4.0)}, 0.75)["w"], 2.5)


def test_eval_counts_every_example_once_with_padding():
  model = _Linear()
  mesh = train.make_mesh()
  evaluate = train.make_eval_fn(model, train.make_normalize(0.0, 1.0), mesh, batch_size=4)
  params = {"dense": {"kernel": jnp.array([[1.0, 0.0, 0.0]]), "bias": jnp.zeros(3)}}
  images = np.ones((10, 1, 1, 1), np.float32)  # every prediction is class 0
  labels = np.array([0] * 7 + [1] * 3, np.int32)  # 10 = 4 + 4 + 2 (padded)
  assert evaluate(params, {}, images, labels) == pytest.approx(0.7)


# -- Several devices --------------------------------------------------------------------


def test_four_devices_match_one_device(smoke_run, tmp_path):
  config, workdir_1, results_1 = smoke_run
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  workdir_4 = str(tmp_path / "w4")
  cmd = [sys.executable, "-m", "sslx.main",
         f"--config={os.path.join(REPO, 'experiments', 'supervised_digits.py')}:smoke",
         f"--workdir={workdir_4}"]
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "4 device(s)" in proc.stdout
  with open(os.path.join(workdir_4, "results.json")) as f:
    results_4 = json.load(f)
  assert results_4["num_devices"] == 4
  rows_1 = read_jsonl(os.path.join(workdir_1, "metrics.jsonl"))
  rows_4 = read_jsonl(os.path.join(workdir_4, "metrics.jsonl"))
  assert [r["step"] for r in rows_1] == [r["step"] for r in rows_4]
  for r1, r4 in zip(rows_1, rows_4):
    for key in ("loss", "grad_norm", "learning_rate", "supervised/accuracy"):
      np.testing.assert_allclose(r4[key], r1[key], rtol=2e-4, atol=1e-5, err_msg=key)
  assert abs(results_4["test_accuracy"] - results_1["test_accuracy"]) <= 1 / 360 + 1e-9
