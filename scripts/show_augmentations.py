r"""Writes a PNG grid of sslx augmentations, to check them by eye.

For each source image: the original, every RandAugment op at increasing
magnitude (levels 0.2 .. 1.0, then level 1.0 with the opposite sign), and
several random draws of each pipeline (weak, randaugment, strong,
simclr_view). Check that shears shear, rotations turn counter-clockwise for a
positive angle, translations move the content, and colours stay sane.

Sources: an sklearn digit (8x8, gray) and a synthetic colourful 32x32 image
(CIFAR is not available offline), or your own images from an .npz file.

Run:
  python scripts/show_augmentations.py --out=augmentations.png
  python scripts/show_augmentations.py --data=npz:cifar_sample.npz:images
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sslx.augment.randaugment import RANDAUGMENT_OPS  # noqa: E402
from sslx.augment.randaugment import RandAugmentDraws  # noqa: E402
from sslx.augment.randaugment import randaugment  # noqa: E402
from sslx.augment.randaugment import randaugment_from_draws  # noqa: E402
from sslx.augment.randaugment import strong  # noqa: E402
from sslx.augment.simclr import simclr_view  # noqa: E402
from sslx.augment.weak import weak  # noqa: E402

LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)


def synthetic_image(size: int = 32) -> np.ndarray:
  """An asymmetric colourful scene: sky gradient, sun, house, red roof."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
  img = np.zeros((size, size, 3), np.float32)
  img[...] = np.stack([0.3 + 0.3 * yy, 0.5 + 0.3 * yy, 0.95 - 0.2 * yy], -1)
  img[yy > 0.75] = (0.2, 0.6, 0.15)  # grass
  sun = (yy - 0.2) ** 2 + (xx - 0.8) ** 2 < 0.012
  img[sun] = (1.0, 0.85, 0.1)
  house = (yy > 0.45) & (yy < 0.8) & (xx > 0.15) & (xx < 0.5)
  img[house] = (0.85, 0.8, 0.7)
  roof = (yy <= 0.45) & (yy > 0.25) & (np.abs(xx - 0.325) < (yy - 0.25) * 1.0)
  img[roof] = (0.8, 0.1, 0.1)
  door = (yy > 0.6) & (yy < 0.8) & (xx > 0.28) & (xx < 0.36)
  img[door] = (0.35, 0.2, 0.1)
  return (img * 255).astype(np.uint8)


def digit_image() -> np.ndarray:
  from sklearn.datasets import load_digits
  digits = load_digits()
  image = digits.images[2]  # a '2': asymmetric
  return np.round(image / 16.0 * 255).astype(np.uint8)[..., None]


def load_npz(spec: str) -> list[np.ndarray]:
  parts = spec.split(':')
  path = parts[1]
  key = parts[2] if len(parts) > 2 else None
  with np.load(path) as data:
    array = data[key] if key else data[data.files[0]]
  array = np.asarray(array)
  if array.dtype != np.uint8:
    array = np.clip(np.round(array * 255), 0, 255).astype(np.uint8)
  if array.ndim == 3:
    array = array[..., None]
  return [array[i] for i in range(min(2, len(array)))]


def op_rows(image: np.ndarray):
  """Each op at LEVELS with sign +1, then level 1 with sign -1."""
  columns = len(LEVELS) + 1
  rows = []
  for index, name in enumerate(RANDAUGMENT_OPS):
    n = columns
    draws = RandAugmentDraws(
        op=jnp.full((n, 1), index, jnp.int32),
        applied=jnp.ones((n, 1), bool),
        level=jnp.asarray(list(LEVELS) + [1.0], jnp.float32)[:, None],
        sign=jnp.asarray([1.0] * len(LEVELS) + [-1.0], jnp.float32)[:, None],
        cutout_center=jnp.zeros((n, 2), jnp.int32))
    batch = jnp.broadcast_to(image, (n,) + image.shape)
    out = randaugment_from_draws(batch, draws, cutout=0.0)
    rows.append((name, np.asarray(out)))
  return rows


def pipeline_rows(image: np.ndarray, columns: int, seed: int):
  batch = jnp.broadcast_to(image, (columns,) + image.shape)
  gray = image.shape[-1] == 1
  key = jax.random.key(seed)
  keys = jax.random.split(key, 4)
  return [
      ('weak', np.asarray(weak(keys[0], batch, flip=not gray))),
      ('randaugment', np.asarray(randaugment(keys[1], batch))),
      ('strong', np.asarray(strong(keys[2], batch, flip=not gray))),
      ('simclr_view', np.asarray(
          simclr_view(keys[3], batch, strength=0.5 if not gray else 1.0))),
  ]


def render(images, out_path: str, seed: int) -> None:
  columns = len(LEVELS) + 1
  blocks = []
  for image in images:
    rows = [('original', np.broadcast_to(image, (columns,) + image.shape))]
    rows += op_rows(image)
    rows += pipeline_rows(image, columns, seed)
    blocks.append(rows)
  n_rows = len(blocks[0])
  n_cols = columns * len(blocks)
  fig, axes = plt.subplots(
      n_rows, n_cols, figsize=(0.8 * n_cols + 1.2, 0.8 * n_rows + 0.3),
      gridspec_kw=dict(wspace=0.05, hspace=0.08))
  for b, rows in enumerate(blocks):
    for r, (name, views) in enumerate(rows):
      for c in range(columns):
        ax = axes[r, b * columns + c]
        view = views[c]
        if view.shape[-1] == 1:
          ax.imshow(view[..., 0], cmap='gray', vmin=0, vmax=255,
                    interpolation='nearest')
        else:
          ax.imshow(view, interpolation='nearest')
        ax.set_xticks([])
        ax.set_yticks([])
        if b > 0 and c == 0:
          ax.spines['left'].set_linewidth(3)
        if b == 0 and c == 0:
          ax.set_ylabel(name, rotation=0, ha='right', va='center',
                        fontsize=7)
        if r == 1 and c < len(LEVELS):
          ax.set_title(f'l={LEVELS[c]}', fontsize=6)
        elif r == 1:
          ax.set_title('l=1, -sign', fontsize=6)
  fig.subplots_adjust(left=1.0 / (0.8 * n_cols + 1.2), right=0.99, top=0.98,
                      bottom=0.01)
  fig.savefig(out_path, dpi=100)
  print(f'wrote {out_path}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='augmentations.png')
  parser.add_argument('--data', default='builtin',
                      help="'builtin' (digit + synthetic) or npz:PATH[:KEY]")
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.data == 'builtin':
    images = [synthetic_image(), digit_image()]
  elif args.data.startswith('npz:'):
    images = load_npz(args.data)
  else:
    parser.error(f'--data must be builtin or npz:PATH[:KEY]; got {args.data}')
  render(images, args.out, args.seed)
  return 0


if __name__ == '__main__':
  sys.exit(main())
