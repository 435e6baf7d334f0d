"""The ``config.data`` block: every field the data layer reads, its default, cheap checks.

Experiment configs do ``config.data = default_data_config()`` and override fields;
:func:`validate_data_config` checks them without reading any data, so a typo fails
before anything is loaded or compiled. Errors name the field (``data.num_labels``).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# tfds datasets sslx knows how to read (see `sslx.data.sources.TFDS_DATASETS`).
TFDS_NAMES = (
    "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "stl10", "imagenet2012",
)
DATASET_NAMES = ("digits",) + TFDS_NAMES
NPZ_PREFIX = "npz:"
UNLABELED_POOLS = ("all", "rest", "none")
NORMALIZATIONS = ("train_stats", "imagenet", "symmetric", "none")


def default_data_config() -> ml_collections.ConfigDict:
  """Defaults for ``config.data``.

  Fields:
    name: ``digits`` (scikit-learn's bundled 8x8 digits, offline), a tfds name from
      ``TFDS_NAMES``, or ``npz:/path/to/file.npz`` (keys ``x_train``, ``y_train``,
      ``x_test``, ``y_test``, optional ``x_unlabeled``).
    num_labels: total labeled examples, balanced over classes (40 on CIFAR-10 = 4 per
      class); -1 labels the whole training set.
    split_seed: seed of the labeled subset (FixMatch reports 5 such seeds).
    unlabeled_pool: ``all`` (the whole training set, labeled part included: the
      FixMatch/MixMatch protocol), ``rest`` (training set minus the labeled subset) or
      ``none`` (only the extra split below, or nothing).
    extra_unlabeled: add the dataset's extra unlabeled split to the unlabeled pool:
      STL-10's 100k ``unlabelled`` images, SVHN's 531k ``extra`` images, an npz's
      ``x_unlabeled``. Off by default so a config names its protocol explicitly.
    data_dir: tfds data directory; None = ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    download: let tfds download and prepare a missing dataset (needs internet and, for
      the preparation step, TensorFlow). Off: a missing dataset is a clear error.
    train_split / test_split: tfds split names, '' = the dataset's own (``train``;
      ``test``, or ``validation`` for imagenet2012). tfds slicing such as
      ``train[:45000]`` works; labeled indices then index that slice.
    num_classes: -1 = from the dataset (tfds metadata; for npz, max label + 1).
      Set it for an npz whose training labels miss the last class.
    normalization: per-channel ``mean``/``std`` the model input uses: ``train_stats``
      (computed on the training split), ``imagenet`` (the usual ImageNet constants),
      ``symmetric`` (0.5/0.5, inputs in [-1, 1]) or ``none`` (0/1, inputs in [0, 1]).
    streaming: read through grain from ``tfds.data_source`` instead of holding the
      dataset in device memory (needed for imagenet2012).
    image_size: streaming only: the side of the random-resized crop (train) and of the
      center crop (eval). -1 = 224. Device-resident datasets keep their native size.
    max_replicated_mib: device-resident image arrays up to this size are replicated on
      every device; larger ones are sharded over the devices on their first axis.
    worker_count / read_threads / prefetch_buffer_size: streaming throughput (grain
      worker processes, 0 = in-process; reader threads; batches kept ready).
  """
  c = ml_collections.ConfigDict()
  c.name = "digits"
  c.num_labels = -1
  c.split_seed = 0
  c.unlabeled_pool = "all"
  c.extra_unlabeled = False
  c.data_dir = config_dict.placeholder(str)
  c.download = False
  c.train_split = ""
  c.test_split = ""
  c.num_classes = -1
  c.normalization = "train_stats"
  c.streaming = False
  c.image_size = -1
  c.max_replicated_mib = 2048
  c.worker_count = 0
  c.read_threads = 16
  c.prefetch_buffer_size = 4
  return c


def validate_data_config(cfg) -> None:
  """Cheap checks of a ``config.data`` block; reads no data.

  Raises:
    ValueError: naming the field (``data.<field>``), the value and what is allowed.
  """
  missing = sorted(set(default_data_config()) - set(cfg))
  if missing:
    raise ValueError(
        f"data: missing fields {missing}; start from sslx.data.default_data_config().")
  name = cfg.name
  if not isinstance(name, str) or not name:
    raise ValueError(f"data.name must be a non-empty string, got {name!r}.")
  if name.startswith(NPZ_PREFIX):
    if not name[len(NPZ_PREFIX):]:
      raise ValueError("data.name='npz:' needs a path, e.g. data.name='npz:/data/mine.npz'.")
  elif name not in DATASET_NAMES:
    raise ValueError(
        f"data.name={name!r} is not a known dataset; choose one of {list(DATASET_NAMES)} "
        f"or 'npz:/path/to/file.npz'.")
  _check_int(cfg, "num_labels")
  if cfg.num_labels == 0 or cfg.num_labels < -1:
    raise ValueError(
        f"data.num_labels must be a positive number of labels or -1 (all labeled), "
        f"got {cfg.num_labels}.")
  _check_int(cfg, "split_seed")
  if cfg.split_seed < 0:
    raise ValueError(f"data.split_seed must be >= 0, got {cfg.split_seed}.")
  if cfg.unlabeled_pool not in UNLABELED_POOLS:
    raise ValueError(
        f"data.unlabeled_pool must be one of {list(UNLABELED_POOLS)}, got "
        f"{cfg.unlabeled_pool!r}.")
  if not isinstance(cfg.extra_unlabeled, bool):
    raise ValueError(f"data.extra_unlabeled must be a bool, got {cfg.extra_unlabeled!r}.")
  if cfg.extra_unlabeled and name in DATASET_NAMES and name not in ("svhn_cropped", "stl10"):
    raise ValueError(
        f"data.extra_unlabeled=True but data.name={name!r} has no extra unlabeled split "
        "(only svhn_cropped, stl10 and npz files with x_unlabeled do).")
  _check_int(cfg, "num_classes")
  if cfg.num_classes == 0 or cfg.num_classes < -1:
    raise ValueError(f"data.num_classes must be positive or -1 (from the data), got "
                     f"{cfg.num_classes}.")
  if cfg.num_labels > 0 and cfg.num_classes > 0 and cfg.num_labels % cfg.num_classes:
    raise ValueError(
        f"data.num_labels={cfg.num_labels} is not divisible by data.num_classes="
        f"{cfg.num_classes}: labeled subsets are balanced per class.")
  if cfg.normalization not in NORMALIZATIONS:
    raise ValueError(
        f"data.normalization must be one of {list(NORMALIZATIONS)}, got "
        f"{cfg.normalization!r}.")
  _check_int(cfg, "image_size")
  if cfg.image_size == 0 or cfg.image_size < -1:
    raise ValueError(f"data.image_size must be positive or -1, got {cfg.image_size}.")
  if not cfg.streaming and cfg.image_size != -1:
    raise ValueError(
        f"data.image_size={cfg.image_size} only applies with data.streaming=True; "
        "device-resident datasets keep their native size (leave it at -1).")
  if name == "imagenet2012" and not cfg.streaming:
    raise ValueError(
        "data.name='imagenet2012' does not fit in device memory: set data.streaming=True.")
  if cfg.streaming and (name == "digits" or name.startswith(NPZ_PREFIX)):
    raise ValueError(
        f"data.streaming=True needs a tfds dataset, got data.name={name!r} (digits and "
        "npz files are held in device memory).")
  for field in ("max_replicated_mib", "worker_count", "read_threads", "prefetch_buffer_size"):
    _check_int(cfg, field)
    if cfg[field] < 0:
      raise ValueError(f"data.{field} must be >= 0, got {cfg[field]}.")
  if cfg.read_threads == 0:
    raise ValueError("data.read_threads must be >= 1, got 0.")
  for field in ("train_split", "test_split"):
    if not isinstance(cfg[field], str):
      raise ValueError(f"data.{field} must be a string ('' = default), got {cfg[field]!r}.")
  if cfg.data_dir is not None and not isinstance(cfg.data_dir, str):
    raise ValueError(f"data.data_dir must be a path string or None, got {cfg.data_dir!r}.")


def _check_int(cfg, field: str) -> None:
  value = cfg[field]
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"data.{field} must be an integer, got {value!r}.")
