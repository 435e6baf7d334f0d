"""The labeled/unlabeled protocol: a class-balanced labeled subset drawn by a seed.

Semi-supervised benchmarks (MixMatch, FixMatch and their successors) label ``N``
training examples, ``N / num_classes`` per class, chosen at random by a seed (CIFAR-10
with 40 labels = 4 per class, reported over several seeds), and train on the whole
training set as the unlabeled pool. :func:`balanced_labeled_indices` draws that subset;
:func:`unlabeled_indices` builds the pool (``all`` or the ``rest``).
"""

from __future__ import annotations

import numpy as np


def balanced_labeled_indices(labels: np.ndarray, *, num_labels: int, num_classes: int,
                             seed: int) -> np.ndarray:
  """Indices of a class-balanced labeled subset, ``num_labels / num_classes`` per class.

  For each class ``c`` (in order) the examples of ``c`` are permuted with a
  ``np.random.default_rng(seed)`` stream and the first ``k = num_labels / num_classes``
  are kept. The same ``(labels, num_labels, seed)`` always gives the same subset.

  Args:
    labels: int ``[N]`` training labels in ``[0, num_classes)``.
    num_labels: total labeled examples; ``-1`` returns every index.
    num_classes: number of classes.
    seed: the split seed (``config.data.split_seed``).

  Returns:
    Sorted int64 indices ``[num_labels]`` into ``labels``.

  Raises:
    ValueError: ``num_labels`` not divisible by ``num_classes`` or larger than some
      class allows (naming ``data.num_labels`` and the class), labels out of range.

  Example::

    idx = balanced_labeled_indices(y_train, num_labels=40, num_classes=10, seed=1)
    np.bincount(y_train[idx])  # [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be [N], got shape {labels.shape}.")
  if num_classes <= 0:
    raise ValueError(f"num_classes must be positive, got {num_classes}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f"training labels must lie in [0, {num_classes}), got range "
        f"[{labels.min()}, {labels.max()}].")
  if num_labels == -1:
    return np.arange(len(labels), dtype=np.int64)
  if num_labels <= 0:
    raise ValueError(f"data.num_labels must be positive or -1, got {num_labels}.")
  if num_labels % num_classes:
    raise ValueError(
        f"data.num_labels={num_labels} is not divisible by the number of classes "
        f"({num_classes}): labeled subsets are balanced per class; use a multiple of "
        f"{num_classes}.")
  per_class = num_labels // num_classes
  counts = np.bincount(labels, minlength=num_classes)
  short = np.flatnonzero(counts < per_class)
  if short.size:
    c = int(short[0])
    raise ValueError(
        f"data.num_labels={num_labels} asks for {per_class} labels per class, but class {c} "
        f"has only {counts[c]} training examples (smallest class: {counts.min()}, so at most "
        f"{counts.min() * num_classes} labels).")
  rng = np.random.default_rng(seed)
  chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(num_classes)]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def unlabeled_indices(num_examples: int, labeled: np.ndarray, *, pool: str) -> np.ndarray:
  """Indices of the training examples in the unlabeled pool.

  Args:
    num_examples: size of the training split.
    labeled: indices of the labeled subset.
    pool: ``all`` (every training example, the FixMatch protocol), ``rest`` (those not
      labeled) or ``none``.

  Returns:
    Sorted int64 indices.
  """
  if pool == "all":
    return np.arange(num_examples, dtype=np.int64)
  if pool == "rest":
    mask = np.ones(num_examples, bool)
    mask[np.asarray(labeled, np.int64)] = False
    return np.flatnonzero(mask).astype(np.int64)
  if pool == "none":
    return np.zeros((0,), np.int64)
  raise ValueError(f"data.unlabeled_pool must be 'all', 'rest' or 'none', got {pool!r}.")
