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


def test_auto_chunk_only_on_cpu():
  expected = conv_lib.CPU_BATCH_CHUNK if jax.default_backend() == 'cpu' else 0
  assert conv_lib._auto_chunk() == expected


@pytest.mark.parametrize('shards', [2, 5, 4])  # 4 does not divide 10: one block
def test_per_shard_chunks_equal_plain_values_and_grads(shards):
  x, k = _inputs()
  dims = ('NHWC', 'HWIO', 'NHWC')

  def loss(fn, x, k):
    return jnp.sum(jnp.sin(fn(x, k, (1, 1), 'SAME', dimension_numbers=dims)))

  plain = jax.grad(lambda x, k: loss(lax.conv_general_dilated, x, k), argnums=(0, 1))
  sharded = jax.grad(lambda x, k: loss(
      lambda *a, **kw: conv_lib.conv_general_dilated(*a, **kw, chunk=3, shards=shards), x, k),
      argnums=(0, 1))
  for got, want in zip(jax.jit(sharded)(x, k), jax.jit(plain)(x, k)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_per_shard_chunks_stay_on_their_devices(tmp_path):
  """On 2 CPU devices with the batch sharded, chunking moves no example between devices:
  the compiled program has no all-gather / all-to-all / collective-permute."""
  import subprocess
  import sys
  code = """
import os
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from sslx.models import conv as conv_lib
mesh = Mesh(jax.devices(), ('data',))
x = jax.device_put(jnp.ones((16, 6, 6, 3)), NamedSharding(mesh, P('data')))
k = jnp.ones((3, 3, 3, 4))
def loss(x, k):
  y = conv_lib.conv_general_dilated(x, k, (1, 1), 'SAME',
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'), chunk=4)
  return jnp.sum(y ** 2)
fn = jax.jit(jax.grad(loss, argnums=(0, 1)), out_shardings=(NamedSharding(mesh, P('data')),
                                                           NamedSharding(mesh, P())))
hlo = fn.lower(x, k).compile().as_text()
print('convolutions', hlo.count('convolution('))
for op in ('all-gather', 'all-to-all', 'collective-permute'):
  print(op, hlo.count(op + '('))
"""
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       timeout=300, env=dict(__import__('os').environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 0, out.stderr[-2000:]
  counts = dict(line.rsplit(' ', 1) for line in out.stdout.split('\n') if line)
  # 8 examples per device in chunks of 4: 2 forward, 2 input-grad, 2 weight-grad convs
  assert int(counts['convolutions']) == 6, out.stdout
  for op in ('all-gather', 'all-to-all', 'collective-permute'):
    assert int(counts[op]) == 0, out.stdout


@pytest.mark.parametrize('shards', [0, 1.5, True])
def test_bad_shards_raises(shards):
  x, k = _inputs()
  with pytest.raises(ValueError, match='shards'):
    conv_lib.conv_general_dilated(x, k, (1, 1), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), shards=shards)


@pytest.mark.parametrize('chunk', [-1, 2.5, True])
def test_bad_chunk_raises(chunk):
  x, k = _inputs()
  with pytest.raises(ValueError, match='chunk'):
    conv_lib.conv_general_dilated(x, k, (1, 1), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), chunk=chunk)


@pytest.mark.parametrize('name, kwargs', [('cnn', {'width': 4, 'num_stages': 1}),
                                          ('convnet', {'widths': (4,), 'convs_per_stage': 1})])
def test_small_encoders_use_the_chunked_convolution(name, kwargs, monkeypatch):
  """SmallCNN and ConvNet go through conv_lib on CPU (their FixMatch-size weight
  gradients were superlinear in the batch without it): one conv per chunk."""
  if jax.default_backend() != 'cpu':
    pytest.skip('chunking is CPU-only')
  from sslx.models import create_model
  monkeypatch.setattr(conv_lib, 'CPU_BATCH_CHUNK', 4)
  model = create_model(name, num_classes=3, **kwargs)
  x = jnp.zeros((10, 8, 8, 1))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1], train=False))
  text = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).as_text()
  assert text.count('convolution') == 3  # 10 examples in chunks of 4: 4 + 4 + 2
