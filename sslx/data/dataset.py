"""``load_dataset``: config -> a validated, device-ready :class:`SSLDataset` on the host.

Everything that can be wrong with the data (unknown name, unprepared tfds dataset,
impossible label count, malformed npz) raises here, before any model is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid

import numpy as np

from sslx.data import config as config_lib
from sslx.data import sources
from sslx.data import split as split_lib

SPLIT_FILENAME = "labeled_indices.json"

# Per-channel statistics on the [0, 1] scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True, eq=False)
class SSLDataset:
  """A semi-supervised dataset held on the host, ready for :func:`sslx.data.to_device`.

  Attributes:
    name: ``config.data.name``.
    labeled_images: uint8 ``[L, H, W, C]``.
    labeled_labels: int32 ``[L]``.
    unlabeled_images: uint8 ``[U, H, W, C]`` (may be empty, ``U = 0``).
    unlabeled_labels: int32 ``[U]``: true labels for diagnostics, -1 where unknown
      (STL-10 unlabelled, npz ``x_unlabeled``). Never used for training.
    test_images: uint8 ``[T, H, W, C]``.
    test_labels: int32 ``[T]``.
    num_classes: number of classes.
    image_shape: ``(H, W, C)``.
    mean, std: per-channel float32 ``[C]`` on the [0, 1] scale (model input is
      ``(image / 255 - mean) / std``).
    labeled_indices: int64 ``[L]`` indices of the labeled examples in the source train split.
    split_seed, unlabeled_pool: how the split was drawn (saved with it).
    fingerprint: shapes, dtypes and hashes of the source arrays (:func:`fingerprint`);
      the trainer stores it in the workdir and refuses to resume on other data.
  """
  name: str
  labeled_images: np.ndarray
  labeled_labels: np.ndarray
  unlabeled_images: np.ndarray
  unlabeled_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  image_shape: tuple[int, int, int]
  mean: np.ndarray
  std: np.ndarray
  labeled_indices: np.ndarray
  split_seed: int = 0
  unlabeled_pool: str = "all"
  fingerprint: dict | None = None  # of the source data (:func:`fingerprint`), checked on resume

  def __post_init__(self):
    shape = tuple(self.image_shape)
    for kind in ("labeled", "unlabeled", "test"):
      images, labels = getattr(self, f"{kind}_images"), getattr(self, f"{kind}_labels")
      if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape:
        raise ValueError(f"{kind}_images must be uint8 [N, *{shape}], got {images.dtype} "
                         f"{images.shape}.")
      if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
        raise ValueError(f"{kind}_labels must be int32 [{len(images)}], got {labels.dtype} "
                         f"{labels.shape}.")
    if self.labeled_indices.shape != self.labeled_labels.shape:
      raise ValueError(f"labeled_indices must be [{len(self.labeled_labels)}], got "
                       f"{self.labeled_indices.shape}.")

  @property
  def num_labeled(self) -> int:
    return len(self.labeled_labels)

  @property
  def num_unlabeled(self) -> int:
    return len(self.unlabeled_labels)

  def split_record(self) -> dict:
    """The labeled subset as a JSON-able dict (what :meth:`save_split` writes)."""
    return {
        "dataset": self.name,
        "num_labels": self.num_labeled,
        "num_classes": self.num_classes,
        "split_seed": self.split_seed,
        "unlabeled_pool": self.unlabeled_pool,
        "num_unlabeled": self.num_unlabeled,
        "labels_per_class": np.bincount(self.labeled_labels,
                                        minlength=self.num_classes).tolist(),
        "labeled_indices": self.labeled_indices.tolist(),
        "labeled_labels": self.labeled_labels.tolist(),
    }

  def save_split(self, workdir: str) -> str:
    """Writes ``<workdir>/labeled_indices.json`` atomically; returns its path.

    The file lets a run be audited (which examples were labeled) and checked on resume
    (:func:`read_split`).
    """
    return write_json_atomic(workdir, SPLIT_FILENAME, self.split_record())


def read_split(workdir: str) -> dict | None:
  """The record :meth:`SSLDataset.save_split` wrote in ``workdir``, or None."""
  from etils import epath
  path = epath.Path(workdir) / SPLIT_FILENAME
  if not path.exists():
    return None
  return json.loads(path.read_text())


def write_json_atomic(directory: str, filename: str, record: dict) -> str:
  """Writes JSON to ``directory/filename`` via a temporary file and a rename."""
  from etils import epath
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  target = directory / filename
  tmp = directory / f".{filename}.tmp-{uuid.uuid4().hex}"
  tmp.write_text(json.dumps(record))
  if "://" in os.fspath(target):
    tmp.rename(target)  # object stores: best effort
  else:
    os.replace(tmp, target)  # atomic on POSIX, overwrites
  return os.fspath(target)


def load_dataset(cfg) -> SSLDataset:
  """Loads ``config.data`` into a validated :class:`SSLDataset` (host numpy arrays).

  Reads the source, draws the class-balanced labeled subset with ``cfg.split_seed``,
  builds the unlabeled pool (``cfg.unlabeled_pool`` plus the extra split when
  ``cfg.extra_unlabeled``) and the normalisation statistics.

  Raises:
    ValueError: naming the field, for every problem with the config or the data
      (including :class:`sslx.data.sources.DatasetNotPreparedError`).

  Example::

    cfg = default_data_config(); cfg.name = "cifar10"; cfg.num_labels = 40
    ds = load_dataset(cfg)   # ds.labeled_images.shape == (40, 32, 32, 3)
  """
  config_lib.validate_data_config(cfg)
  if cfg.streaming:
    raise ValueError("data.streaming=True: use sslx.data.load_streaming_dataset(cfg).")
  raw = sources.load_source(cfg)
  check_images(raw, f"data.name={cfg.name!r}")
  num_classes = raw.num_classes
  labeled = split_lib.balanced_labeled_indices(
      raw.train_labels, num_labels=cfg.num_labels, num_classes=num_classes,
      seed=cfg.split_seed)
  unlabeled = split_lib.unlabeled_indices(len(raw.train_labels), labeled,
                                          pool=cfg.unlabeled_pool)
  _check_labels(raw.test_labels, num_classes, "test")

  if len(unlabeled) == len(raw.train_labels):
    unl_images, unl_labels = raw.train_images, raw.train_labels  # no copy for 'all'
  else:
    unl_images, unl_labels = raw.train_images[unlabeled], raw.train_labels[unlabeled]
  if cfg.extra_unlabeled:
    if raw.extra_images is None:
      raise ValueError(f"data.extra_unlabeled=True but {cfg.name} has no extra unlabeled split.")
    if raw.extra_images.shape[1:] != raw.train_images.shape[1:]:
      raise ValueError(
          f"{cfg.name}: images of inconsistent shapes: extra unlabeled "
          f"{raw.extra_images.shape[1:]} vs train {raw.train_images.shape[1:]}.")
    if len(unlabeled):
      unl_images = np.concatenate([unl_images, raw.extra_images])
      unl_labels = np.concatenate([unl_labels, raw.extra_labels])
    else:
      unl_images, unl_labels = raw.extra_images, raw.extra_labels

  mean, std = normalization_stats(cfg.normalization, raw.train_images)
  return SSLDataset(
      name=cfg.name,
      labeled_images=raw.train_images[labeled],
      labeled_labels=raw.train_labels[labeled].astype(np.int32),
      unlabeled_images=unl_images,
      unlabeled_labels=unl_labels.astype(np.int32),
      test_images=raw.test_images,
      test_labels=raw.test_labels.astype(np.int32),
      num_classes=num_classes,
      image_shape=tuple(int(d) for d in raw.train_images.shape[1:]),
      mean=mean, std=std,
      labeled_indices=labeled,
      split_seed=cfg.split_seed,
      unlabeled_pool=cfg.unlabeled_pool,
      fingerprint=fingerprint(raw),
  )


MIN_IMAGE_SIZE = 2  # a 1x1 image has nothing to shift, crop or pool


def check_images(raw: sources.RawData, field: str) -> None:
  """Image shapes the models and augmentations take: ``[N, H, W, 1 or 3]``, ``H, W >= 2``,
  and a non-empty test split; a ValueError naming `field` and the shape otherwise."""
  for split in ("train", "test", "extra"):
    images = getattr(raw, f"{split}_images")
    if images is None:
      continue
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
      raise ValueError(
          f"{field}: {split} images have shape {list(shape)}; sslx needs [N, H, W, C] with "
          "C = 1 (grayscale) or 3 (RGB): drop an alpha channel (x[..., :3]), or make "
          "2-channel data 1 or 3 channels.")
    if min(shape[1:3]) < MIN_IMAGE_SIZE:
      raise ValueError(f"{field}: {split} images have shape {list(shape)}; images must be at "
                       f"least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels.")
  if len(raw.test_images) == 0:
    raise ValueError(f"{field}: the test split is empty; a run needs test images to report an "
                     "accuracy.")


def fingerprint(raw: sources.RawData, *, sample_rows: int = 4096) -> dict:
  """A cheap identity of the source data: shape and dtype of every array, a SHA-256 of
  every label and of ``sample_rows`` evenly strided images per split (a few MB read
  whatever the dataset's size), and an npz file's size. Hashes are cut to 16 hex digits.
  """
  def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]

  out = {"source": raw.name}
  for split in ("train", "test", "extra"):
    images, labels = getattr(raw, f"{split}_images"), getattr(raw, f"{split}_labels")
    if images is None:
      continue
    rows = np.unique(np.linspace(0, len(images) - 1, min(len(images), sample_rows)).astype(int))
    out[f"{split}_images"] = f"{images.dtype}{list(images.shape)}"
    out[f"{split}_images_sample_sha256"] = sha(images[rows]) if len(images) else ""
    out[f"{split}_labels_sha256"] = sha(np.asarray(labels, np.int64))
  if raw.name.startswith(config_lib.NPZ_PREFIX):
    path = raw.name[len(config_lib.NPZ_PREFIX):]
    out["file_bytes"] = os.path.getsize(path)
  return out


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"{what} labels must lie in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")


def normalization_stats(kind: str, train_images: np.ndarray | None = None,
                        *, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel ``(mean, std)`` float32 ``[C]`` on the [0, 1] scale.

  ``train_stats`` computes them over all pixels of ``train_images`` (uint8
  ``[N, H, W, C]``) in float64 chunks; ``imagenet`` gives the usual ImageNet constants;
  ``symmetric`` 0.5/0.5; ``none`` 0/1. A constant channel gets std 1.
  """
  if kind == "imagenet":
    return np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
  channels = 3 if train_images is None else train_images.shape[-1]
  if kind == "symmetric":
    return np.full(channels, 0.5, np.float32), np.full(channels, 0.5, np.float32)
  if kind == "none":
    return np.zeros(channels, np.float32), np.ones(channels, np.float32)
  if kind != "train_stats":
    raise ValueError(f"data.normalization must be one of {list(config_lib.NORMALIZATIONS)}, "
                     f"got {kind!r}.")
  total = np.zeros(channels, np.float64)
  total_sq = np.zeros(channels, np.float64)
  count = 0
  for lo in range(0, len(train_images), chunk):
    x = train_images[lo:lo + chunk].reshape(-1, channels).astype(np.float64) / 255.0
    total += x.sum(0)
    total_sq += np.square(x).sum(0)
    count += x.shape[0]
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
  std = np.where(std > 1e-6, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)
