"""Every experiment config runs end to end with `:smoke` (tfds datasets on mock data)."""

import contextlib
import json
import os

import pytest

from helpers import experiment_names, load_experiment
from sslx import train

# Covered elsewhere by a fuller run of the same code path (tests/test_train.py).
_COVERED = {"supervised_digits", "notmnist"}


@pytest.mark.parametrize("name", [n for n in experiment_names() if n not in _COVERED])
def test_smoke_run(name, tmp_path):
  config = load_experiment(name, "smoke")
  mock = contextlib.nullcontext()
  if not config.data.name.startswith(("digits", "npz:")):
    import tensorflow_datasets as tfds
    mock = tfds.testing.mock_data(num_examples=64)
  with mock:
    results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps
  with open(tmp_path / "w" / "results.json") as f:
    assert json.load(f)["steps"] == config.num_steps


@pytest.mark.parametrize("name", experiment_names())
def test_full_config_is_valid(name):
  """The paper-scale configs (not run here) pass every check that needs no data or devices,
  and their batch sizes split across 8 devices (one GPU/TPU host)."""
  from sslx.config import config_errors, device_errors
  config = load_experiment(name, "")
  assert config_errors(config) == []
  assert device_errors(config, 8) == []


def test_all_three_families_in_one_step(tmp_path):
  """FixMatch + graph pseudo-labels + NT-Xent (+ supervised) compose by a config arg, and
  each term is logged separately."""
  from helpers import read_jsonl
  config = load_experiment("fixmatch_graph_digits", "smoke,nt_xent=0.1")
  assert dict(config.loss.terms) == {"supervised": 1.0, "fixmatch": 1.0, "graph": 1.0,
                                     "nt_xent": 0.1}
  results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps
  row = read_jsonl(str(tmp_path / "w" / "metrics.jsonl"))[-1]
  for term in ("supervised", "fixmatch", "graph", "nt_xent"):
    assert f"loss/{term}" in row, sorted(row)
  assert "nt_xent/contrastive_accuracy" in row, sorted(row)


def test_notmnist_smoke_on_the_real_file(tmp_path):
  """The 28x28 recipe runs at smoke size on the vendored notMNIST file, from any cwd:
  10 labels per class, the whole train split as the unlabeled pool, all three terms."""
  from helpers import read_jsonl
  config = load_experiment("notmnist", "smoke")
  path = config.data.name[len("npz:"):]
  assert os.path.isabs(path) and os.path.isfile(path), path
  results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps
  assert results["num_labels"] == 100
  with open(tmp_path / "w" / "labeled_indices.json") as f:
    split = json.load(f)
  assert split["labels_per_class"] == [10] * 10
  assert split["num_unlabeled"] == 8000
  row = read_jsonl(str(tmp_path / "w" / "metrics.jsonl"))[-1]
  for term in ("supervised", "fixmatch", "graph"):
    assert f"loss/{term}" in row, sorted(row)
  assert 0.0 <= results["test_accuracy_ema"] <= 1.0


def _notmnist_methods():
  from sslx.config import load_config_module
  return load_config_module(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                         "notmnist.py")).METHODS


@pytest.mark.parametrize("method", _notmnist_methods())
def test_notmnist_method_swaps_the_loss_and_keeps_the_recipe(method):
  """``notmnist.py:method=NAME`` is the digits file's method (name, loss terms, options block)
  on the notMNIST recipe: same data, network, views, batch, steps and EMA as the default."""
  from sslx.config import config_errors, differing_fields
  base = load_experiment("notmnist", "")
  swapped = load_experiment("notmnist", f"method={method}")
  digits = load_experiment(f"{method}_digits", "")
  assert config_errors(swapped) == []
  assert swapped.method == digits.method
  assert dict(swapped.loss.terms) == dict(digits.loss.terms)
  for key in ("data", "model", "augment", "optimizer", "batch_size", "unlabeled_ratio",
              "num_steps", "ema_decay"):
    base_value, value = base.to_dict()[key], swapped.to_dict()[key]
    if key == "model" and "projection_dim" in digits.model:   # a method's own head
      assert value.pop("projection_dim") == digits.model.projection_dim
    assert differing_fields({key: base_value}, {key: value}) == [], key
  derived = {"comatch": ("queue_size", "warmup_steps"), "simmatch": ("warmup_steps",),
             "dash": ("update_every", "warmup_steps"), "co_training": ("model",)}
  blocks = [t for t in digits.loss.terms if t in digits and t != "supervised"]
  assert blocks, method
  for block in blocks:
    for key, value in digits[block].items():   # the options blocks, except derived values
      if key not in derived.get(block, ()):
        assert swapped[block][key] == value, (block, key)


def test_notmnist_method_values_derived_from_the_recipe():
  """Options the digits files compute from the batch, steps or model follow notMNIST's
  (batch 32 + 3 x 32, 1,500 steps, convnet), and the digits configs keep their own."""
  import json as json_
  comatch = load_experiment("notmnist", "method=comatch")
  assert comatch.comatch.queue_size == 5 * (3 + 1) * 32      # digits: 5 x (7 + 1) x 32
  assert load_experiment("comatch_digits", "").comatch.queue_size == 1280
  assert load_experiment("notmnist", "method=dash").dash.update_every == 128
  assert load_experiment("dash_digits", "").dash.update_every == 256
  assert json_.loads(load_experiment("notmnist", "method=co_training").co_training.model) == {
      "name": "convnet", "widths": [32, 64, 128]}
  plain = load_experiment("notmnist", "method=fixmatch")
  assert dict(plain.loss.terms) == {"supervised": 1.0, "fixmatch": 1.0}
  assert (plain.fixmatch.threshold, plain.fixmatch.distribution_alignment) == (0.95, False)
  rounds = load_experiment("notmnist", "method=self_training")
  assert rounds.eval_every == 1500 // 4


def test_notmnist_nt_xent_adds_the_third_family():
  """``notmnist.py:nt_xent=W`` is the recipe plus ``fixmatch_graph_digits.py:nt_xent=W``'s
  term and head on the convnet; nothing else changes."""
  from sslx.config import differing_fields
  base = load_experiment("notmnist", "")
  three = load_experiment("notmnist", "nt_xent=0.1")
  digits = load_experiment("fixmatch_graph_digits", "nt_xent=0.1")
  assert three.method == "fixmatch+da+graph+nt_xent"
  assert dict(three.loss.terms) == dict(base.loss.terms, nt_xent=0.1)
  assert three.model.to_dict() == dict(base.model.to_dict(), projection_dim=64)
  assert three.nt_xent.to_dict() == digits.nt_xent.to_dict()
  changed = {f.split(":")[0].split(".")[0]
             for f in differing_fields(base.to_dict(), three.to_dict())}
  assert changed == {"method", "loss", "model", "nt_xent"}
  assert load_experiment("notmnist", "nt_xent=0.1,smoke").model.projection_dim == 16


def test_notmnist_rotation_adds_rotation_prediction_and_nothing_else():
  """``notmnist.py:rotation=W`` is the recipe plus the rotation term with weight W (its
  linear head on the features is the method's own module)."""
  from sslx.config import differing_fields
  base = load_experiment("notmnist", "")
  rot = load_experiment("notmnist", "rotation=0.5")
  assert rot.method == "fixmatch+da+graph+rotation"
  assert dict(rot.loss.terms) == dict(base.loss.terms, rotation=0.5)
  changed = {f.split(":")[0].split(".")[0]
             for f in differing_fields(base.to_dict(), rot.to_dict())}
  assert changed == {"method", "loss"}


def test_notmnist_deep_lp_smoke_on_the_real_file(tmp_path):
  """``notmnist.py:method=lp``: the refresh embeds the 8,000 28x28 images and trains on
  their propagated labels (the other methods' steps are the digits ones at a new size)."""
  from helpers import read_jsonl
  config = load_experiment("notmnist", "method=lp,smoke")
  results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps
  rows = read_jsonl(str(tmp_path / "w" / "metrics.jsonl"))
  assert any("loss/deep_lp" in r for r in rows), sorted(rows[-1])


def _notmnist_ssl_methods():
  from sslx.config import load_config_module
  return load_config_module(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                         "notmnist_ssl.py")).METHODS


@pytest.mark.parametrize("method", _notmnist_ssl_methods())
def test_notmnist_ssl_is_the_digits_recipe_at_28x28(method):
  """``notmnist_ssl.py:method=NAME`` differs from ``NAME_digits.py`` only in the data, the
  probes' label count, the eval batch, the encoder (the 28x28 convnet, or MAE's ViT with 7x7
  patches: 16 an image as on digits) and multi-crop sizes scaled by 28 / 8."""
  from sslx.config import config_errors, differing_fields
  for arg in ("", "smoke"):
    digits = load_experiment(f"{method}_digits", arg)
    nm = load_experiment("notmnist_ssl", f"method={method},{arg}".rstrip(","))
    assert config_errors(nm) == []
    paths = [f.split(":")[0] for f in differing_fields(digits.to_dict(), nm.to_dict())]
    changed = {p if p.startswith("augment.") else p.split(".")[0] for p in paths}
    allowed = {"data", "eval_batch_size", "model", "mae", "augment.multicrop_global_size",
               "augment.multicrop_local_size"}
    assert changed <= allowed, changed - allowed
    assert nm.data.name.endswith("notmnist10k.npz") and nm.data.num_labels == 100
    digits_model, model = digits.model.to_dict(), nm.model.to_dict()
    if digits_model["name"] == "vit":
      assert model["patch_size"] == nm.mae.patch_size == 7
      assert (28 // model["patch_size"]) ** 2 == (8 // digits_model["patch_size"]) ** 2
      assert differing_fields(digits.mae.to_dict(), nm.mae.to_dict()) == ["patch_size: 2 -> 7"]
    else:
      assert model["name"] == "convnet" and "width" not in model
      assert model["widths"] == ((8, 16) if arg else (32, 64, 128))
      for key, value in digits_model.items():   # the heads are the digits recipe's
        if key not in ("name", "width"):
          assert model[key] == value, key
    for kind, side in (("global", 28), ("local", 14)):
      expected = side if digits.augment[f"multicrop_{kind}_size"] else 0
      assert nm.augment[f"multicrop_{kind}_size"] == expected


@pytest.mark.parametrize("method", ["dino", "mae"])
def test_notmnist_ssl_smoke_multicrop_and_vit(method, tmp_path):
  """DINO's 28x28 + 14x14 crops and MAE's 7x7-patch ViT run on the real file (simclr runs in
  test_smoke_run) and are probed on the 100 labels."""
  config = load_experiment("notmnist_ssl", f"method={method},smoke")
  results = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert results["steps"] == config.num_steps and results["num_labels"] == 100
  assert 0.0 <= results["linear_probe_accuracy"] <= 1.0
  assert 0.0 <= results["knn_accuracy"] <= 1.0


@pytest.mark.parametrize("name, arg, message", [
    ("notmnist", "lables=10", "notmnist.py: unknown arg(s) ['lables']"),
    ("notmnist", "labels_per_class=0", "notmnist.py: labels_per_class must be a positive int or 'all'"),
    ("notmnist", "mu=0", "notmnist.py: mu must be a positive int, got 0"),
    ("notmnist", "model=vit", "notmnist.py: model must be one of ['cnn', 'convnet']"),
    ("notmnist", "method=fixmatch_graph", "notmnist.py: method must be one of ['fixmatch', "),
    ("notmnist", "method=uda,supervised", "notmnist.py: method=uda and supervised are exclusive"),
    ("notmnist", "nt_xent=0.1,method=uda", "notmnist.py: nt_xent adds a term to the recipe's loss; method"),
    ("notmnist", "nt_xent=0.1,supervised", "notmnist.py: nt_xent adds a term to the recipe's loss; supervised"),
    ("notmnist", "nt_xent=-1", "notmnist.py: nt_xent"),
    ("notmnist", "rotation=0.5,method=uda", "notmnist.py: rotation adds a term to the recipe's loss; method"),
    ("notmnist", "rotation=0.5,supervised", "notmnist.py: rotation adds a term to the recipe's loss; supervised"),
    ("notmnist", "rotation=-1", "notmnist.py: rotation must be a number >= 0, got -1"),
    ("notmnist_ssl", "method=fixmatch", "notmnist_ssl.py: method must be one of ['simclr', "),
    ("notmnist_ssl", "labels_per_class=all", "notmnist_ssl.py: labels_per_class must be a positive int"),
    ("notmnist_ssl", "mu=3", "notmnist_ssl.py: unknown arg(s) ['mu']"),
    ("fixmatch_cifar100", "labels=0", "fixmatch_cifar100.py: labels must be a positive int"),
    ("fixmatch_svhn", "lables=40", "fixmatch_svhn.py: unknown arg(s) ['lables']"),
    ("fixmatch_stl10", "labels=1.5", "fixmatch_stl10.py: labels must be a positive int"),
    ("simclr_cifar10", "images=100", "simclr_cifar10.py: images must be a positive multiple of 64"),
    ("simclr_imagenet", "epochs=-1", "simclr_imagenet.py: epochs must be a positive int"),
    ("nnclr_cifar10", "images=100", "nnclr_cifar10.py: images must be a positive multiple of 64"),
    ("mae_cifar10", "epoch=5", "mae_cifar10.py: unknown arg(s) ['epoch']"),
    ("mae_digits", "labels=4", "mae_digits.py: unknown arg(s) ['labels']"),
    ("byol_cifar", "dataset=svhn",
     "byol_cifar.py: dataset must be one of ['cifar10', 'cifar100'], got 'svhn'"),
    ("moco_cifar", "dataset=cifar100,method=byol", "moco_cifar.py: unknown arg(s) ['method']"),
    ("swav_cifar", "dataset=cifar100,method=dino", "swav_cifar.py: unknown arg(s) ['method']"),
])
def test_bad_config_args_name_the_file_and_arg(name, arg, message):
  with pytest.raises(ValueError) as info:
    load_experiment(name, arg)
  assert message in str(info.value)


_SOLO_CIFAR = ["byol_cifar", "simsiam_cifar", "barlow_twins_cifar", "vicreg_cifar", "moco_cifar",
               "dino_cifar", "swav_cifar"]


@pytest.mark.parametrize("name", _SOLO_CIFAR)
def test_solo_learn_cifar_configs_switch_dataset_and_nothing_else(name):
  """``dataset=cifar100`` changes only ``data.name`` (solo-learn's YAMLs differ only there), and
  every file runs solo's schedule: 1000 epochs of 195 steps, 10 of warm-up, 256 images a step."""
  from sslx.config import config_errors, differing_fields
  c10, c100 = load_experiment(name, ""), load_experiment(name, "dataset=cifar100")
  assert differing_fields(c10.to_dict(), c100.to_dict()) == [
      "data.name: 'cifar10' -> 'cifar100'"]
  assert config_errors(c100) == []
  assert (c10.num_steps, c10.optimizer.warmup_steps) == (195_000, 1_950)
  assert c10.batch_size * c10.unlabeled_ratio == 256
  assert c10.method == name[:-len("_cifar")] and c10.loss.terms[c10.method] > 0
  assert c10.model.name == "resnet18" and c10.model.stem == "cifar"
