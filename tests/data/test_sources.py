"""Sources: digits, every tfds name through tfds's own mock, npz files, and their errors.

`tfds.testing.mock_data` replaces only the stored records: `load_dataset` still goes
through `tfds.data_source`, the builders' metadata (shapes, class counts, split names)
and sslx's reader. No test touches the network.
"""

import json
import os
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sslx.data import sources
from sslx.data.config import default_data_config
from sslx.data.dataset import SPLIT_FILENAME, load_dataset, normalization_stats, read_split

MOCK_EXAMPLES = 60


def _cfg(**overrides):
  cfg = default_data_config()
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


# ----------------------------------------------------------------------------- digits


def test_digits_offline_default():
  ds = load_dataset(_cfg(num_labels=50, split_seed=1))
  assert ds.name == "digits" and ds.num_classes == 10 and ds.image_shape == (8, 8, 1)
  assert ds.labeled_images.shape == (50, 8, 8, 1) and ds.labeled_images.dtype == np.uint8
  assert ds.unlabeled_images.shape == (1437, 8, 8, 1)  # 'all': the whole training set
  assert ds.test_images.shape == (360, 8, 8, 1)
  assert ds.test_images.max() == 255 and ds.test_images.min() == 0
  np.testing.assert_array_equal(np.bincount(ds.labeled_labels), [5] * 10)
  # labeled examples are the unlabeled pool's rows at labeled_indices ('all' keeps order)
  np.testing.assert_array_equal(ds.unlabeled_images[ds.labeled_indices], ds.labeled_images)
  np.testing.assert_array_equal(ds.unlabeled_labels[ds.labeled_indices], ds.labeled_labels)
  # the train/test split is fixed in code, independent of split_seed
  other = load_dataset(_cfg(num_labels=50, split_seed=2))
  np.testing.assert_array_equal(other.test_images, ds.test_images)
  assert not np.array_equal(other.labeled_indices, ds.labeled_indices)
  # stats are those of the training split on the [0, 1] scale
  x = ds.unlabeled_images.astype(np.float64) / 255
  np.testing.assert_allclose(ds.mean, [x.mean()], rtol=1e-5)
  np.testing.assert_allclose(ds.std, [x.std()], rtol=1e-5)


def test_rest_pool_excludes_labeled():
  raw = sources.load_digits()
  ds = load_dataset(_cfg(num_labels=100, unlabeled_pool="rest"))
  assert ds.unlabeled_images.shape[0] == 1437 - 100
  np.testing.assert_array_equal(
      ds.unlabeled_images, np.delete(raw.train_images, ds.labeled_indices, axis=0))
  np.testing.assert_array_equal(
      ds.unlabeled_labels, np.delete(raw.train_labels, ds.labeled_indices))
  np.testing.assert_array_equal(ds.labeled_images, raw.train_images[ds.labeled_indices])


def test_save_split_atomic_and_readable(tmp_path):
  ds = load_dataset(_cfg(num_labels=20, split_seed=4))
  workdir = tmp_path / "run"
  path = ds.save_split(str(workdir))
  assert path == os.path.join(str(workdir), SPLIT_FILENAME)
  record = json.loads(open(path).read())
  assert record["labeled_indices"] == ds.labeled_indices.tolist()
  assert record["labels_per_class"] == [2] * 10 and record["split_seed"] == 4
  assert os.listdir(workdir) == [SPLIT_FILENAME]  # no temporary file left behind
  ds2 = load_dataset(_cfg(num_labels=30, split_seed=4))
  ds2.save_split(str(workdir))  # overwrites
  assert read_split(str(workdir))["num_labels"] == 30
  assert read_split(str(tmp_path / "none")) is None


def test_normalization_kinds():
  images = np.zeros((2, 2, 2, 3), np.uint8)
  mean, std = normalization_stats("train_stats", images)
  np.testing.assert_array_equal(mean, [0, 0, 0])
  np.testing.assert_array_equal(std, [1, 1, 1])  # a constant channel gets std 1
  np.testing.assert_allclose(normalization_stats("imagenet")[0], [0.485, 0.456, 0.406])
  np.testing.assert_array_equal(normalization_stats("symmetric", images)[1], [0.5] * 3)
  ds = load_dataset(_cfg(normalization="none"))
  assert ds.mean.tolist() == [0.0] and ds.std.tolist() == [1.0]


# ----------------------------------------------------------------------------- tfds


@pytest.mark.parametrize("name,num_labels,num_classes,shape,extra", [
    ("mnist", 10, 10, (28, 28, 1), False),
    ("fashion_mnist", 10, 10, (28, 28, 1), False),
    ("cifar10", 20, 10, (32, 32, 3), False),
    ("cifar100", -1, 100, (32, 32, 3), False),  # 60 mock examples cannot cover 100 classes
    ("svhn_cropped", 10, 10, (32, 32, 3), True),
    ("stl10", 10, 10, (96, 96, 3), True),
])
def test_tfds_datasets_through_mock(name, num_labels, num_classes, shape, extra):
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    ds = load_dataset(_cfg(name=name, num_labels=num_labels, extra_unlabeled=extra))
    train = tfds.data_source(name, split="train")
    direct = np.stack([train[int(i)]["image"] for i in ds.labeled_indices[:5]])
  n_labeled = MOCK_EXAMPLES if num_labels == -1 else num_labels
  assert ds.num_classes == num_classes and ds.image_shape == shape
  assert ds.labeled_images.shape == (n_labeled,) + shape
  assert ds.test_images.shape == (MOCK_EXAMPLES,) + shape
  np.testing.assert_array_equal(ds.labeled_images[:5], direct)
  if num_labels > 0:
    np.testing.assert_array_equal(np.bincount(ds.labeled_labels, minlength=num_classes),
                                  [num_labels // num_classes] * num_classes)
  # the unlabeled pool is the training split, plus the extra split when asked
  assert ds.unlabeled_images.shape[0] == MOCK_EXAMPLES * (2 if extra else 1)
  extra_labels = ds.unlabeled_labels[MOCK_EXAMPLES:]
  if name == "stl10":
    assert np.all(extra_labels == -1)  # STL-10's unlabelled split has no labels
  elif name == "svhn_cropped":
    assert np.all((extra_labels >= 0) & (extra_labels < 10))  # SVHN extra is labeled


def test_tfds_split_deterministic_and_seeded():
  with tfds.testing.mock_data(num_examples=200):
    a = load_dataset(_cfg(name="cifar10", num_labels=30, split_seed=0))
    b = load_dataset(_cfg(name="cifar10", num_labels=30, split_seed=0))
    c = load_dataset(_cfg(name="cifar10", num_labels=30, split_seed=1))
    rest = load_dataset(_cfg(name="cifar10", num_labels=30, split_seed=0,
                             unlabeled_pool="rest"))
  np.testing.assert_array_equal(a.labeled_indices, b.labeled_indices)
  np.testing.assert_array_equal(a.labeled_images, b.labeled_images)
  assert not np.array_equal(a.labeled_indices, c.labeled_indices)
  assert rest.unlabeled_images.shape[0] == 170
  np.testing.assert_array_equal(
      np.delete(a.unlabeled_images, a.labeled_indices, axis=0), rest.unlabeled_images)


def test_tfds_errors_name_the_field():
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    with pytest.raises(ValueError, match=r"data.num_labels=25 is not divisible .*\(10\)"):
      load_dataset(_cfg(name="cifar10", num_labels=25))
    with pytest.raises(ValueError, match=r"data.num_labels=1000 asks for 100 labels per class"):
      load_dataset(_cfg(name="cifar10", num_labels=1000))
    with pytest.raises(ValueError, match=r"data.num_classes=7 but cifar10 has 10 classes"):
      load_dataset(_cfg(name="cifar10", num_classes=7))
    with pytest.raises(ValueError, match=r"set data.streaming=True"):
      load_dataset(_cfg(name="imagenet2012"))
  with pytest.raises(ValueError, match=r"data.name='tiny' is not a known dataset"):
    load_dataset(_cfg(name="tiny"))


def test_unprepared_dataset_fails_fast_without_network(tmp_path, monkeypatch):
  attempts = []

  def no_network(*args, **kwargs):
    attempts.append(args)
    raise OSError("network disabled in tests")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda *a, **k: attempts.append("download_and_prepare"))
  with pytest.raises(sources.DatasetNotPreparedError) as info:
    load_dataset(_cfg(name="cifar10", data_dir=str(tmp_path)))
  message = str(info.value)
  assert "data.name='cifar10'" in message and str(tmp_path) in message
  assert "tfds build cifar10 --file_format=array_record" in message
  assert "TFDS_DATA_DIR" in message and "data.download=True" in message
  assert isinstance(info.value, ValueError)
  assert attempts == []  # neither a download nor a connection was tried
  assert os.listdir(tmp_path) in ([], ["cifar10"])  # nothing downloaded


def test_read_examples_inconsistent_shapes():
  source = [{"image": np.zeros((4, 4, 3), np.uint8), "label": 0},
            {"image": np.zeros((4, 5, 3), np.uint8), "label": 1}]
  with pytest.raises(ValueError, match=r"images of inconsistent shapes: example 1 is \(4, 5, 3\)"):
    sources.read_examples(source, what="x[train]", num_threads=1)
  images, labels = sources.read_examples(source[:1] * 3, what="x", num_threads=2, chunk_size=1)
  assert images.shape == (3, 4, 4, 3) and labels.tolist() == [0, 0, 0]


# ----------------------------------------------------------------------------- npz


def _write_npz(path, **arrays):
  rng = np.random.default_rng(0)
  base = dict(
      x_train=rng.integers(0, 256, (30, 6, 5), dtype=np.uint8),
      y_train=np.arange(30) % 3,
      x_test=rng.integers(0, 256, (9, 6, 5), dtype=np.uint8),
      y_test=np.arange(9) % 3,
      x_unlabeled=rng.integers(0, 256, (12, 6, 5), dtype=np.uint8),
  )
  base.update(arrays)
  np.savez(path, **{k: v for k, v in base.items() if v is not None})
  return base


def test_npz_round_trip(tmp_path):
  path = str(tmp_path / "mine.npz")
  arrays = _write_npz(path)
  ds = load_dataset(_cfg(name=f"npz:{path}", num_labels=6, split_seed=3, extra_unlabeled=True))
  assert ds.num_classes == 3 and ds.image_shape == (6, 5, 1)
  np.testing.assert_array_equal(ds.test_images[..., 0], arrays["x_test"])
  np.testing.assert_array_equal(ds.test_labels, arrays["y_test"])
  np.testing.assert_array_equal(ds.labeled_images[..., 0], arrays["x_train"][ds.labeled_indices])
  np.testing.assert_array_equal(ds.labeled_labels, arrays["y_train"][ds.labeled_indices])
  np.testing.assert_array_equal(np.bincount(ds.labeled_labels), [2, 2, 2])
  np.testing.assert_array_equal(ds.unlabeled_images[30:, ..., 0], arrays["x_unlabeled"])
  np.testing.assert_array_equal(ds.unlabeled_labels[30:], -1)
  assert ds.unlabeled_images.shape[0] == 42
  # without extra_unlabeled, x_unlabeled is ignored; num_classes may be given
  ds = load_dataset(_cfg(name=f"npz:{path}", num_classes=5))
  assert ds.unlabeled_images.shape[0] == 30 and ds.num_classes == 5


@pytest.mark.parametrize("arrays,message", [
    (dict(y_test=None), r"missing keys \['y_test'\]"),
    (dict(x_train=np.zeros((30, 6, 5), np.float32)), r"x_train: images must be uint8"),
    (dict(y_train=np.zeros(30, np.float32)), r"y_train: labels must be integers"),
    (dict(y_train=np.zeros(29, np.int64)), r"x_train has 30 images but y_train has 29 labels"),
    (dict(y_test=np.array([0, 1, 2, 0, 1, 2, 0, 1, -1])), r"y_test has labels outside \[0, 3\)"),
    (dict(x_test=np.zeros((9, 6, 6), np.uint8)), r"images of inconsistent shapes"),
    (dict(x_train=np.zeros((30, 2, 6, 5, 1), np.uint8)), r"must be \[N, H, W, C\] or \[N, H, W\]"),
])
def test_npz_errors(tmp_path, arrays, message):
  path = str(tmp_path / "bad.npz")
  _write_npz(path, **arrays)
  with pytest.raises(ValueError, match=message) as info:
    load_dataset(_cfg(name=f"npz:{path}"))
  assert f"npz:{path}" in str(info.value)  # names data.name


def test_npz_more_errors(tmp_path):
  path = str(tmp_path / "ok.npz")
  _write_npz(path, x_unlabeled=None)
  with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 2\)"):
    load_dataset(_cfg(name=f"npz:{path}", num_classes=2))
  with pytest.raises(ValueError, match=r"data.extra_unlabeled=True but .* no 'x_unlabeled'"):
    load_dataset(_cfg(name=f"npz:{path}", extra_unlabeled=True))
  with pytest.raises(ValueError, match=r"file not found"):
    load_dataset(_cfg(name=f"npz:{tmp_path}/missing.npz"))
  (tmp_path / "junk.npz").write_text("not a zip")
  with pytest.raises(ValueError, match=r"cannot read it as an .npz"):
    load_dataset(_cfg(name=f"npz:{tmp_path}/junk.npz"))
