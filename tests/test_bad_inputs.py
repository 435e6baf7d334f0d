"""The catalogue of bad inputs: each one fails in `train_and_evaluate` before anything is
compiled or written, with a ValueError that names the field (or file) and what is allowed,
and leaves the workdir exactly as it was (absent, or byte for byte and mtime for mtime).

Three families: config values (out of range, wrong types, unknown keys, inconsistent
batch/device/label counts), data (bad npz files, labels out of range, NaN images, a tfds
dataset missing offline) and workdirs (another run's config, corrupt or mismatched
checkpoints). Configs are mutated as plain dicts, as a config loaded from JSON/YAML would
arrive: `ConfigDict`'s own type checks would stop some of them earlier.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import types

import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import train


def _config(mutate=None) -> ml_collections.ConfigDict:
  """The digits smoke config on a tiny MLP (cheap to build), optionally mutated."""
  base = load_experiment("supervised_digits", "smoke")
  d = base.to_dict()
  d["model"] = {"name": "mlp", "hidden_dims": (16,)}
  d.update(num_steps=4, checkpoint_every=2, eval_every=4, log_every=2)
  if mutate is not None:
    mutate(d)
  return ml_collections.ConfigDict(d)


def _set(path: str, value):
  """A mutation setting the dotted `path` (creating nothing but the last key)."""
  def mutate(d):
    *parents, last = path.split(".")
    for p in parents:
      d = d[p]
    d[last] = value
  return mutate


def _snapshot(root: str):
  """Every file's bytes and mtime, and every directory, under `root` (None if absent)."""
  if not os.path.exists(root):
    return None
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    out[rel + "/"] = os.stat(dirpath).st_mtime_ns
    for name in filenames:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      out[os.path.join(rel, name)] = (digest, os.stat(path).st_mtime_ns)
  return out


def _expect_refusal(config, workdir: str, *needles: str, devices=None) -> str:
  before = _snapshot(workdir)
  with pytest.raises(ValueError) as info:
    train.train_and_evaluate(config, workdir, devices=devices)
  message = str(info.value)
  for needle in needles:
    assert needle in message, f"{needle!r} not in:\n{message}"
  assert _snapshot(workdir) == before, "the workdir was touched"
  return message


# ---------------------------------------------------------------------------------------
# Config values
# ---------------------------------------------------------------------------------------

CONFIG_CASES = {
    "unknown top-level key": (_set("num_stepz", 10), "unknown field 'num_stepz'"),
    "unknown nested key": (_set("optimizer.learning_rat", 0.1),
                           "unknown field 'optimizer.learning_rat'"),
    "num_steps zero": (_set("num_steps", 0), "num_steps must be an int > 0, got 0"),
    "num_steps a string": (_set("num_steps", "100"), "num_steps must be an int > 0, got '100'"),
    "batch_size a float": (_set("batch_size", 16.0), "batch_size must be an int > 0, got 16.0"),
    "seed a string": (_set("seed", "0"), "seed must be an int, got '0'"),
    "ema_decay 1": (_set("ema_decay", 1.0), "ema_decay must be in [0, 1)"),
    "ema_decay NaN": (_set("ema_decay", math.nan), "ema_decay must be in [0, 1) (0 turns EMA "
                      "off), got nan"),
    "unlabeled_ratio negative": (_set("unlabeled_ratio", -1),
                                 "unlabeled_ratio must be an int >= 0, got -1"),
    "log_every zero": (_set("log_every", 0), "log_every must be an int > 0, got 0"),
    "skip_nonfinite_updates a string": (_set("skip_nonfinite_updates", "yes"),
                                        "skip_nonfinite_updates must be a bool, got 'yes'"),
    "debug.nan_at_step a float": (_set("debug.nan_at_step", 1.5),
                                  "debug.nan_at_step must be an int (-1 = off), got 1.5"),
    "unknown model": (_set("model", {"name": "resnet7"}), "model.name='resnet7' is unknown"),
    "unknown model argument": (_set("model", {"name": "mlp", "depth_multiplier": 3}),
                               "config.model", "depth_multiplier"),
    "unknown optimizer": (_set("optimizer.name", "adamm"),
                          "optimizer.name='adamm' is unknown; choose one of"),
    "negative learning rate": (_set("optimizer.learning_rate", -0.1),
                               "optimizer.learning_rate must be a number > 0, got -0.1"),
    "unknown loss term": (_set("loss.terms", {"no_such_method": 1.0}),
                          "loss.terms has an unknown method 'no_such_method'"),
    "no loss term": (_set("loss.terms", {}), "loss.terms must give at least one term a weight"),
    "translate out of range": (_set("augment.translate", 2.0),
                               "augment.translate must be a number in [0, 0.5), got 2.0"),
    "crop scale reversed": (_set("augment.simclr_crop_scale", (0.9, 0.2)),
                            "augment.simclr_crop_scale must be (low, high)"),
    "unknown dataset": (_set("data.name", "not_a_dataset"),
                        "data.name='not_a_dataset' is not a known dataset"),
    "zero labels": (_set("data.num_labels", 0), "data.num_labels must be a positive number"),
    "labels not a multiple of the classes": (
        _set("data.num_labels", 15), "data.num_labels=15 is not divisible by the number of "
        "classes (10)"),
    "more labels than examples": (
        _set("data.num_labels", 100000), "data.num_labels=100000 asks for 10000 labels per "
        "class, but class 0 has only"),
    "wrong class count": (_set("data.num_classes", 7), "data.num_classes=7 but digits has 10"),
    "unknown unlabeled pool": (_set("data.unlabeled_pool", "some"),
                               "data.unlabeled_pool must be one of ['all', 'rest', 'none']"),
    "image_size without streaming": (_set("data.image_size", 32),
                                     "data.image_size=32 only applies with data.streaming=True"),
    "per-example pool state with streamed data": (
        lambda d: (d["loss"].update(terms={"flexmatch": 1.0}), d["data"].update(streaming=True)),
        "loss.terms.flexmatch: flexmatch keeps state per example of the data pools, so it "
        "needs the dataset on the devices (data.streaming=False)"),
    "pool refresh with streamed data": (
        lambda d: (d["loss"].update(terms={"deep_lp": 1.0}), d["data"].update(streaming=True)),
        "loss.terms.deep_lp: deep_lp re-embeds the whole unlabeled pool"),
    "unlabeled batches from an empty pool": (
        lambda d: (d.update(unlabeled_ratio=2), d["data"].update(unlabeled_pool="rest")),
        "unlabeled_ratio=2 asks for unlabeled batches, but the unlabeled pool is empty "
        "(data.unlabeled_pool='rest'"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config(case, tmp_path):
  mutate, *needles = CONFIG_CASES[case]
  workdir = str(tmp_path / "w")
  _expect_refusal(_config(mutate), workdir, *needles)
  assert not os.path.exists(workdir)


def test_every_problem_is_listed_at_once(tmp_path):
  def mutate(d):
    d.update(num_steps=0, log_every=-1)
    d["optimizer"]["learning_rate"] = -1.0
  message = _expect_refusal(_config(mutate), str(tmp_path / "w"),
                            "num_steps must be", "log_every must be",
                            "optimizer.learning_rate must be")
  assert message.count("\n  - ") == 3


def test_batch_that_does_not_split_across_the_devices(tmp_path, monkeypatch):
  """A 4-device machine (the mesh is the only thing consulted before the check)."""
  from sslx import step
  monkeypatch.setattr(step, "make_mesh",
                      lambda devices=None: types.SimpleNamespace(devices=np.empty(4)))
  config = _config(lambda d: d.update(batch_size=6, eval_batch_size=130))
  _expect_refusal(config, str(tmp_path / "w"),
                  "batch_size=6 does not divide across 4 devices (make it a multiple of 4)",
                  "eval_batch_size=130 does not divide across 4 devices")
  assert not os.path.exists(tmp_path / "w")


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def _npz_arrays(**changes):
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8),
                y_train=np.arange(20) % 2, x_test=rng.integers(0, 256, (6, 8, 8, 1),
                                                                dtype=np.uint8),
                y_test=np.arange(6) % 2)
  arrays.update(changes)
  return {k: v for k, v in arrays.items() if v is not None}


NAN_IMAGES = np.full((20, 8, 8, 1), np.nan, np.float32)

NPZ_CASES = {
    "missing file": (None, "file not found"),
    "not an npz": (b"this is not a zip archive", "cannot read it as an .npz file"),
    "missing key": (_npz_arrays(y_test=None), "missing keys ['y_test']"),
    "label out of range": (_npz_arrays(y_train=np.array([0, 1] * 9 + [5, 1])),
                           "y_train has labels outside [0, 2) (data.num_classes=2), e.g. [5]"),
    "negative label": (_npz_arrays(y_test=np.array([0, 1, -1, 0, 1, 0])),
                       "y_test has labels outside [0, 2)"),
    "NaN images": (_npz_arrays(x_train=NAN_IMAGES), "x_train: images must be uint8 (0..255), "
                   "got dtype float32"),
    "fewer labels than images": (_npz_arrays(y_train=np.arange(19) % 2),
                                 "x_train has 20 images but y_train has 19 labels"),
    "inconsistent image shapes": (_npz_arrays(x_test=np.zeros((6, 9, 9, 1), np.uint8)),
                                  "images of inconsistent shapes"),
    "float labels": (_npz_arrays(y_train=np.zeros(20, np.float32)),
                     "labels must be integers, got dtype float32"),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_bad_npz(case, tmp_path):
  content, needle = NPZ_CASES[case]
  path = str(tmp_path / "data.npz")
  if isinstance(content, bytes):
    with open(path, "wb") as f:
      f.write(content)
  elif content is not None:
    np.savez(path, **content)

  def mutate(d):
    d["data"].update(name=f"npz:{path}", num_labels=-1, num_classes=2, normalization="none")
    d["eval_batch_size"] = 8
  workdir = str(tmp_path / "w")
  _expect_refusal(_config(mutate), workdir, f"data.name='npz:{path}'", needle)
  assert not os.path.exists(workdir)


def test_good_npz_passes_validation(tmp_path):
  """The control for the cases above: the same file without the defect loads."""
  from sslx import data as data_lib
  path = str(tmp_path / "data.npz")
  np.savez(path, **_npz_arrays())
  config = _config(lambda d: d["data"].update(name=f"npz:{path}", num_classes=2,
                                              normalization="none"))
  assert data_lib.load_dataset(config.data).num_classes == 2


def test_missing_tfds_dataset_offline(tmp_path, monkeypatch):
  def no_network(*args, **kwargs):
    raise OSError("network disabled in tests")
  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  config = _config(lambda d: d["data"].update(name="cifar10", num_labels=40,
                                              data_dir=str(data_dir)))
  workdir = str(tmp_path / "w")
  _expect_refusal(config, workdir, "data.name='cifar10': the tfds dataset is not prepared",
                  "tfds build cifar10")
  assert not os.path.exists(workdir)


# ---------------------------------------------------------------------------------------
# Workdirs and checkpoints
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir as a finished run leaves it (checkpoints at steps 2 and 4)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "w")
  train.train_and_evaluate(_config(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  return workdir


@pytest.fixture
def run_copy(trained, tmp_path):
  workdir = str(tmp_path / "w")
  shutil.copytree(trained, workdir)
  return workdir


def _array_files(step_dir: str) -> list[str]:
  """The files holding array bytes (tensorstore/OCDBT data) of one checkpoint step."""
  return [os.path.join(root, f) for root, _, files in os.walk(step_dir) for f in files
          if os.path.basename(root) == "d" and "ocdbt.process_" in root]


def test_workdir_of_another_config(run_copy):
  _expect_refusal(_config(_set("optimizer.learning_rate", 0.5)), run_copy,
                  "holds a run with a different config",
                  "optimizer.learning_rate: 0.05 -> 0.5", "--overwrite")


def _drop_saved_field(workdir, block, key):
  """config.json as code from before `block.key` existed wrote it."""
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    saved = json.load(f)
  del saved[block][key]
  with open(path, "w") as f:
    json.dump(saved, f)


def test_a_field_added_since_the_run_resumes_at_its_default_only(run_copy):
  """A run written before an option existed (here graph.memory_size) resumes when the option
  is at its default, and is refused, naming the field, when it is not."""
  _drop_saved_field(run_copy, "graph", "memory_size")
  results = train.train_and_evaluate(_config(), run_copy)
  assert results["steps"] == _config().num_steps
  _expect_refusal(_config(_set("graph.memory_size", 64)), run_copy,
                  "holds a run with a different config", "graph.memory_size: '<missing>' -> 64")


def test_unreadable_config_json(run_copy):
  with open(os.path.join(run_copy, "config.json"), "w") as f:
    f.write("{ not json")
  _expect_refusal(_config(), run_copy, "unreadable config.json", "--overwrite")


def test_checkpoint_of_another_model(run_copy):
  """config.json gone (checkpoints copied by hand): the checkpoint itself is checked."""
  os.remove(os.path.join(run_copy, "config.json"))
  wider = _config(_set("model", {"name": "mlp", "hidden_dims": (32,)}))
  _expect_refusal(wider, run_copy, "the checkpoint at step 4 does not fit this config's state",
                  "params.classifier.kernel: checkpoint float32[16, 10], this run "
                  "float32[32, 10]", "resume from step 2", "--overwrite")


def test_checkpoint_with_corrupt_metadata(run_copy):
  step_dir = os.path.join(run_copy, "checkpoints", "4", "default")
  with open(os.path.join(step_dir, "_METADATA"), "w") as f:
    f.write("\x00garbage")
  _expect_refusal(_config(), run_copy, "the checkpoint at step 4 is unreadable, corrupt or "
                  "partly deleted", f"delete {os.path.join(run_copy, 'checkpoints', '4')} to "
                  "resume from step 2")


def test_checkpoint_with_corrupt_arrays(run_copy):
  files = _array_files(os.path.join(run_copy, "checkpoints", "4", "default"))
  assert files
  for path in files:  # same size, scrambled bytes: only reading the arrays can tell
    with open(path, "r+b") as f:
      size = len(f.read())
      f.seek(0)
      f.write(bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)))
  _expect_refusal(_config(), run_copy, "the checkpoint at step 4 could not be read; its files "
                  "are corrupt", "resume from step 2")


def test_checkpoint_renamed_to_another_step(run_copy):
  ckpt = os.path.join(run_copy, "checkpoints")
  os.rename(os.path.join(ckpt, "4"), os.path.join(ckpt, "6"))
  _expect_refusal(_config(), run_copy, "holds the state of step 4, not 6")

