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
used only on a single-device CPU backend: on GPU/TPU the vendor kernels need no help,
and on a multi-device mesh the batch is sharded, where slicing it would move data
between devices.
"""

from __future__ import annotations

import jax
from jax import lax
import jax.numpy as jnp

# Examples per chunk on CPU; 0 turns chunking off (benchmarks set it to compare).
CPU_BATCH_CHUNK = 64


def _auto_chunk() -> int:
  if jax.default_backend() == 'cpu' and jax.device_count() == 1:
    return CPU_BATCH_CHUNK
  return 0


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None,
                         *, chunk: int | None = None) -> jax.Array:
  """``lax.conv_general_dilated`` computed over batch chunks of ``chunk`` examples.

  Same arguments and result as :func:`jax.lax.conv_general_dilated`. ``chunk=None``
  picks :data:`CPU_BATCH_CHUNK` on a single-device CPU backend and no chunking
  elsewhere; a batch of at most ``chunk`` examples (or ``chunk=0``, or
  ``batch_group_count > 1``, which couples examples) is one plain convolution.
  Pass it to ``flax.linen.Conv(conv_general_dilated=...)``.

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
  dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  batch_axis, out_batch_axis = dims.lhs_spec[0], dims.out_spec[0]
  batch = lhs.shape[batch_axis]
  if chunk == 0 or batch <= chunk or batch_group_count != 1:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
  pieces = [
      lax.conv_general_dilated(
          lax.slice_in_dim(lhs, start, min(start + chunk, batch), axis=batch_axis), rhs,
          window_strides, padding, **kwargs)
      for start in range(0, batch, chunk)
  ]
  return jnp.concatenate(pieces, axis=out_batch_axis)
