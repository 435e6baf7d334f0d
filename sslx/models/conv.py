"""The convolution the CNN encoders use: ``lax.conv_general_dilated``, batch-chunked on CPU.

On XLA:CPU the cost of a convolution *per example* grows with the batch: its weight
gradient (a convolution that contracts over the batch) ran 3-4x slower per example
at batch 512 than at batch 64 on the project's 2-core CPU (``python
scripts/bench_step.py --workloads=conv --batch=512``), and WRN-28-2's forward +
backward on a FixMatch step's 960 images cost about twice the CPU time per image of
a 64-image batch. Running the convolution as a concatenation of independent
convolutions over chunks of ``CPU_BATCH_CHUNK`` examples keeps every piece at the
size XLA:CPU handles well; autodiff then computes the input gradient per chunk and
the weight gradient as a sum of per-chunk gradients. It measured 1.85x less CPU
time for that WRN-28-2 forward + backward (42 -> 23 CPU-s), on par with PyTorch's
oneDNN (BENCHMARKS.md).

The result is the same convolution (each output example depends only on its own
input example), up to float rounding in the weight gradient's summation order. It is
used only on the CPU backend: on GPU/TPU the vendor kernels need no help.

Data-parallel on several CPU devices (``sslx.devices.use_cpu_devices``: one XLA:CPU
device per core keeps both of a 2-core machine's cores busy, where one device keeps
about 1.3 busy), the trainer shards the batch in equal contiguous blocks, one per
device. Slicing the global batch into chunks would then move examples between
devices, so the batch is chunked *per shard*: viewed as ``[shards, batch / shards,
...]`` and sliced along the second axis, every chunk holds the same rows of each
device's block, and no example leaves its device.
"""

from __future__ import annotations

import jax
from jax import lax
import jax.numpy as jnp

# Examples per chunk on CPU; 0 turns chunking off (benchmarks set it to compare).
CPU_BATCH_CHUNK = 64


def _auto_chunk() -> int:
  return CPU_BATCH_CHUNK if jax.default_backend() == 'cpu' else 0


def _auto_shards() -> int:
  """The data-parallel shard count the trainer uses on this host: all its devices."""
  return jax.local_device_count()


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None,
                         *, chunk: int | None = None, shards: int | None = None) -> jax.Array:
  """``lax.conv_general_dilated`` computed over batch chunks of ``chunk`` examples.

  Same arguments and result as :func:`jax.lax.conv_general_dilated`. ``chunk=None``
  picks :data:`CPU_BATCH_CHUNK` on the CPU backend and no chunking elsewhere; a
  batch of at most ``chunk`` examples per shard (or ``chunk=0``, or
  ``batch_group_count > 1``, which couples examples) is one plain convolution.
  ``shards``: the batch is chunked within each of ``shards`` equal contiguous blocks
  (the per-device blocks of a data-parallel batch); ``None`` picks the number of local
  devices, and a batch that does not divide into ``shards`` blocks is chunked as one
  block. Pass it to ``flax.linen.Conv(conv_general_dilated=...)``.

  Example:
    >>> x = jnp.ones((130, 8, 8, 3))
    >>> k = jnp.ones((3, 3, 3, 4))
    >>> y = conv_general_dilated(x, k, (1, 1), 'SAME',
    ...                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'), chunk=64)
    >>> y.shape  # three chunks: 64 + 64 + 2
    (130, 8, 8, 4)
  """
  kwargs = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
                batch_group_count=batch_group_count, precision=precision,
                preferred_element_type=preferred_element_type)
  chunk = _auto_chunk() if chunk is None else chunk
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
    raise ValueError(f'`chunk` must be None or an int >= 0, got {chunk!r}.')
  shards = _auto_shards() if shards is None else shards
  if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
    raise ValueError(f'`shards` must be None or an int >= 1, got {shards!r}.')
  dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  batch_axis, out_batch_axis = dims.lhs_spec[0], dims.out_spec[0]
  batch = lhs.shape[batch_axis]
  if batch % shards:
    shards = 1
  local = batch // shards
  if chunk == 0 or local <= chunk or batch_group_count != 1:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
  # [.., batch, ..] -> [.., shards, local, ..]; chunk along `local`; each chunk back to
  # [.., shards * c, ..] (block s of the chunk = rows of shard s), convolve, undo.
  split = lambda x, axis: x.reshape(x.shape[:axis] + (shards, x.shape[axis] // shards)
                                    + x.shape[axis + 1:])
  merge = lambda x, axis: x.reshape(x.shape[:axis] + (x.shape[axis] * x.shape[axis + 1],)
                                    + x.shape[axis + 2:])
  blocks = split(lhs, batch_axis)
  pieces = []
  for start in range(0, local, chunk):
    piece = lax.slice_in_dim(blocks, start, min(start + chunk, local), axis=batch_axis + 1)
    out = lax.conv_general_dilated(merge(piece, batch_axis), rhs, window_strides, padding,
                                   **kwargs)
    pieces.append(split(out, out_batch_axis))
  return merge(jnp.concatenate(pieces, axis=out_batch_axis + 1), out_batch_axis)
