r"""Benchmark: FixMatch weak + strong views, sslx on-device vs PIL per image.

Measures images per second for the FixMatch unlabeled batch (448 images of
32x32x3 per call, each getting a weak and a strong view) three ways, in the
same run, interleaved so that machine load hits them alike:

* ``sslx``: ``weak`` + ``strong`` from :mod:`sslx.augment`, jitted, one
  process (XLA uses the machine's cores).
* ``sslx-unfused``: the same views with RandAugment as a ``vmap`` over
  ``lax.switch`` (``randaugment_reference``), to show what the fused family
  passes buy.
* ``PIL``: the same ops, ranges and probabilities applied per image with
  PIL/numpy in a ``multiprocessing.Pool`` of ``--processes`` workers that hold
  the dataset (forked) and return stacked uint8 arrays: what PyTorch
  DataLoader workers do for FixMatch (as in USB and FixMatch-pytorch).

Optionally (``--step``) it also times a FixMatch training step's network work
on the same batch, forward and backward of WRN-28-2 on 64 + 2 * 448 images,
against the augmentation of that batch (64 weak labeled, 448 weak and 448
strong unlabeled).

Run:
  python scripts/bench_augment.py                  # 2 processes for PIL
  python scripts/bench_augment.py --step           # plus the WRN-28-2 ratio
  python scripts/bench_augment.py --processes=1 --repeats=20

Machines running other jobs make absolute numbers noisy; the ratios measured
in one run are the figures to quote.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time

import numpy as np
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

# ---------------------------------------------------------------------------
# The PIL baseline: the FixMatch RandAugment of sslx.augment, one image at a
# time, as a DataLoader worker would run it.
# ---------------------------------------------------------------------------

_OPS = ('Identity', 'AutoContrast', 'Equalize', 'Posterize', 'Solarize',
        'Brightness', 'Color', 'Contrast', 'Sharpness', 'Rotate', 'ShearX',
        'ShearY', 'TranslateX', 'TranslateY')
_GRAY = 128


def _signed(value: float) -> float:
  return -value if random.random() < 0.5 else value


def _pil_op(image: Image.Image, name: str, level: float) -> Image.Image:
  w, h = image.size
  fill = (_GRAY,) * len(image.getbands())
  factor = 0.1 + 1.8 * level
  if name == 'Identity':
    return image
  if name == 'AutoContrast':
    return ImageOps.autocontrast(image)
  if name == 'Equalize':
    return ImageOps.equalize(image)
  if name == 'Posterize':
    return ImageOps.posterize(image, max(1, 4 - int(4 * level)))
  if name == 'Solarize':
    return ImageOps.solarize(image, int(256 * (1 - level)))
  if name == 'Brightness':
    return ImageEnhance.Brightness(image).enhance(factor)
  if name == 'Color':
    return ImageEnhance.Color(image).enhance(factor)
  if name == 'Contrast':
    return ImageEnhance.Contrast(image).enhance(factor)
  if name == 'Sharpness':
    return ImageEnhance.Sharpness(image).enhance(factor)
  if name == 'Rotate':
    return image.rotate(_signed(30 * level), fillcolor=fill)
  affine = {
      'ShearX': (1, _signed(0.3 * level), 0, 0, 1, 0),
      'ShearY': (1, 0, 0, _signed(0.3 * level), 1, 0),
      'TranslateX': (1, 0, _signed(0.3 * level * w), 0, 1, 0),
      'TranslateY': (1, 0, 0, 0, 1, _signed(0.3 * level * h)),
  }[name]
  return image.transform(image.size, Image.AFFINE, affine, fillcolor=fill)


def pil_weak(x: np.ndarray, pad: int = 4) -> np.ndarray:
  """Flip p=0.5, reflect-pad and random crop (torchvision's way, via numpy)."""
  if random.random() < 0.5:
    x = x[:, ::-1]
  padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
  top, left = random.randint(0, 2 * pad), random.randint(0, 2 * pad)
  return padded[top:top + x.shape[0], left:left + x.shape[1]]


def pil_strong(x: np.ndarray, num_ops: int = 2, op_prob: float = 0.5,
               cutout: float = 0.5) -> np.ndarray:
  image = Image.fromarray(np.ascontiguousarray(pil_weak(x)))
  for _ in range(num_ops):
    name = random.choice(_OPS)
    if random.random() < op_prob:
      image = _pil_op(image, name, random.random())
  out = np.array(image)
  h, w = out.shape[:2]
  half = int(cutout * min(h, w)) // 2
  row, col = random.randrange(h), random.randrange(w)
  out[max(0, row - half):row + half, max(0, col - half):col + half] = _GRAY
  return out


_DATA = None


def _init_worker(data: np.ndarray, seed: int) -> None:
  global _DATA
  _DATA = data
  random.seed(seed + os.getpid())


def _pil_views(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  lo, hi = bounds
  images = _DATA[lo:hi]
  return (np.stack([pil_weak(x) for x in images]),
          np.stack([pil_strong(x) for x in images]))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def synthetic_cifar(n: int, seed: int = 0) -> np.ndarray:
  """Colourful 32x32 images with smooth gradients, blobs and edges.

  CIFAR is not available offline; PIL and sslx costs depend on size, not
  content, but natural-looking statistics keep AutoContrast/Equalize honest.
  """
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31
  out = np.empty((n, 32, 32, 3), np.uint8)
  for i in range(n):
    base = rng.uniform(0, 1, 3)[None, None] * (1 - yy[..., None]) + \
        rng.uniform(0, 1, 3)[None, None] * xx[..., None]
    cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), \
        rng.uniform(0.1, 0.3)
    blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r ** 2
    img = np.where(blob[..., None], rng.uniform(0, 1, 3), base / 2)
    img = img + rng.normal(0, 0.04, img.shape)
    out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
  return out


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def _time_call(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=448,
                      help='unlabeled images per call (FixMatch: 7 * 64)')
  parser.add_argument('--processes', type=int, default=2,
                      help='PIL worker processes')
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--step', action='store_true',
                      help='also time WRN-28-2 forward+backward')
  parser.add_argument('--step-repeats', type=int, default=3,
                      help='repeats for --step (a CPU step takes seconds)')
  parser.add_argument('--no-unfused', action='store_true',
                      help='skip the vmap-over-switch baseline')
  args = parser.parse_args(argv)

  data = synthetic_cifar(args.batch)
  # Fork the PIL workers before JAX starts its threads.
  ctx = multiprocessing.get_context('fork')
  pool = ctx.Pool(args.processes, initializer=_init_worker,
                  initargs=(data, 0))
  chunks = [(i * args.batch // args.processes,
             (i + 1) * args.batch // args.processes)
            for i in range(args.processes)]

  import jax
  import jax.numpy as jnp
  from sslx.augment.randaugment import draw_randaugment
  from sslx.augment.randaugment import randaugment_reference
  from sslx.augment.randaugment import strong
  from sslx.augment.weak import weak

  device_data = jax.device_put(data)

  @jax.jit
  def sslx_views(step, images):
    key = jax.random.fold_in(jax.random.key(0), step)
    weak_key, strong_key = jax.random.split(key)
    return weak(weak_key, images), strong(strong_key, images)

  @jax.jit
  def unfused_views(step, images):
    key = jax.random.fold_in(jax.random.key(0), step)
    weak_key, shift_key, ra_key = jax.random.split(key, 3)
    shifted = weak(shift_key, images)
    draws = draw_randaugment(ra_key, *images.shape[:3], op_prob=0.5)
    return weak(weak_key, images), randaugment_reference(shifted, draws)

  runners = {}
  counter = iter(range(10**9))
  runners['sslx'] = lambda: jax.block_until_ready(
      sslx_views(next(counter), device_data))
  if not args.no_unfused:
    runners['sslx-unfused'] = lambda: jax.block_until_ready(
        unfused_views(next(counter), device_data))

  runners[f'PIL x{args.processes}'] = lambda: pool.map(_pil_views, chunks)

  for fn in runners.values():  # compile / warm up
    fn()
    fn()
  times = {name: [] for name in runners}
  for _ in range(args.repeats):
    for name, fn in runners.items():
      times[name].append(_time_call(fn))
  pool.close()
  pool.join()

  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, '
        f'{os.cpu_count()} CPUs, batch {args.batch} x 32x32x3 uint8, '
        f'weak + strong view per image, {args.repeats} interleaved repeats '
        '(median; min)')
  pil = statistics.median(times[f'PIL x{args.processes}'])
  for name in runners:
    med, best = statistics.median(times[name]), min(times[name])
    print(f'  {name:14s} {args.batch / med:9.0f} images/s  '
          f'({med * 1e3:7.1f} ms/call; min {best * 1e3:6.1f})  '
          f'{pil / med:5.2f}x PIL', flush=True)

  if args.step:
    # One network call takes seconds to minutes on a CPU; the augmentation is
    # timed several times after each one, and medians are compared.
    network, augment = _step_runners(jax, jnp, data, args.batch)
    network()
    augment()
    net_times, aug_times = [], []
    for _ in range(args.step_repeats):
      net_times.append(_time_call(network))
      aug_times.extend(_time_call(augment) for _ in range(5))
    net = statistics.median(net_times)
    aug = statistics.median(aug_times)
    print(f'FixMatch step (64 labeled + 2 x {args.batch} unlabeled images of '
          f'32x32x3), {args.step_repeats} repeats (median):')
    print(f'  WRN-28-2 forward+backward   {net * 1e3:10.1f} ms')
    print(f'  augmentation (3 weak/strong views) {aug * 1e3:7.1f} ms')
    print(f'  augmentation / (augmentation + network) = '
          f'{aug / (aug + net):.3%}')
  return 0


def _step_runners(jax, jnp, data, batch):
  """(network, augmentation) work of one FixMatch step, as two callables."""
  from sslx.augment.randaugment import strong
  from sslx.augment.weak import weak
  from sslx.models import create_model

  labeled = 64
  model = create_model('wrn28_2', num_classes=10)
  images = jnp.asarray(data[:labeled])
  unlabeled = jnp.asarray(data)
  x = jnp.concatenate([images, unlabeled, unlabeled]).astype(jnp.float32)
  x = x / 255.0
  variables = model.init(jax.random.key(0), x[:2], train=False)

  @jax.jit
  def fwd_bwd(variables, x):
    def loss_fn(params):
      out, _ = model.apply({**variables, 'params': params}, x, train=True,
                           mutable=['batch_stats'])
      return jnp.mean(jax.nn.logsumexp(out['logits'], axis=-1))
    return jax.grad(loss_fn)(variables['params'])

  @jax.jit
  def augment(step, labeled_images, unlabeled_images):
    key = jax.random.fold_in(jax.random.key(1), step)
    k1, k2, k3 = jax.random.split(key, 3)
    return (weak(k1, labeled_images), weak(k2, unlabeled_images),
            strong(k3, unlabeled_images))

  counter = iter(range(10**9))
  return (lambda: jax.block_until_ready(fwd_bwd(variables, x)),
          lambda: jax.block_until_ready(
              augment(next(counter), images, unlabeled)))


if __name__ == '__main__':
  sys.exit(main())
