"""Streaming path for data that does not fit in device memory (ImageNet): grain over tfds.

``tfds.data_source`` gives random access to the prepared array_record files without
TensorFlow; grain turns it into an index-addressable pipeline:

    pool examples -> shuffle(seed) per epoch -> repeat forever
      -> random-resized crop (seeded by stream position) -> this process's share
      -> batch -> zip(labeled, unlabeled) -> threads / worker processes -> host batches

Every batch is a pure function of ``(seed, step)``: resuming at ``start_step`` (or
restoring the grain iterator state) yields exactly the batches an uninterrupted run
would have seen. With ``P`` processes, process ``p`` takes stream positions
``p, p + P, ...`` of each pool, so the union of the per-process batches of a step is the
global batch and no two processes read the same example.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
from typing import Any, Iterator, Sequence

import numpy as np

from sslx.data import config as config_lib
from sslx.data import dataset as dataset_lib
from sslx.data import sources
from sslx.data import split as split_lib

DEFAULT_IMAGE_SIZE = 224
EVAL_CROP_FRACTION = 0.875  # resize the short side to size / 0.875, then center crop
NORMALIZATION_SAMPLE = 2048  # images used to estimate train_stats when streaming


@dataclasses.dataclass(frozen=True, eq=False)
class StreamingDataset:
  """A tfds dataset read on the fly; see :func:`load_streaming_dataset`.

  Attributes:
    name, num_classes, mean, std, labeled_indices, split_seed, unlabeled_pool: as in
      :class:`sslx.data.SSLDataset`.
    image_shape: ``(S, S, C)`` of the crops the iterators yield.
    num_train, num_test: sizes of the source train and test splits.
    num_unlabeled: size of the unlabeled pool.
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  mean: np.ndarray
  std: np.ndarray
  labeled_indices: np.ndarray
  labeled_labels: np.ndarray
  num_train: int
  num_test: int
  num_unlabeled: int
  split_seed: int
  unlabeled_pool: str
  _train_source: Sequence[dict] = dataclasses.field(repr=False)
  _test_source: Sequence[dict] = dataclasses.field(repr=False)
  _unlabeled_source: Sequence[dict] | None = dataclasses.field(repr=False)
  _read_threads: int = 16
  _worker_count: int = 0
  _prefetch_buffer_size: int = 4

  @property
  def num_labeled(self) -> int:
    return len(self.labeled_indices)

  def save_split(self, workdir: str) -> str:
    """Writes ``<workdir>/labeled_indices.json`` atomically (as ``SSLDataset.save_split``)."""
    record = {
        "dataset": self.name, "num_labels": self.num_labeled, "num_classes": self.num_classes,
        "split_seed": self.split_seed, "unlabeled_pool": self.unlabeled_pool,
        "num_unlabeled": self.num_unlabeled,
        "labels_per_class": np.bincount(self.labeled_labels,
                                        minlength=self.num_classes).tolist(),
        "labeled_indices": self.labeled_indices.tolist(),
        "labeled_labels": self.labeled_labels.tolist(),
    }
    return dataset_lib.write_json_atomic(workdir, dataset_lib.SPLIT_FILENAME, record)

  def train_iterator(self, *, labeled_batch_size: int, unlabeled_batch_size: int, seed: int,
                     start_step: int = 0, process_index: int | None = None,
                     process_count: int | None = None):
    """An endless iterator of this process's share of each step's training batch.

    Args:
      labeled_batch_size, unlabeled_batch_size: GLOBAL batch sizes (over all processes),
        each divisible by ``process_count``; 0 leaves that pool out.
      seed: shuffling and cropping seed (``0 <= seed < 2**64``, ``sslx.seeds.numpy_seed``).
      start_step: the step of the first batch (resume from a checkpointed step).
      process_index, process_count: default ``jax.process_index()/process_count()``.

    Returns:
      A ``grain.DatasetIterator`` yielding dicts with ``labeled_images`` uint8
      ``[labeled_batch_size / P, S, S, C]``, ``labeled_labels`` int32, and the same for
      ``unlabeled_*`` (labels -1 where unknown). ``get_state()``/``set_state()`` save and
      restore its position (with orbax: ``grain.checkpoint.CheckpointSave(iterator)``);
      a state is valid for an iterator built with the same arguments.
      Make global arrays with ``jax.make_array_from_process_local_data``.
    """
    import grain
    process_index, process_count = _process(process_index, process_count)
    if not 0 <= seed < 2**64:
      raise ValueError(f"seed must be in [0, 2**64), got {seed}.")
    if start_step < 0:
      raise ValueError(f"start_step must be >= 0, got {start_step}.")
    pools = []
    for tag, (pool, batch_size) in enumerate(
        [("labeled", labeled_batch_size), ("unlabeled", unlabeled_batch_size)]):
      if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"{pool}_batch_size must be an int >= 0, got {batch_size!r}.")
      if batch_size == 0:
        continue
      if batch_size % process_count:
        raise ValueError(
            f"{pool}_batch_size={batch_size} is not divisible by the {process_count} "
            "processes.")
      source = self._pool_source(pool)
      if len(source) == 0:
        raise ValueError(f"{pool}_batch_size={batch_size} but the {pool} pool is empty.")
      ds = grain.MapDataset.source(source)
      ds = ds.shuffle(seed=_derive_seed(seed, 2 * tag)).repeat()  # new order each epoch
      ds = ds.random_map(RandomResizedCrop(self.image_shape[0], self.image_shape[-1]),
                         seed=_derive_seed(seed, 2 * tag + 1))
      ds = ds[process_index::process_count]
      ds = ds.batch(batch_size // process_count, drop_remainder=True)
      pools.append((pool, ds))
    if not pools:
      raise ValueError("labeled_batch_size and unlabeled_batch_size are both 0.")
    names = tuple(pool for pool, _ in pools)
    length = min(len(d) for _, d in pools)  # both endless; zip needs equal lengths
    ds = grain.experimental.ZipMapDataset(parents=[d[:length] for _, d in pools])
    ds = ds.map(_NameBatch(names))
    if start_step:
      ds = ds[start_step:]
    it_ds = ds.to_iter_dataset(grain.ReadOptions(
        num_threads=self._read_threads, prefetch_buffer_size=self._prefetch_buffer_size))
    if self._worker_count > 0:
      it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._worker_count))
    return iter(it_ds)

  def eval_batches(self, batch_size: int, *, process_index: int | None = None,
                   process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """This process's share of the test split in fixed-size batches, padded at the end.

    Process ``p`` reads test examples ``p, p + P, ...``; every process yields the same
    number of batches, ``ceil(ceil(num_test / P) / batch_size)``, so collective eval
    steps line up. Images are resized (short side ``S / 0.875``) and center-cropped.

    Yields:
      ``images`` uint8 ``[batch_size, S, S, C]``, ``labels`` int32 ``[batch_size]``,
      ``mask`` bool ``[batch_size]`` (False on padding).
    """
    import grain
    process_index, process_count = _process(process_index, process_count)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    size, channels = self.image_shape[0], self.image_shape[-1]
    ds = grain.MapDataset.source(_Examples(self._test_source))[process_index::process_count]
    ds = ds.map(CenterCrop(size, channels))
    num_batches = math.ceil(math.ceil(self.num_test / process_count) / batch_size)
    it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=self._read_threads,
                                                   prefetch_buffer_size=2 * batch_size)))
    for _ in range(num_batches):
      images = np.zeros((batch_size,) + tuple(self.image_shape), np.uint8)
      labels = np.zeros((batch_size,), np.int32)
      mask = np.zeros((batch_size,), bool)
      for i in range(batch_size):
        example = next(it, None)
        if example is None:
          break
        images[i], labels[i], mask[i] = example["image"], example["label"], True
      yield {"images": images, "labels": labels, "mask": mask}

  def _pool_source(self, pool: str):
    if pool == "labeled":
      return _Examples(self._train_source, self.labeled_indices)
    return self._unlabeled_source


def load_streaming_dataset(cfg) -> StreamingDataset:
  """Opens a tfds dataset for streaming (``config.data.streaming=True``).

  Reads only the training labels (to draw the class-balanced labeled subset) and, for ``normalization='train_stats'`` on a dataset other
  than imagenet2012, a sample of images; images are decoded later, in the iterators.

  Raises:
    ValueError: as :func:`sslx.data.load_dataset` (unknown dataset, not prepared, label
      count impossible, ...).

  Example::

    cfg = default_data_config(); cfg.name = "imagenet2012"; cfg.streaming = True
    cfg.num_labels = 13000  # 13 per class, about 1%
    sds = load_streaming_dataset(cfg)
    it = sds.train_iterator(labeled_batch_size=64, unlabeled_batch_size=320, seed=0)
    batch = next(it)  # host numpy, this process's share
  """
  config_lib.validate_data_config(cfg)
  if not cfg.streaming:
    raise ValueError("data.streaming=False: use sslx.data.load_dataset(cfg).")
  name = cfg.name
  spec = sources.TFDS_DATASETS[name]  # validate_data_config allows only tfds names here
  open_split = lambda split, **kw: sources.open_tfds_split(
      name, split, data_dir=cfg.data_dir, download=cfg.download, **kw)
  train_split = cfg.train_split or spec.train_split
  train = open_split(train_split)
  test = open_split(cfg.test_split or spec.test_split)
  num_classes = sources.tfds_num_classes(name, data_dir=cfg.data_dir)
  if cfg.num_classes > 0 and cfg.num_classes != num_classes:
    raise ValueError(f"data.num_classes={cfg.num_classes} but {name} has {num_classes} classes.")
  if len(train) == 0:
    raise ValueError(f"{name}[{train_split}] is empty.")

  labels = read_labels(name, train_split, data_dir=cfg.data_dir, download=cfg.download,
                       num_threads=cfg.read_threads)
  labeled = split_lib.balanced_labeled_indices(
      labels, num_labels=cfg.num_labels, num_classes=num_classes, seed=cfg.split_seed)
  labeled_labels = labels[labeled]

  unlabeled = split_lib.unlabeled_indices(len(train), labeled, pool=cfg.unlabeled_pool)
  parts = []
  if len(unlabeled):
    parts.append(_Examples(train, None if len(unlabeled) == len(train) else unlabeled))
  if cfg.extra_unlabeled:
    if spec.extra_split is None:
      raise ValueError(f"data.extra_unlabeled=True but {name} has no extra unlabeled split.")
    parts.append(_Examples(open_split(spec.extra_split), None,
                           unknown_labels=not spec.extra_has_labels))
  unlabeled_source = _Concat(parts)

  size = cfg.image_size if cfg.image_size > 0 else DEFAULT_IMAGE_SIZE
  first_image = np.asarray(train[0]["image"])
  channels = int(first_image.shape[-1]) if first_image.ndim == 3 else 1
  if name == "imagenet2012" or cfg.normalization != "train_stats":
    mean, std = dataset_lib.normalization_stats(
        "imagenet" if cfg.normalization == "train_stats" else cfg.normalization,
        np.zeros((1, 1, 1, channels), np.uint8))
  else:
    mean, std = _sample_stats(train, channels, seed=cfg.split_seed)
  return StreamingDataset(
      name=name, num_classes=num_classes, image_shape=(size, size, channels),
      mean=mean, std=std, labeled_indices=labeled, labeled_labels=np.asarray(
          labeled_labels, np.int32), num_train=len(train), num_test=len(test),
      num_unlabeled=len(unlabeled_source), split_seed=cfg.split_seed,
      unlabeled_pool=cfg.unlabeled_pool, _train_source=train, _test_source=test,
      _unlabeled_source=unlabeled_source, _read_threads=cfg.read_threads,
      _worker_count=cfg.worker_count, _prefetch_buffer_size=cfg.prefetch_buffer_size)


def read_labels(name: str, split: str, *, data_dir: str | None = None, download: bool = False,
                num_threads: int = 16) -> np.ndarray:
  """All labels of a tfds split, int32 ``[N]``, without decoding the images if possible.

  Images are skipped with ``tfds.decode.SkipDecoding`` (a protobuf parse per record,
  about a minute for ImageNet's 1.28M); where that decoder is unavailable (tfds's mock
  data without TensorFlow) the examples are fully decoded instead.
  """
  import tensorflow_datasets as tfds
  source = sources.open_tfds_split(name, split, data_dir=data_dir, download=download)
  try:
    fast = sources.open_tfds_split(name, split, data_dir=data_dir, download=download,
                                   decoders={"image": tfds.decode.SkipDecoding()})
    int(fast[0]["label"])
    source = fast
  except Exception:  # pylint: disable=broad-except
    pass
  n = len(source)
  labels = np.empty((n,), np.int32)

  def read(lo: int) -> None:
    for i in range(lo, min(lo + 4096, n)):
      labels[i] = int(source[i]["label"])

  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    list(pool.map(read, range(0, n, 4096)))
  return labels


# ----------------------------------------------------------------------------- sources


class _Examples:
  """Random access to ``{'image', 'label'}`` of a tfds source, optionally a subset."""

  def __init__(self, source: Sequence[dict], indices: np.ndarray | None = None, *,
               unknown_labels: bool = False):
    self._source = source
    self._indices = None if indices is None else np.asarray(indices, np.int64)
    self._unknown_labels = unknown_labels

  def __len__(self) -> int:
    return len(self._source) if self._indices is None else len(self._indices)

  def __getitem__(self, i: int) -> dict[str, Any]:
    if not 0 <= i < len(self):
      raise IndexError(i)
    j = int(i if self._indices is None else self._indices[i])
    example = self._source[j]
    label = -1 if self._unknown_labels else int(example["label"])
    return {"image": np.asarray(example["image"]), "label": np.int32(label)}


class _Concat:
  """Concatenation of random-access sources."""

  def __init__(self, parts: Sequence[_Examples]):
    self._parts = list(parts)
    self._starts = np.cumsum([0] + [len(p) for p in self._parts])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, i: int) -> dict[str, Any]:
    if not 0 <= i < len(self):
      raise IndexError(i)
    part = int(np.searchsorted(self._starts, i, side="right")) - 1
    return self._parts[part][i - int(self._starts[part])]


class _NameBatch:
  """(labeled_batch, unlabeled_batch) -> {'labeled_images', ...} (picklable for workers)."""

  def __init__(self, names: tuple[str, ...]):
    self._names = names

  def __call__(self, batches) -> dict[str, np.ndarray]:
    out = {}
    for name, batch in zip(self._names, batches):
      out[f"{name}_images"] = batch["image"]
      out[f"{name}_labels"] = batch["label"].astype(np.int32)
    return out


# ----------------------------------------------------------------------------- transforms


class RandomResizedCrop:
  """Inception-style random-resized crop on the host, then a resize to ``size x size``.

  Area fraction uniform in ``scale``, log aspect ratio uniform in ``log(ratio)``, up to
  ``attempts`` tries, else a center crop of the largest in-ratio rectangle (the
  torchvision/timm fallback). Szegedy et al., "Going deeper with convolutions", 2015.
  """

  def __init__(self, size: int, channels: int = 3, *, scale=(0.08, 1.0),
               ratio=(3 / 4, 4 / 3), attempts: int = 10):
    self.size, self.channels = size, channels
    self.scale, self.ratio, self.attempts = scale, ratio, attempts

  def crop_box(self, height: int, width: int, rng: np.random.Generator):
    """``(top, left, crop_height, crop_width)`` for an image of that size."""
    area = height * width
    log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
    for _ in range(self.attempts):
      target_area = area * rng.uniform(*self.scale)
      aspect = math.exp(rng.uniform(*log_ratio))
      w = int(round(math.sqrt(target_area * aspect)))
      h = int(round(math.sqrt(target_area / aspect)))
      if 0 < w <= width and 0 < h <= height:
        return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < self.ratio[0]:
      w, h = width, int(round(width / self.ratio[0]))
    elif in_ratio > self.ratio[1]:
      h, w = height, int(round(height * self.ratio[1]))
    else:
      h, w = height, width
    h, w = max(1, min(h, height)), max(1, min(w, width))
    return (height - h) // 2, (width - w) // 2, h, w

  def __call__(self, example: dict, rng: np.random.Generator) -> dict:
    image = _channels(example["image"], self.channels)
    top, left, h, w = self.crop_box(image.shape[0], image.shape[1], rng)
    crop = image[top:top + h, left:left + w]
    return {"image": _resize(crop, self.size, self.size), "label": example["label"]}


class CenterCrop:
  """Eval transform: resize the short side to ``size / 0.875``, center crop ``size``."""

  def __init__(self, size: int, channels: int = 3):
    self.size, self.channels = size, channels

  def __call__(self, example: dict) -> dict:
    image = _channels(example["image"], self.channels)
    height, width = image.shape[:2]
    short = max(self.size, int(round(self.size / EVAL_CROP_FRACTION)))
    if height <= width:
      new_h, new_w = short, max(short, int(round(width * short / height)))
    else:
      new_h, new_w = max(short, int(round(height * short / width))), short
    image = _resize(image, new_h, new_w)
    top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
    return {"image": image[top:top + self.size, left:left + self.size],
            "label": example["label"]}


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == channels:
    return image
  if image.shape[-1] == 1:
    return np.repeat(image, channels, axis=-1)
  if image.shape[-1] == 4 and channels == 3:
    return image[..., :3]
  raise ValueError(f"image with {image.shape[-1]} channels, expected {channels}.")


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased) resize of a uint8 ``[h, w, c]`` image with PIL."""
  from PIL import Image
  if image.shape[:2] == (height, width):
    return np.ascontiguousarray(image)
  if image.shape[-1] == 1:
    out = Image.fromarray(image[..., 0]).resize((width, height), Image.BILINEAR)
    return np.asarray(out)[..., None]
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


# ----------------------------------------------------------------------------- helpers


def _process(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must lie in [0, process_count="
                     f"{process_count}).")
  return process_index, process_count


def _derive_seed(seed: int, tag: int) -> int:
  """Independent 32-bit seeds for each pool's shuffle and crops."""
  return int(np.random.SeedSequence([seed, tag]).generate_state(1)[0])


def _sample_stats(train: Sequence[dict], channels: int, *, seed: int):
  """``train_stats`` estimated from a fixed random sample of training images."""
  rng = np.random.default_rng(seed)
  n = len(train)
  idx = rng.choice(n, size=min(n, NORMALIZATION_SAMPLE), replace=False)
  total = np.zeros(channels)
  total_sq = np.zeros(channels)
  count = 0
  for i in idx:
    x = _channels(train[int(i)]["image"], channels).reshape(-1, channels) / 255.0
    total += x.sum(0)
    total_sq += np.square(x).sum(0)
    count += len(x)
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
  return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)
