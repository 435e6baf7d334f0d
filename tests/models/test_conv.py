"""sslx.models.conv: the batch-chunked convolution equals the plain one, values and grads."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx.models import conv as conv_lib


def _inputs(batch=10, layout='NHWC'):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, 6, 6, 3)).astype(np.float32)
  k = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
  if layout == 'NCHW':
    x = x.transpose(0, 3, 1, 2)
  return jnp.asarray(x), jnp.asarray(k)


@pytest.mark.parametrize('layout, strides', [('NHWC', (1, 1)), ('NCHW', (2, 2))])
def test_chunked_equals_plain_values_and_grads(layout, strides):
  x, k = _inputs(layout=layout)
  dims = (layout, 'HWIO', layout)

  def loss(fn, x, k):
    y = fn(x, k, strides, 'SAME', dimension_numbers=dims)
    return jnp.sum(jnp.sin(y)), y

  plain = jax.jit(jax.value_and_grad(
      lambda x, k: loss(lax.conv_general_dilated, x, k), argnums=(0, 1), has_aux=True))
  # chunks of 4 over 10 examples: 4 + 4 + 2, so the remainder path is exercised
  chunked = jax.jit(jax.value_and_grad(
      lambda x, k: loss(lambda *a, **kw: conv_lib.conv_general_dilated(*a, **kw, chunk=4), x, k),
      argnums=(0, 1), has_aux=True))
  (l0, y0), (dx0, dk0) = plain(x, k)
  (l1, y1), (dx1, dk1) = chunked(x, k)
  np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx1, dx0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk1, dk0, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(l1, l0, rtol=1e-5)


def test_chunked_program_has_one_conv_per_chunk():
  x, k = _inputs()
  fn = lambda chunk: jax.jit(lambda x, k: conv_lib.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'), chunk=chunk))
  count = lambda chunk: fn(chunk).lower(x, k).as_text().count('convolution')
  assert count(0) == 1
  assert count(10) == 1  # batch <= chunk: one plain convolution
  assert count(4) == 3


def test_auto_chunk_only_on_single_device_cpu():
  expected = (conv_lib.CPU_BATCH_CHUNK
              if jax.default_backend() == 'cpu' and jax.device_count() == 1 else 0)
  assert conv_lib._auto_chunk() == expected


@pytest.mark.parametrize('chunk', [-1, 2.5, True])
def test_bad_chunk_raises(chunk):
  x, k = _inputs()
  with pytest.raises(ValueError, match='chunk'):
    conv_lib.conv_general_dilated(x, k, (1, 1), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), chunk=chunk)
