"""The labeled/unlabeled protocol and the config checks (no data loaded)."""

import numpy as np
import pytest

from sslx.data.config import default_data_config, validate_data_config
from sslx.data.split import balanced_labeled_indices, unlabeled_indices


def _labels(num_classes=10, per_class=50, seed=0):
  labels = np.repeat(np.arange(num_classes), per_class)
  return np.random.default_rng(seed).permutation(labels).astype(np.int32)


def test_balanced_per_class_and_within_range():
  labels = _labels()
  idx = balanced_labeled_indices(labels, num_labels=40, num_classes=10, seed=3)
  assert idx.shape == (40,)
  assert len(np.unique(idx)) == 40
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), [4] * 10)
  assert np.all(np.diff(idx) > 0)  # sorted


def test_same_seed_same_split_different_seed_different_split():
  labels = _labels()
  a = balanced_labeled_indices(labels, num_labels=40, num_classes=10, seed=1)
  b = balanced_labeled_indices(labels, num_labels=40, num_classes=10, seed=1)
  c = balanced_labeled_indices(labels, num_labels=40, num_classes=10, seed=2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(np.bincount(labels[c], minlength=10), [4] * 10)


def test_all_labels_and_every_example_of_a_class():
  labels = _labels(num_classes=3, per_class=5)
  np.testing.assert_array_equal(
      balanced_labeled_indices(labels, num_labels=-1, num_classes=3, seed=0), np.arange(15))
  idx = balanced_labeled_indices(labels, num_labels=15, num_classes=3, seed=0)
  np.testing.assert_array_equal(idx, np.arange(15))


def test_not_divisible_names_field():
  with pytest.raises(ValueError, match=r"data.num_labels=45 is not divisible .*10"):
    balanced_labeled_indices(_labels(), num_labels=45, num_classes=10, seed=0)


def test_more_labels_per_class_than_class_has():
  labels = _labels()
  labels[labels == 7] = 6  # class 7 is now empty... give it 2 examples back
  labels[np.flatnonzero(labels == 6)[:2]] = 7
  with pytest.raises(ValueError, match=r"asks for 4 labels per class, but class 7 has only 2"):
    balanced_labeled_indices(labels, num_labels=40, num_classes=10, seed=0)


def test_labels_out_of_range():
  with pytest.raises(ValueError, match=r"\[0, 10\)"):
    balanced_labeled_indices(np.array([0, 1, 10]), num_labels=-1, num_classes=10, seed=0)


def test_unlabeled_pools():
  labeled = np.array([1, 4, 5])
  np.testing.assert_array_equal(unlabeled_indices(8, labeled, pool="all"), np.arange(8))
  rest = unlabeled_indices(8, labeled, pool="rest")
  np.testing.assert_array_equal(rest, [0, 2, 3, 6, 7])
  assert set(rest).isdisjoint(labeled) and set(rest) | set(labeled) == set(range(8))
  assert unlabeled_indices(8, labeled, pool="none").shape == (0,)
  with pytest.raises(ValueError, match="data.unlabeled_pool"):
    unlabeled_indices(8, labeled, pool="some")


def test_default_config_is_valid_and_offline():
  cfg = default_data_config()
  validate_data_config(cfg)
  assert cfg.name == "digits" and cfg.num_labels == -1 and cfg.unlabeled_pool == "all"
  assert cfg.data_dir is None and cfg.download is False


@pytest.mark.parametrize("field,value,message", [
    ("name", "cifar11", r"data.name='cifar11' is not a known dataset"),
    ("name", "npz:", r"data.name='npz:' needs a path"),
    ("num_labels", 0, r"data.num_labels must be a positive"),
    ("num_labels", -5, r"data.num_labels must be a positive"),
    ("unlabeled_pool", "everything", r"data.unlabeled_pool must be one of"),
    ("normalization", "zscore", r"data.normalization must be one of"),
    ("image_size", 64, r"data.image_size=64 only applies with data.streaming=True"),
    ("extra_unlabeled", True, r"data.extra_unlabeled=True but data.name='digits'"),
    ("max_replicated_mib", -1, r"data.max_replicated_mib must be >= 0"),
])
def test_validate_names_the_field(field, value, message):
  cfg = default_data_config()
  cfg[field] = value
  with pytest.raises(ValueError, match=message):
    validate_data_config(cfg)


def test_validate_cross_field_checks():
  cfg = default_data_config()
  cfg.num_classes, cfg.num_labels = 10, 45
  with pytest.raises(ValueError, match=r"data.num_labels=45 is not divisible by data.num_classes"):
    validate_data_config(cfg)
  cfg = default_data_config()
  cfg.name = "imagenet2012"
  with pytest.raises(ValueError, match=r"set data.streaming=True"):
    validate_data_config(cfg)
  cfg.streaming, cfg.image_size = True, 160
  validate_data_config(cfg)
  cfg = default_data_config()
  cfg.streaming = True
  with pytest.raises(ValueError, match=r"data.streaming=True needs a tfds dataset"):
    validate_data_config(cfg)
  cfg = default_data_config()
  del cfg["download"]
  with pytest.raises(ValueError, match=r"missing fields \['download'\]"):
    validate_data_config(cfg)
