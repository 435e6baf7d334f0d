"""Dataset sources: tfds (read through ``tfds.data_source``, no TensorFlow), sklearn digits, npz.

Each source returns a :class:`RawData`: host numpy arrays for the source's own
train/test splits (and an optional extra unlabeled split), before any labeled/unlabeled
split. Images are ``uint8 [N, H, W, C]``, labels ``int32 [N]`` (-1 where unknown).

tfds datasets are never downloaded unless ``config.data.download`` is True: a dataset
that is not prepared under ``data_dir`` raises :class:`DatasetNotPreparedError`, which
says how to prepare it, instead of reaching for the network.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import time
from typing import Any, Sequence

import numpy as np

from sslx.data import config as config_lib

# Fixed seed of the digits train/test split; independent of data.split_seed so every run
# evaluates on the same 360 images.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  """How sslx reads one tfds dataset."""
  train_split: str
  test_split: str
  extra_split: str | None = None  # extra unlabeled images (data.extra_unlabeled)
  extra_has_labels: bool = False  # SVHN extra is labeled (used for diagnostics only)
  device_resident: bool = True


TFDS_DATASETS: dict[str, TfdsSpec] = {
    "mnist": TfdsSpec("train", "test"),
    "fashion_mnist": TfdsSpec("train", "test"),
    "cifar10": TfdsSpec("train", "test"),
    "cifar100": TfdsSpec("train", "test"),
    "svhn_cropped": TfdsSpec("train", "test", extra_split="extra", extra_has_labels=True),
    "stl10": TfdsSpec("train", "test", extra_split="unlabelled", extra_has_labels=False),
    "imagenet2012": TfdsSpec("train", "validation", device_resident=False),
}
assert set(TFDS_DATASETS) == set(config_lib.TFDS_NAMES)


class DatasetNotPreparedError(ValueError):
  """A tfds dataset is not prepared under the data directory (and download is off)."""


@dataclasses.dataclass(frozen=True, eq=False)
class RawData:
  """A source's splits as host arrays, before the labeled/unlabeled split."""
  name: str
  num_classes: int
  train_images: np.ndarray  # uint8 [N, H, W, C]
  train_labels: np.ndarray  # int32 [N]
  test_images: np.ndarray
  test_labels: np.ndarray
  extra_images: np.ndarray | None = None  # uint8 [E, H, W, C], unlabeled pool only
  extra_labels: np.ndarray | None = None  # int32 [E], -1 where unknown


def load_source(cfg) -> RawData:
  """Reads the dataset ``cfg.name`` names (config validated by the caller)."""
  name = cfg.name
  if name == "digits":
    raw = load_digits()
  elif name.startswith(config_lib.NPZ_PREFIX):
    raw = load_npz(name[len(config_lib.NPZ_PREFIX):], num_classes=cfg.num_classes,
                   with_unlabeled=cfg.extra_unlabeled)
  elif name in TFDS_DATASETS:
    raw = load_tfds(name, data_dir=cfg.data_dir, download=cfg.download,
                    train_split=cfg.train_split, test_split=cfg.test_split,
                    with_extra=cfg.extra_unlabeled)
  else:
    raise ValueError(
        f"data.name={name!r} is not a known dataset; choose one of "
        f"{list(config_lib.DATASET_NAMES)} or 'npz:/path/to/file.npz'.")
  if cfg.num_classes > 0 and not name.startswith(config_lib.NPZ_PREFIX) and (
      cfg.num_classes != raw.num_classes):
    raise ValueError(
        f"data.num_classes={cfg.num_classes} but {name} has {raw.num_classes} classes; "
        "leave data.num_classes at -1 for tfds datasets and digits.")
  return raw


# ----------------------------------------------------------------------------- digits


def load_digits() -> RawData:
  """scikit-learn's bundled 8x8 digits (1797 images, no download), as uint8 ``[N, 8, 8, 1]``.

  Pixel values 0..16 are scaled to 0..255. Train/test is a stratified 1437/360 split
  with a seed fixed in code (``DIGITS_SPLIT_SEED``).
  """
  from sklearn import datasets as sk_datasets
  from sklearn import model_selection
  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  train_idx, test_idx = model_selection.train_test_split(
      np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels,
      random_state=DIGITS_SPLIT_SEED)
  train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
  return RawData(name="digits", num_classes=10,
                 train_images=images[train_idx], train_labels=labels[train_idx],
                 test_images=images[test_idx], test_labels=labels[test_idx])


# ----------------------------------------------------------------------------- npz


NPZ_REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str, *, num_classes: int = -1, with_unlabeled: bool = False) -> RawData:
  """A user's own data from an ``.npz``: ``x_train``, ``y_train``, ``x_test``, ``y_test``
  and optionally ``x_unlabeled`` (used when ``with_unlabeled``).

  Images are ``uint8`` ``[N, H, W, C]`` or ``[N, H, W]`` (a channel axis is added), all
  with the same ``H, W, C``; labels are integers ``[N]`` in ``[0, num_classes)``.
  ``num_classes=-1`` takes ``max(y_train) + 1`` when the training labels cover every
  class below it and the test labels lie within them, and refuses otherwise.

  Example::

    np.savez("mine.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    # --config.data.name=npz:mine.npz
  """
  field = f"data.name='npz:{path}'"
  if not os.path.exists(path):
    raise ValueError(f"{field}: file not found.")
  try:
    archive = np.load(path, allow_pickle=False)
  except Exception as e:  # not a zip / corrupt
    raise ValueError(f"{field}: cannot read it as an .npz file ({e}).") from e
  if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy (one array) under an .npz name
    raise ValueError(f"{field}: this is a single .npy array ({getattr(archive, 'shape', '?')}), "
                     "not an .npz archive; save the splits with np.savez(path, x_train=..., "
                     "y_train=..., x_test=..., y_test=...).")
  with archive:
    missing = [k for k in NPZ_REQUIRED_KEYS if k not in archive.files]
    if missing:
      raise ValueError(
          f"{field}: missing keys {missing}; an npz dataset needs {list(NPZ_REQUIRED_KEYS)} "
          f"(optional x_unlabeled), it has {sorted(archive.files)}.")
    if with_unlabeled and "x_unlabeled" not in archive.files:
      raise ValueError(
          f"data.extra_unlabeled=True but {field} has no 'x_unlabeled' array "
          f"(keys: {sorted(archive.files)}).")
    arrays = {}
    for k in archive.files:
      if k in NPZ_REQUIRED_KEYS or (k == "x_unlabeled" and with_unlabeled):
        try:
          arrays[k] = archive[k]
        except ValueError as e:
          if "allow_pickle" in str(e):  # object arrays need pickle, which we refuse
            raise ValueError(f"{field}: {k}: arrays must be numeric, not Python objects "
                             f"({e}).") from e
          raise ValueError(f"{field}: {k}: corrupt array ({e}).") from e
        except Exception as e:  # bad CRC, truncated or corrupt member (zipfile, zlib, OSError)
          raise ValueError(f"{field}: {k}: the file is corrupt or truncated "
                           f"({type(e).__name__}: {e}).") from e

  images = {k: _npz_images(arrays[k], f"{field} {k}")
            for k in ("x_train", "x_test", "x_unlabeled") if k in arrays}
  labels = {k: _npz_labels(arrays[k], f"{field} {k}") for k in ("y_train", "y_test")}
  for split in ("train", "test"):
    n_x, n_y = len(images[f"x_{split}"]), len(labels[f"y_{split}"])
    if n_x != n_y:
      raise ValueError(f"{field}: x_{split} has {n_x} images but y_{split} has {n_y} labels.")
  shapes = {k: v.shape[1:] for k, v in images.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(
        f"{field}: images of inconsistent shapes {shapes} (each [H, W, C]); all splits "
        "must share one image shape.")
  if len(images["x_train"]) == 0:
    raise ValueError(f"{field}: x_train is empty.")
  if len(images["x_test"]) == 0:
    raise ValueError(f"{field}: x_test is empty; a run needs test images to report an accuracy.")
  if num_classes <= 0:
    num_classes = _infer_num_classes(labels["y_train"], labels["y_test"], field)
  for k, y in labels.items():
    bad = (y < 0) | (y >= num_classes)  # on the stored dtype: a cast could wrap
    if bad.any():
      raise ValueError(
          f"{field}: {k} has labels outside [0, {num_classes}) (data.num_classes="
          f"{num_classes}), e.g. {y[bad][:5].tolist()}.")
  labels = {k: y.astype(np.int32) for k, y in labels.items()}
  extra = images.get("x_unlabeled")
  return RawData(
      name=f"npz:{path}", num_classes=num_classes,
      train_images=images["x_train"], train_labels=labels["y_train"],
      test_images=images["x_test"], test_labels=labels["y_test"],
      extra_images=extra,
      extra_labels=None if extra is None else np.full(len(extra), -1, np.int32))


def _npz_images(x: np.ndarray, what: str) -> np.ndarray:
  if x.dtype != np.uint8:
    raise ValueError(
        f"{what}: images must be uint8 (0..255), got dtype {x.dtype}; convert e.g. with "
        "np.clip(np.round(x * 255), 0, 255).astype(np.uint8) for floats in [0, 1].")
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f"{what}: images must be [N, H, W, C] or [N, H, W], got shape {x.shape}.")
  return x


def _npz_labels(y: np.ndarray, what: str) -> np.ndarray:
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{what}: labels must be integers, got dtype {y.dtype}.")
  if y.ndim != 1:
    raise ValueError(f"{what}: labels must be [N], got shape {y.shape}.")
  return y  # cast to int32 only after the range check


def _infer_num_classes(y_train: np.ndarray, y_test: np.ndarray, field: str) -> int:
  """``max(y_train) + 1`` when that is unambiguous: the training labels cover every class
  ``0..K-1`` and the test labels lie within them. Otherwise a ValueError that says what
  was seen and how to set the count (``data.num_classes``)."""
  train_classes = np.unique(y_train)
  train_classes = train_classes[train_classes >= 0]  # negatives: the range check names them
  k = int(train_classes[-1]) + 1 if train_classes.size else 0
  missing = k - train_classes.size
  outside = y_test[y_test >= k]
  if not missing and not outside.size:
    return k
  seen = (f"y_train has {train_classes.size} distinct labels in [{train_classes[0]}, "
          f"{train_classes[-1]}]")
  if missing:
    absent = np.setdiff1d(np.arange(min(k, 1 << 20)), train_classes)[:5].tolist()
    seen += f" ({missing} of 0..{k - 1} absent, e.g. {absent})"
  if outside.size:
    seen += (f"; y_test has {outside.size} label(s) outside them, e.g. "
             f"{np.unique(outside)[:5].tolist()}")
  raise ValueError(
      f"{field}: cannot infer the number of classes: {seen}. Fix the labels, or set "
      "--config.data.num_classes=K if the data really has K classes (labels 0..K-1).")


# ----------------------------------------------------------------------------- tfds


def open_tfds_split(name: str, split: str, *, data_dir: str | None = None,
                    download: bool = False, decoders: Any = None) -> Sequence[dict]:
  """``tfds.data_source(name, split=...)`` in array_record format, with clear errors.

  Returns a random-access sequence of decoded examples (numpy), read without
  TensorFlow. Never touches the network unless ``download``.

  Raises:
    DatasetNotPreparedError: the dataset is not prepared under ``data_dir`` (the message
      says how to prepare it).
  """
  import tensorflow_datasets as tfds  # heavy; only the tfds path needs it
  try:
    return tfds.data_source(
        name, split=split, data_dir=data_dir, download=download, decoders=decoders,
        builder_kwargs={"file_format": "array_record"}, try_gcs=False)
  except tfds.core.DatasetNotFoundError as e:
    raise ValueError(f"data.name={name!r}: tfds does not know this dataset ({e}).") from e
  except ModuleNotFoundError as e:
    if download and "tensorflow" in str(e):
      raise DatasetNotPreparedError(
          f"data.download=True: preparing {name!r} needs TensorFlow, which this machine "
          f"does not have. {prepare_instructions(name)}") from e
    raise
  except Exception as e:  # decide whether this is "not prepared" or a real bug
    try:
      builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
      prepared, where = builder.is_prepared(), str(builder.data_dir)
    except Exception:  # pylint: disable=broad-except
      prepared, where = True, "?"
    if not prepared:
      raise DatasetNotPreparedError(
          f"data.name={name!r}: the tfds dataset is not prepared under "
          f"data.data_dir={data_dir!r} (looked in {where}) and data.download is False, so "
          f"sslx will not fetch it. {prepare_instructions(name)}") from e
    if "random access" in str(e).lower() or "file format" in str(e).lower():
      raise DatasetNotPreparedError(
          f"data.name={name!r}: the prepared copy under {where} is not in array_record "
          "format, which tfds.data_source needs. Convert it with `tfds convert_format "
          f"--dataset_dir={where} --out_file_format=array_record --out_dir=<new dir>` "
          f"(needs TensorFlow), or rebuild it. {prepare_instructions(name)}") from e
    raise


def prepare_instructions(name: str) -> str:
  """How to prepare a tfds dataset for sslx (also in the README)."""
  manual = (" ImageNet cannot be downloaded by tfds: put ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar in <data_dir>/downloads/manual/ first."
            if name == "imagenet2012" else "")
  return (
      f"Prepare it once on a machine with internet and TensorFlow (pip install tensorflow "
      f"tensorflow-datasets): `tfds build {name} --file_format=array_record "
      f"--data_dir=$TFDS_DATA_DIR`, then copy $TFDS_DATA_DIR/{name} to this machine's "
      f"data directory (data.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets). "
      f"Or run once there with --config.data.download=True.{manual}")


def tfds_num_classes(name: str, *, data_dir: str | None = None) -> int:
  """Number of classes of a tfds dataset's ``label`` feature, from its metadata."""
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  return int(builder.info.features["label"].num_classes)


def load_tfds(name: str, *, data_dir: str | None = None, download: bool = False,
              train_split: str = "", test_split: str = "", with_extra: bool = False,
              num_threads: int = 8) -> RawData:
  """Reads a tfds dataset from ``TFDS_DATASETS`` into host arrays (no TensorFlow)."""
  spec = TFDS_DATASETS[name]
  if not spec.device_resident:
    raise ValueError(
        f"data.name={name!r} does not fit in device memory: set data.streaming=True "
        "and use sslx.data.load_streaming_dataset.")
  splits = {"train": train_split or spec.train_split, "test": test_split or spec.test_split}
  if with_extra:
    if spec.extra_split is None:
      raise ValueError(f"data.extra_unlabeled=True but {name} has no extra unlabeled split.")
    splits["extra"] = spec.extra_split
  arrays = {}
  for key, split in splits.items():
    source = open_tfds_split(name, split, data_dir=data_dir, download=download)
    arrays[key] = read_examples(source, what=f"{name}[{split}]", num_threads=num_threads)
  num_classes = tfds_num_classes(name, data_dir=data_dir)
  extra_images = extra_labels = None
  if "extra" in arrays:
    extra_images, extra_labels = arrays["extra"]
    if not spec.extra_has_labels:
      extra_labels = np.full(len(extra_images), -1, np.int32)
  return RawData(
      name=name, num_classes=num_classes,
      train_images=arrays["train"][0], train_labels=arrays["train"][1],
      test_images=arrays["test"][0], test_labels=arrays["test"][1],
      extra_images=extra_images, extra_labels=extra_labels)


def read_examples(source: Sequence[dict], *, what: str, num_threads: int = 8,
                  chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """Decodes every example of a tfds data source into ``(uint8 [N, H, W, C], int32 [N])``.

  Reads in ``num_threads`` threads (image decoding releases the GIL) straight into one
  preallocated array.

  Raises:
    ValueError: an image whose shape differs from the first one's (``what`` names the
      split), or a non-uint8 image.
  """
  n = len(source)
  if n == 0:
    raise ValueError(f"{what}: the split is empty.")
  start = time.time()
  first = source[0]
  first_image = _as_image(first["image"], what, 0)
  images = np.empty((n,) + first_image.shape, np.uint8)
  labels = np.empty((n,), np.int32)

  def read_chunk(lo: int) -> None:
    for i in range(lo, min(lo + chunk_size, n)):
      example = first if i == 0 else source[i]
      image = _as_image(example["image"], what, i)
      if image.shape != first_image.shape:
        raise ValueError(
            f"{what}: images of inconsistent shapes: example {i} is {image.shape}, example 0 "
            f"is {first_image.shape}. Device-resident datasets need one image shape; use "
            "data.streaming=True (random-resized crops) for variable-size images.")
      images[i] = image
      labels[i] = int(example["label"])

  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    list(pool.map(read_chunk, range(0, n, chunk_size)))  # list(): re-raise worker errors
  logging.info("sslx.data: read %d examples of %s in %.1fs", n, what, time.time() - start)
  return images, labels


def _as_image(image: Any, what: str, index: int) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"{what}: example {index} image has dtype {image.dtype}, expected uint8.")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3:
    raise ValueError(f"{what}: example {index} image has shape {image.shape}, expected [H, W, C].")
  return image
