"""PyTorch reference training steps for FixMatch and SimCLR (benchmark only).

The baseline sslx is measured against in ``scripts/bench_step.py``: the training step
written the way the PyTorch SSL libraries write it (USB/TorchSSL for FixMatch,
solo-learn/lightly for SimCLR), so the comparison is with what researchers run today:

* the dataset is uint8 ``[N, 32, 32, 3]`` in host memory; ``torch.utils.data.DataLoader``
  worker processes turn each image into a PIL image, augment it with PIL, and convert
  it to a normalised float tensor (``ToTensor`` + ``Normalize``); the main process
  collates, runs forward, backward, the optimizer step, the LR schedule and the EMA;
* FixMatch: WRN-28-2 (FixMatch/USB variant: pre-activation, LeakyReLU 0.1, BN momentum
  0.001 and eps 1e-3, convs with biases), labeled + weak + strong images in one forward
  pass, hard pseudo-labels thresholded at 0.95, SGD + Nesterov with weight decay on
  conv/linear weights only, the FixMatch cosine, an EMA of the parameters;
* SimCLR: ResNet-18 with the CIFAR stem, a 2-layer projection head (512 -> 512 -> 128,
  BN + ReLU in between), two views per image in one forward pass, NT-Xent over the
  2N views, LARS (biases and BN parameters excluded from decay and adaptation);
* augmentations follow sslx's definitions of the same views (``sslx.augment``), op for
  op, in PIL: weak = flip + reflect-padded shift of up to 4 px; strong = weak, then 2
  RandAugment ops drawn from the 14 of FixMatch's code, each applied with p = 0.5 at a
  random magnitude, then a 16-px gray Cutout; SimCLR = random resized crop (scale
  0.08-1, bilinear), flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8 in random
  order, grayscale with p = 0.2 (CIFAR: no blur).

No torchvision: there is no CPU build of it for this machine's torch, and the few
transforms needed are short in PIL. Nothing here imports sslx.

Run on its own (prints one JSON line of timings)::

  pip install -r requirements-bench.txt
  python scripts/torch_reference.py --workload=fixmatch --steps=10
  python scripts/torch_reference.py --workload=simclr --steps=5 --workers=2
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workload', choices=('fixmatch', 'simclr'), default='fixmatch')
  parser.add_argument('--batch', type=int, default=0,
                      help='labeled batch (fixmatch, default 64) or images (simclr, 256)')
  parser.add_argument('--workers', type=int, default=1, help='DataLoader workers per loader')
  parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--channels_last', action='store_true')
  return parser.parse_args(argv)


if __name__ == '__main__':
  ARGS = parse_args()  # before importing torch: --help and bad flags work without it

import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

try:
  import torch
  from torch import nn
  import torch.nn.functional as F
except ModuleNotFoundError as e:
  if __name__ == '__main__':
    sys.exit(f'error: scripts/torch_reference.py needs PyTorch ({e}): '
             'pip install -r requirements-bench.txt')
  raise

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
GRAY = (128, 128, 128)

# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


class PreActBlock(nn.Module):
  """WRN basic block, FixMatch flavour: BN-LReLU-conv3x3-BN-LReLU-conv3x3 + shortcut."""

  def __init__(self, cin: int, cout: int, stride: int, activate_before_residual: bool):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(cin, momentum=0.001, eps=0.001)
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
    self.bn2 = nn.BatchNorm2d(cout, momentum=0.001, eps=0.001)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=True)
    self.activate_before_residual = activate_before_residual
    self.shortcut = (nn.Conv2d(cin, cout, 1, stride, 0, bias=True)
                     if cin != cout or stride != 1 else None)

  def forward(self, x):
    y = F.leaky_relu(self.bn1(x), 0.1)
    skip = y if self.activate_before_residual else x
    y = self.conv1(y)
    y = self.conv2(F.leaky_relu(self.bn2(y), 0.1))
    if self.shortcut is not None:
      skip = self.shortcut(skip)
    return skip + y


class WideResNet(nn.Module):
  """WRN-depth-width for 32x32 images, as in FixMatch's code and USB's ``wrn_28_2``."""

  def __init__(self, num_classes: int = 10, depth: int = 28, width: int = 2):
    super().__init__()
    n = (depth - 4) // 6
    channels = [16, 16 * width, 32 * width, 64 * width]
    self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=True)
    blocks = []
    for g in range(3):
      for i in range(n):
        blocks.append(PreActBlock(channels[g] if i == 0 else channels[g + 1], channels[g + 1],
                                  stride=2 if (g > 0 and i == 0) else 1,
                                  activate_before_residual=(g == 0 and i == 0)))
    self.blocks = nn.Sequential(*blocks)
    self.bn = nn.BatchNorm2d(channels[3], momentum=0.001, eps=0.001)
    self.fc = nn.Linear(channels[3], num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='leaky_relu')
      elif isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        nn.init.zeros_(m.bias)

  def forward(self, x):
    x = self.blocks(self.stem(x))
    x = F.leaky_relu(self.bn(x), 0.1)
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet18Cifar(nn.Module):
  """ResNet-18 with the CIFAR stem (3x3 conv, no max-pool) and a SimCLR projection head."""

  def __init__(self, projection_dim: int = 128):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                              nn.ReLU(inplace=True))
    layers, cin = [], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
      layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
      cin = cout
    self.layers = nn.Sequential(*layers)
    self.projector = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512),
                                   nn.ReLU(inplace=True), nn.Linear(512, projection_dim))
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

  def forward(self, x):
    h = torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)
    return self.projector(h)


# ---------------------------------------------------------------------------
# PIL augmentations
# ---------------------------------------------------------------------------


def weak_pil(img: Image.Image, rng: random.Random, pad: int = 4) -> Image.Image:
  """Horizontal flip with p = 0.5, then a random shift of up to ``pad`` px, reflect-filled."""
  if rng.random() < 0.5:
    img = ImageOps.mirror(img)
  a = np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
  top, left = rng.randint(0, 2 * pad), rng.randint(0, 2 * pad)
  return Image.fromarray(a[top:top + img.height, left:left + img.width])


def _affine(img, matrix):
  return img.transform(img.size, Image.AFFINE, matrix, resample=Image.NEAREST, fillcolor=GRAY)


def _signed(level, rng):
  return level if rng.random() < 0.5 else -level


# name -> fn(img, level in [0, 1), rng); ranges as in FixMatch's code (see sslx.augment).
RANDAUGMENT_OPS = {
    'Identity': lambda img, l, r: img,
    'AutoContrast': lambda img, l, r: ImageOps.autocontrast(img),
    'Equalize': lambda img, l, r: ImageOps.equalize(img),
    'Posterize': lambda img, l, r: ImageOps.posterize(img, 4 - int(4 * l)),
    'Solarize': lambda img, l, r: ImageOps.solarize(img, int(256 * (1 - l))),
    'Brightness': lambda img, l, r: ImageEnhance.Brightness(img).enhance(0.1 + 1.8 * l),
    'Color': lambda img, l, r: ImageEnhance.Color(img).enhance(0.1 + 1.8 * l),
    'Contrast': lambda img, l, r: ImageEnhance.Contrast(img).enhance(0.1 + 1.8 * l),
    'Sharpness': lambda img, l, r: ImageEnhance.Sharpness(img).enhance(0.1 + 1.8 * l),
    'Rotate': lambda img, l, r: img.rotate(_signed(30 * l, r), resample=Image.NEAREST,
                                           fillcolor=GRAY),
    'ShearX': lambda img, l, r: _affine(img, (1, _signed(0.3 * l, r), 0, 0, 1, 0)),
    'ShearY': lambda img, l, r: _affine(img, (1, 0, 0, _signed(0.3 * l, r), 1, 0)),
    'TranslateX': lambda img, l, r: _affine(
        img, (1, 0, _signed(0.3 * l, r) * img.width, 0, 1, 0)),
    'TranslateY': lambda img, l, r: _affine(
        img, (1, 0, 0, 0, 1, _signed(0.3 * l, r) * img.height)),
}
_OP_LIST = list(RANDAUGMENT_OPS.values())


def strong_pil(img: Image.Image, rng: random.Random, num_ops: int = 2, op_prob: float = 0.5,
               cutout: float = 0.5) -> Image.Image:
  """FixMatch's strong view: weak, then RandAugment (random magnitudes), then Cutout."""
  img = weak_pil(img, rng)
  for _ in range(num_ops):
    op = rng.choice(_OP_LIST)
    if rng.random() < op_prob:
      img = op(img, rng.random(), rng)
  a = np.array(img)
  size = int(cutout * min(a.shape[:2]))
  cy, cx = rng.randrange(a.shape[0]), rng.randrange(a.shape[1])
  a[max(cy - size // 2, 0):cy + size // 2, max(cx - size // 2, 0):cx + size // 2] = GRAY
  return Image.fromarray(a)


def _crop_box(rng: random.Random, height: int, width: int, scale=(0.08, 1.0),
              ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop.get_params: 10 tries, then a centre crop."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return rng.randint(0, height - h), rng.randint(0, width - w), h, w
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def _hue(img: Image.Image, shift: float) -> Image.Image:
  h, s, v = img.convert('HSV').split()
  h = Image.fromarray((np.asarray(h).astype(np.int16) + int(shift * 255)).astype(np.uint8), 'L')
  return Image.merge('HSV', (h, s, v)).convert('RGB')


def simclr_pil(img: Image.Image, rng: random.Random, strength: float = 0.5) -> Image.Image:
  """SimCLR's CIFAR view: resized crop, flip, colour jitter (p 0.8), grayscale (p 0.2)."""
  top, left, h, w = _crop_box(rng, img.height, img.width)
  img = img.resize(img.size, Image.BILINEAR, box=(left, top, left + w, top + h))
  if rng.random() < 0.5:
    img = ImageOps.mirror(img)
  if rng.random() < 0.8:
    s = 0.8 * strength
    jitters = [
        lambda x: ImageEnhance.Brightness(x).enhance(rng.uniform(max(0, 1 - s), 1 + s)),
        lambda x: ImageEnhance.Contrast(x).enhance(rng.uniform(max(0, 1 - s), 1 + s)),
        lambda x: ImageEnhance.Color(x).enhance(rng.uniform(max(0, 1 - s), 1 + s)),
        lambda x: _hue(x, rng.uniform(-0.2 * strength, 0.2 * strength)),
    ]
    rng.shuffle(jitters)
    for jitter in jitters:
      img = jitter(img)
  if rng.random() < 0.2:
    img = img.convert('L').convert('RGB')
  return img


_MEAN = np.asarray(CIFAR_MEAN, np.float32).reshape(3, 1, 1)
_STD = np.asarray(CIFAR_STD, np.float32).reshape(3, 1, 1)


def to_tensor(img: Image.Image) -> torch.Tensor:
  """``ToTensor()`` + ``Normalize(mean, std)``: uint8 HWC -> float32 CHW."""
  a = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
  return torch.from_numpy((a - _MEAN) / _STD)


class AugmentedImages(torch.utils.data.Dataset):
  """uint8 images in memory; item i -> the requested views of image i (and its label)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, views: tuple[str, ...]):
    self.images, self.labels, self.views = images, labels, views
    self._rng = None

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    if self._rng is None:  # one generator per worker process, seeded by torch
      self._rng = random.Random(torch.initial_seed())
    img = Image.fromarray(self.images[i])
    fns = {'weak': weak_pil, 'strong': strong_pil, 'simclr': simclr_pil}
    return tuple(to_tensor(fns[v](img, self._rng)) for v in self.views) + (int(self.labels[i]),)


def make_loader(images, labels, views, batch_size: int, num_workers: int, seed: int,
                prefetch_factor: int = 2):
  dataset = AugmentedImages(images, labels, views)
  sampler = torch.utils.data.RandomSampler(
      dataset, replacement=True, num_samples=10**9,
      generator=torch.Generator().manual_seed(seed))
  kwargs = dict(prefetch_factor=prefetch_factor, persistent_workers=True) if num_workers else {}
  return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                     num_workers=num_workers, drop_last=True, **kwargs)


# ---------------------------------------------------------------------------
# Optimizers, schedule, EMA
# ---------------------------------------------------------------------------


def decay_groups(model: nn.Module, weight_decay: float):
  """Weight decay on conv/linear weights only (USB, solo-learn)."""
  decay = [p for n, p in model.named_parameters() if p.ndim > 1]
  rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
  return [dict(params=decay, weight_decay=weight_decay), dict(params=rest, weight_decay=0.0)]


class LARS(torch.optim.Optimizer):
  """LARS (You et al. 2017) as SimCLR uses it; groups with ``lars=False`` are plain SGD.

  ``d = g + wd * p``; ``d *= eta * |p| / |d|`` (adapted groups, both norms > 0);
  ``buf = momentum * buf + d``; ``p -= lr * buf``.
  """

  def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
               eta: float = 0.001):
    super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                  eta=eta, lars=True))

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      for p in group['params']:
        if p.grad is None:
          continue
        d = p.grad
        if group['weight_decay']:
          d = d.add(p, alpha=group['weight_decay'])
        if group['lars']:
          p_norm, d_norm = torch.norm(p), torch.norm(d)
          ratio = torch.where((p_norm > 0) & (d_norm > 0), group['eta'] * p_norm / d_norm,
                              torch.ones_like(p_norm))
          d = d.mul(ratio)
        state = self.state[p]
        buf = state.get('momentum_buffer')
        if buf is None:
          buf = state['momentum_buffer'] = torch.clone(d).detach()
        else:
          buf.mul_(group['momentum']).add_(d)
        p.add_(buf, alpha=-group['lr'])


class EMA:
  """Exponential moving average of the parameters (USB's ``EMA`` without the buffers)."""

  def __init__(self, model: nn.Module, decay: float):
    self.decay = decay
    self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

  @torch.no_grad()
  def update(self, model: nn.Module):
    for n, p in model.named_parameters():
      self.shadow[n].mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


class FixMatchStep:
  """USB-style FixMatch iteration: two loaders, one forward over [lb; ulb_w; ulb_s]."""

  images_per_step = property(lambda self: self.labeled_batch_size * (1 + 2 * self.ratio))

  def __init__(self, images, labels, *, labeled_batch_size=64, unlabeled_ratio=7,
               num_workers=1, width=2, threshold=0.95, num_steps=2**20, seed=0,
               channels_last=False):
    torch.manual_seed(seed)
    self.labeled_batch_size, self.ratio = labeled_batch_size, unlabeled_ratio
    self.model = WideResNet(num_classes=10, depth=28, width=width)
    self.channels_last = channels_last
    if channels_last:
      self.model = self.model.to(memory_format=torch.channels_last)
    self.model.train()
    self.optimizer = torch.optim.SGD(decay_groups(self.model, 5e-4), lr=0.03, momentum=0.9,
                                     nesterov=True)
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(
        self.optimizer, lambda k: math.cos(7 * math.pi * k / (16 * num_steps)))
    self.ema = EMA(self.model, 0.999)
    self.threshold = threshold
    self.labeled = iter(make_loader(images, labels, ('weak',), labeled_batch_size,
                                    num_workers, seed))
    self.unlabeled = iter(make_loader(images, labels, ('weak', 'strong'),
                                      labeled_batch_size * unlabeled_ratio, num_workers,
                                      seed + 1))

  def step(self) -> float:
    x_lb, y_lb = next(self.labeled)
    x_w, x_s, _ = next(self.unlabeled)
    n_lb, n_ulb = x_lb.shape[0], x_w.shape[0]
    x = torch.cat([x_lb, x_w, x_s])
    if self.channels_last:
      x = x.contiguous(memory_format=torch.channels_last)
    logits = self.model(x)
    logits_lb = logits[:n_lb]
    logits_w, logits_s = logits[n_lb:].split(n_ulb)
    sup = F.cross_entropy(logits_lb, y_lb)
    with torch.no_grad():
      confidence, pseudo = torch.softmax(logits_w.detach(), -1).max(-1)
      mask = (confidence >= self.threshold).float()
    unsup = (F.cross_entropy(logits_s, pseudo, reduction='none') * mask).mean()
    loss = sup + unsup
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    self.scheduler.step()
    self.ema.update(self.model)
    return float(loss.detach())


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
  """SimCLR's NT-Xent over 2N views (the usual PyTorch form)."""
  z = F.normalize(torch.cat([z1, z2]), dim=-1)
  n = z1.shape[0]
  logits = z @ z.T / temperature
  logits.fill_diagonal_(float('-inf'))
  targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
  return F.cross_entropy(logits, targets)


class SimCLRStep:
  """solo-learn-style SimCLR iteration: one loader yielding two views, LARS."""

  images_per_step = property(lambda self: 2 * self.batch_size)

  def __init__(self, images, labels, *, batch_size=256, num_workers=1, temperature=0.5,
               num_steps=10**5, seed=0, channels_last=False):
    torch.manual_seed(seed)
    self.batch_size, self.temperature = batch_size, temperature
    self.model = ResNet18Cifar(projection_dim=128)
    self.channels_last = channels_last
    if channels_last:
      self.model = self.model.to(memory_format=torch.channels_last)
    self.model.train()
    groups = decay_groups(self.model, 1e-6)
    groups[1]['lars'] = False  # biases and BN parameters: no decay, no adaptation
    self.optimizer = LARS(groups, lr=0.3 * batch_size / 256, momentum=0.9)
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(
        self.optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, num_steps) / num_steps)))
    self.loader = iter(make_loader(images, labels, ('simclr', 'simclr'), batch_size,
                                   num_workers, seed))

  def step(self) -> float:
    x1, x2, _ = next(self.loader)
    x = torch.cat([x1, x2])
    if self.channels_last:
      x = x.contiguous(memory_format=torch.channels_last)
    z1, z2 = self.model(x).split(x1.shape[0])
    loss = nt_xent(z1, z2, self.temperature)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    self.scheduler.step()
    return float(loss.detach())


def build(workload: str, images: np.ndarray, labels: np.ndarray, *, batch: int, workers: int,
          width: int = 2, threads: int = 2, channels_last: bool = False, seed: int = 0):
  """The reference step for ``workload`` ('fixmatch' | 'simclr'); sets torch's threads."""
  torch.set_num_threads(threads)
  if workload == 'fixmatch':
    return FixMatchStep(images, labels, labeled_batch_size=batch, num_workers=workers,
                        width=width, seed=seed, channels_last=channels_last)
  if workload == 'simclr':
    return SimCLRStep(images, labels, batch_size=batch, num_workers=workers, seed=seed,
                      channels_last=channels_last)
  raise ValueError(f'workload must be fixmatch or simclr, got {workload!r}')


def synthetic_cifar(n: int = 50_000, seed: int = 0):
  """Random uint8 images ``[n, 32, 32, 3]`` and labels (augmentation cost is data-blind)."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int64))


def main(args):
  images, labels = synthetic_cifar()
  batch = args.batch or (64 if args.workload == 'fixmatch' else 256)
  runner = build(args.workload, images, labels, batch=batch, workers=args.workers,
                 threads=args.threads, channels_last=args.channels_last)
  t0 = time.perf_counter()
  runner.step()
  first = time.perf_counter() - t0
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    runner.step()
    times.append(time.perf_counter() - t0)
  median = float(np.median(times))
  print(json.dumps(dict(workload=args.workload, batch=batch, first_step_s=round(first, 3),
                        median_step_s=round(median, 4),
                        images_per_s=round(runner.images_per_step / median, 1))))


if __name__ == '__main__':
  main(ARGS)
