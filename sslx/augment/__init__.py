"""On-device image augmentations, jittable and random per example.

Everything here runs inside ``jax.jit`` (the training step), on the whole
batch at once, with one PRNG key per call: every example gets its own draws
from it. Images are ``[batch, height, width, channels]`` with 1 or 3 channels,
either uint8 (0..255) or floating point in [0, 1]; each function returns the
same dtype, and the same shape unless asked for a crop size. Float images must
already be in [0, 1] (checked when concrete, i.e. outside ``jit``).

==================  ====================================================
:func:`weak`        FixMatch weak view: flip, reflect-padded shift
:func:`randaugment` FixMatch RandAugment (random magnitudes) + Cutout
:func:`strong`      FixMatch strong view: ``weak`` then ``randaugment``
:func:`simclr_view` SimCLR view: resized crop, flip, colour jitter, gray,
                    optional blur
==================  ====================================================

Example, inside a FixMatch step::

  key = jax.random.fold_in(base_key, step)
  weak_key, strong_key = jax.random.split(key)
  weak_view = augment.weak(weak_key, unlabeled)      # [448, 32, 32, 3]
  strong_view = augment.strong(strong_key, unlabeled)

The choices (op set, magnitude ranges, Cutout size, fill values) and the
sources they were checked against are in :mod:`sslx.augment.randaugment`;
the single-image reference ops are in :mod:`sslx.augment.ops`.
"""

from sslx.augment import ops
from sslx.augment.randaugment import RANDAUGMENT_OPS
from sslx.augment.randaugment import RandAugmentDraws
from sslx.augment.randaugment import draw_randaugment
from sslx.augment.randaugment import randaugment
from sslx.augment.randaugment import randaugment_from_draws
from sslx.augment.randaugment import randaugment_reference
from sslx.augment.randaugment import strong
from sslx.augment.simclr import simclr_view
from sslx.augment.weak import weak

__all__ = [
    'RANDAUGMENT_OPS',
    'RandAugmentDraws',
    'draw_randaugment',
    'ops',
    'randaugment',
    'randaugment_from_draws',
    'randaugment_reference',
    'simclr_view',
    'strong',
    'weak',
]
