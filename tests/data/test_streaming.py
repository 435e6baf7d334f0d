"""Streaming path (grain over tfds.data_source) on tfds's mock data: no network, no TF."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sslx.data.config import default_data_config
from sslx.data.dataset import load_dataset
from sslx.data.streaming import CenterCrop, RandomResizedCrop, load_streaming_dataset

NUM = 40  # mock examples per split


def _cfg(**overrides):
  cfg = default_data_config()
  cfg.streaming = True
  cfg.read_threads = 4
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


@pytest.fixture(scope="module")
def imagenet():
  with tfds.testing.mock_data(num_examples=NUM):
    yield load_streaming_dataset(_cfg(name="imagenet2012", image_size=16))


@pytest.fixture(scope="module")
def cifar():
  with tfds.testing.mock_data(num_examples=NUM):
    train_labels = np.array([int(ex["label"]) for ex in tfds.data_source("cifar10", split="train")])
    yield load_streaming_dataset(_cfg(name="cifar10", num_labels=10, split_seed=3)), train_labels


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_imagenet_batches_shapes_and_state_restore(imagenet):
  assert imagenet.image_shape == (16, 16, 3) and imagenet.num_classes == 1000
  assert imagenet.num_train == NUM and imagenet.num_labeled == NUM  # num_labels=-1
  np.testing.assert_allclose(imagenet.mean, [0.485, 0.456, 0.406])  # known ImageNet stats
  it = imagenet.train_iterator(labeled_batch_size=8, unlabeled_batch_size=12, seed=5)
  first = next(it)
  assert {k: (v.shape, v.dtype) for k, v in first.items()} == {
      "labeled_images": ((8, 16, 16, 3), np.uint8), "labeled_labels": ((8,), np.int32),
      "unlabeled_images": ((12, 16, 16, 3), np.uint8), "unlabeled_labels": ((12,), np.int32)}
  state = json.loads(json.dumps(it.get_state()))  # a plain, serialisable state
  later = _take(it, 3)
  restored = imagenet.train_iterator(labeled_batch_size=8, unlabeled_batch_size=12, seed=5)
  restored.set_state(state)
  resumed_at_step = imagenet.train_iterator(labeled_batch_size=8, unlabeled_batch_size=12,
                                            seed=5, start_step=1)
  for a, b, c in zip(later, _take(restored, 3), _take(resumed_at_step, 3)):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
      np.testing.assert_array_equal(a[k], c[k])
  other_seed = next(imagenet.train_iterator(labeled_batch_size=8, unlabeled_batch_size=12,
                                            seed=6))
  assert not np.array_equal(other_seed["unlabeled_images"], first["unlabeled_images"])


def test_per_process_shares_make_the_global_batch(imagenet):
  kw = dict(labeled_batch_size=8, unlabeled_batch_size=0, seed=1)
  (whole,) = _take(imagenet.train_iterator(**kw, process_index=0, process_count=1), 1)
  shares = [next(imagenet.train_iterator(**kw, process_index=p, process_count=2))
            for p in range(2)]
  assert set(shares[0]) == {"labeled_images", "labeled_labels"}
  assert all(s["labeled_images"].shape == (4, 16, 16, 3) for s in shares)
  rows = lambda images: sorted(x.tobytes() for x in images)
  assert rows(np.concatenate([s["labeled_images"] for s in shares])) == rows(
      whole["labeled_images"])  # same crops: seeded by global stream position
  with pytest.raises(ValueError, match="labeled_batch_size=9 is not divisible by the 2"):
    imagenet.train_iterator(labeled_batch_size=9, unlabeled_batch_size=0, seed=0,
                            process_index=0, process_count=2)


def test_eval_batches_cover_test_split_once(imagenet):
  per_process = [list(imagenet.eval_batches(6, process_index=p, process_count=3))
                 for p in range(3)]
  assert len({len(b) for b in per_process}) == 1  # same number of batches everywhere
  assert len(per_process[0]) == 3  # ceil(ceil(40 / 3) / 6)
  masks = np.concatenate([b["mask"] for batches in per_process for b in batches])
  assert masks.sum() == NUM
  batch = per_process[0][0]
  assert batch["images"].shape == (6, 16, 16, 3) and batch["labels"].dtype == np.int32
  padded = per_process[2][-1]
  assert not padded["mask"].all() and np.all(padded["images"][~padded["mask"]] == 0)


def test_balanced_labeled_pool_and_epochs(cifar):
  sds, train_labels = cifar
  np.testing.assert_array_equal(np.bincount(sds.labeled_labels, minlength=10), [1] * 10)
  np.testing.assert_array_equal(train_labels[sds.labeled_indices], sds.labeled_labels)
  assert sds.image_shape == (224, 224, 3)  # image_size -1 -> 224
  it = sds.train_iterator(labeled_batch_size=5, unlabeled_batch_size=10, seed=0)
  batches = _take(it, 4)  # 2 labeled epochs (10 / 5), 1 unlabeled epoch (40 / 10)
  for e in range(2):
    labels = np.concatenate([b["labeled_labels"] for b in batches[2 * e:2 * e + 2]])
    np.testing.assert_array_equal(np.sort(labels), np.arange(10))  # one of each class
  unl = np.concatenate([b["unlabeled_labels"] for b in batches])
  np.testing.assert_array_equal(np.sort(unl), np.sort(train_labels))  # each once
  assert batches[0]["unlabeled_images"].shape == (10, 224, 224, 3)


def test_streaming_split_saved(cifar, tmp_path):
  sds, _ = cifar
  record = json.loads(open(sds.save_split(str(tmp_path))).read())
  assert record["labeled_indices"] == sds.labeled_indices.tolist()
  assert record["labels_per_class"] == [1] * 10 and record["split_seed"] == 3


def test_streaming_extra_unlabeled_pool():
  with tfds.testing.mock_data(num_examples=NUM):
    sds = load_streaming_dataset(_cfg(name="stl10", num_labels=10, extra_unlabeled=True,
                                      unlabeled_pool="none", image_size=8))
    batch = next(sds.train_iterator(labeled_batch_size=0, unlabeled_batch_size=8, seed=0))
  assert sds.num_unlabeled == NUM
  assert np.all(batch["unlabeled_labels"] == -1)  # STL-10 unlabelled: no labels
  assert batch["unlabeled_images"].shape == (8, 8, 8, 3)


def test_streaming_config_errors():
  with pytest.raises(ValueError, match="use sslx.data.load_streaming_dataset"):
    load_dataset(_cfg(name="cifar10"))
  with pytest.raises(ValueError, match="use sslx.data.load_dataset"):
    load_streaming_dataset(default_data_config())


def test_random_resized_crop_boxes_and_fallback():
  crop = RandomResizedCrop(12)
  rng = np.random.default_rng(0)
  for _ in range(50):
    top, left, h, w = crop.crop_box(30, 50, rng)
    assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50 and h > 0 and w > 0
    assert 0.08 * 1500 * 0.8 <= h * w <= 1500  # area fraction within scale (rounding)
  # a 10x200 strip admits no in-ratio crop of >= 99% area: center crop of ratio 4/3
  strict = RandomResizedCrop(12, scale=(0.99, 1.0))
  assert strict.crop_box(10, 200, rng) == (0, 93, 10, 13)
  out = crop({"image": np.zeros((30, 50, 1), np.uint8), "label": 3}, rng)
  assert out["image"].shape == (12, 12, 3) and out["label"] == 3  # gray -> RGB


def test_center_crop_shapes():
  image = np.arange(40 * 60 * 3, dtype=np.uint32).astype(np.uint8).reshape(40, 60, 3)
  for shape in [(40, 60, 3), (60, 40, 3), (8, 8, 3)]:
    out = CenterCrop(16)({"image": np.resize(image, shape), "label": 0})
    assert out["image"].shape == (16, 16, 3) and out["image"].dtype == np.uint8
