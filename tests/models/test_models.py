"""Tests for the model zoo (sslx/models).

Shapes and parameter counts are checked with ``jax.eval_shape`` (tracing only, no
compilation); numerical behaviour (BatchNorm, stop-gradient, bf16, agreement with
a plain ``jax.lax`` re-implementation) runs on tiny models and inputs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx.models import MODEL_NAMES
from sslx.models import count_params
from sslx.models import create_model
from sslx.models.resnet import ResNet
from sslx.models.heads import EncoderWithHeads
from sslx.models.wide_resnet import WideResNetBlock

KEY = jax.random.key(0)
# XLA:CPU compiles threefry-based initialisation of a few dozen layers in 10+ s;
# the 'rbg' generator compiles in a fraction of that and draws the same distributions.
INIT_KEY = jax.random.key(0, impl='rbg')


def init(model, images):
  # Jitted: one compilation instead of one per op.
  return jax.jit(functools.partial(model.init, train=False))(INIT_KEY, images)


def apply(model, variables, images, train, **kwargs):
  if train:
    kwargs.setdefault('mutable', ['batch_stats'])
  return jax.jit(functools.partial(model.apply, train=train, **kwargs))(variables, images)


def abstract_init(model, images):
  return jax.eval_shape(functools.partial(model.init, train=False), KEY, images)


def abstract_apply(model, variables, images, train):
  if train:
    return jax.eval_shape(
        functools.partial(model.apply, train=True, mutable=['batch_stats']), variables, images)
  return jax.eval_shape(functools.partial(model.apply, train=False), variables, images)


# --------------------------------------------------------------------------------------
# Names, arguments, errors.
# --------------------------------------------------------------------------------------


def test_model_names():
  assert set(MODEL_NAMES) == {
      'mlp', 'cnn', 'convnet', 'wrn28_2', 'wrn28_8', 'wide_resnet', 'resnet18', 'resnet50',
      'vit'}


def test_unknown_name_lists_known_names():
  with pytest.raises(ValueError, match=r"Unknown model name 'swin'.*wrn28_2.*resnet50"):
    create_model('swin', num_classes=10)


@pytest.mark.parametrize('name, kwargs, match', [
    ('cnn', {'num_classes': 0}, 'num_classes'),
    ('cnn', {'num_classes': 10, 'projection_dim': -1}, 'projection_dim'),
    ('cnn', {'num_classes': 10, 'projection_hidden_dim': -1}, 'projection_hidden_dim'),
    ('cnn', {'num_classes': 10, 'projection_layers': 0}, 'projection_layers'),
    ('cnn', {'num_classes': 10, 'hidden_dims': (8,)}, r"hidden_dims.*allowed: \['bn_epsilon'"),
    ('wrn28_2', {'num_classes': 10, 'width': 8}, r"'wrn28_2' fixes \['depth', 'width'\]"),
    ('wide_resnet', {'num_classes': 10, 'depth': 27}, r'`depth` must be 6 \* n \+ 4.*got 27'),
    ('wide_resnet', {'num_classes': 10, 'width': 0}, '`width` must be >= 1'),
    ('resnet18', {'num_classes': 10, 'stem': 'tiny'}, r"`stem` must be one of \('cifar', 'imagenet'\)"),
    ('mlp', {'num_classes': 10, 'hidden_dims': (8, 0)}, '`hidden_dims` must all be positive'),
    ('cnn', {'num_classes': 10, 'width': 0}, '`width` must be positive'),
    ('convnet', {'num_classes': 10, 'widths': ()}, r'`widths` must be a non-empty list.*\(\)'),
    ('convnet', {'num_classes': 10, 'widths': (8, 0)}, r'`widths` must be .*\(8, 0\)'),
    ('convnet', {'num_classes': 10, 'convs_per_stage': 0}, '`convs_per_stage` must be >= 1, got 0'),
    ('convnet', {'num_classes': 10, 'stem_stride': 3}, '`stem_stride` must be 1 or 2, got 3'),
])
def test_bad_arguments_raise_value_error(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    create_model(name, **kwargs)


@pytest.mark.parametrize('name', ['cnn', 'convnet', 'wrn28_2', 'resnet18'])
def test_convnets_reject_non_image_input(name):
  model = create_model(name, num_classes=10)
  with pytest.raises(ValueError, match=r'`images` must be a \[batch, height, width, channels\].*\(2, 64\)'):
    abstract_init(model, jnp.zeros((2, 64)))


# --------------------------------------------------------------------------------------
# Parameter counts against the reference implementations (eval_shape: no compile).
# --------------------------------------------------------------------------------------


def _wrn_reference_count(width, num_classes, blocks_per_group=4):
  """Parameters of FixMatch's TF WRN / USB's wrn_28_k, counted layer by layer.

  conv: k*k*in*out weights + out biases; BN: scale + offset; fc: in*out + out.
  """
  conv = lambda cin, cout, k: k * k * cin * cout + cout
  bn = lambda c: 2 * c
  total, cin = conv(3, 16, 3), 16
  for cout in (16 * width, 32 * width, 64 * width):
    for _ in range(blocks_per_group):
      total += bn(cin) + conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3)
      total += conv(cin, cout, 1) if cin != cout else 0
      cin = cout
  return total + bn(cin) + cin * num_classes + num_classes


def test_wrn_reference_counts_are_the_published_ones():
  # FixMatch paper: WRN-28-2 "1.5M parameters"; WRN-28-8 (CIFAR-100) 23.4M.
  assert _wrn_reference_count(2, 10) == 1_469_642
  assert _wrn_reference_count(8, 100) == 23_409_092


@pytest.mark.parametrize('name, num_classes, kwargs, image_shape, expected_params', [
    # 64*256+256 + 256*256+256 + 256*10+10.
    ('mlp', 10, {}, (8, 8, 1), 85_002),
    # convs 1*32*9 + 32*64*9 + 64*128*9, BN 2*(32+64+128), fc 128*10+10.
    ('cnn', 10, {}, (8, 8, 1), 94_186),
    # convs 1*32*9 + 32*32*9 + 32*64*9 + 64*64*9 + 64*128*9 + 128*128*9,
    # BN 2*(2*32 + 2*64 + 2*128), fc 128*10+10.
    ('convnet', 10, {'widths': (32, 64, 128)}, (28, 28, 1), 288_170),
    ('wrn28_2', 10, {}, (32, 32, 3), 1_469_642),
    ('wrn28_8', 100, {}, (32, 32, 3), 23_409_092),
    ('wide_resnet', 10, {'depth': 28, 'width': 2}, (32, 32, 3), 1_469_642),
    # torchvision.models.resnet18() / resnet50(): 1000 classes, ImageNet stem.
    ('resnet18', 1000, {'stem': 'imagenet'}, (64, 64, 3), 11_689_512),
    ('resnet50', 1000, {'stem': 'imagenet'}, (64, 64, 3), 25_557_032),
    # CIFAR stem: 3x3 stem conv (64*3*9 instead of 64*3*49), 10 classes.
    ('resnet18', 10, {}, (32, 32, 3), 11_173_962),
])
def test_param_counts(name, num_classes, kwargs, image_shape, expected_params):
  model = create_model(name, num_classes=num_classes, **kwargs)
  variables = abstract_init(model, jnp.zeros((1, *image_shape)))
  assert count_params(variables['params']) == expected_params


def test_wrn_shortcut_convs_only_where_shape_changes():
  variables = abstract_init(create_model('wrn28_2', num_classes=10), jnp.zeros((1, 32, 32, 3)))
  encoder = variables['params']['encoder']
  with_shortcut = sorted(k for k, v in encoder.items() if 'shortcut' in v)
  assert with_shortcut == ['group0_block0', 'group1_block0', 'group2_block0']
  assert encoder['group0_block0']['shortcut']['kernel'].shape == (1, 1, 16, 32)
  assert encoder['group2_block3']['conv2']['kernel'].shape == (3, 3, 128, 128)
  assert encoder['stem']['bias'].shape == (16,)  # TF/USB convs have biases.


def test_projection_head_param_shapes():
  model = create_model('wrn28_2', num_classes=10, projection_dim=64, projection_layers=3)
  params = abstract_init(model, jnp.zeros((1, 32, 32, 3)))['params']
  head = params['projection_head']
  assert head['dense0']['kernel'].shape == (128, 128)  # hidden dim defaults to features.
  assert 'bias' not in head['dense0']  # followed by BN.
  assert head['dense1']['kernel'].shape == (128, 128)
  assert head['dense2']['kernel'].shape == (128, 64)
  assert head['bn1']['scale'].shape == (128,)
  extra = 2 * (128 * 128 + 2 * 128) + 128 * 64 + 64
  assert count_params(params) == 1_469_642 + extra

  model = create_model('cnn', num_classes=10, projection_dim=16, projection_hidden_dim=32)
  head = abstract_init(model, jnp.zeros((1, 8, 8, 1)))['params']['projection_head']
  assert head['dense0']['kernel'].shape == (128, 32)
  assert head['dense1']['kernel'].shape == (32, 16)
  assert 'dense2' not in head


# --------------------------------------------------------------------------------------
# Output structure for every name, in train and eval mode, f32 and bf16 (no compile).
# --------------------------------------------------------------------------------------

_SHAPE_CASES = {
    'mlp': ({}, (8, 8, 1), 256),
    'cnn': ({}, (8, 8, 1), 128),
    'convnet': ({'widths': (8, 16), 'convs_per_stage': 1}, (28, 28, 1), 16),
    'wrn28_2': ({}, (16, 16, 3), 128),
    'wrn28_8': ({}, (16, 16, 3), 512),
    'wide_resnet': ({'depth': 16, 'width': 3}, (16, 16, 3), 192),
    'resnet18': ({'stem': 'imagenet'}, (16, 16, 3), 512),
    'resnet50': ({}, (8, 8, 3), 2048),
    'vit': ({'patch_size': 2, 'embed_dim': 16, 'depth': 1, 'num_heads': 2}, (8, 8, 1), 16),
}


def test_shape_cases_cover_every_name():
  assert set(_SHAPE_CASES) == set(MODEL_NAMES)


@pytest.mark.parametrize('name', sorted(_SHAPE_CASES))
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_outputs_keys_shapes_dtypes(name, dtype):
  kwargs, image_shape, feature_dim = _SHAPE_CASES[name]
  images = jnp.zeros((2, *image_shape))
  model = create_model(name, num_classes=7, projection_dim=5, dtype=dtype, **kwargs)
  variables = abstract_init(model, images)
  has_bn = name not in ('mlp', 'vit')
  # The projection head has BN, so every model with a head has batch_stats.
  assert set(variables) == {'params', 'batch_stats'}
  assert has_bn == ('encoder' in variables['batch_stats'])
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))

  outputs, updates = abstract_apply(model, variables, images, train=True)
  assert set(updates) == {'batch_stats'}
  all_outputs = [outputs]
  if dtype == jnp.float32:
    all_outputs.append(abstract_apply(model, variables, images, train=False))
  else:
    # The encoder really computes in `dtype` (its raw output, before the f32 cast).
    eval_outputs, state = jax.eval_shape(
        functools.partial(model.apply, train=False, capture_intermediates=True,
                          mutable=['intermediates']), variables, images)
    assert state['intermediates']['encoder']['__call__'][0].dtype == dtype
    all_outputs.append(eval_outputs)
  for out in all_outputs:
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        'logits': ((2, 7), jnp.float32),
        'features': ((2, feature_dim), jnp.float32),
        'projection': ((2, 5), jnp.float32),
    }


def test_mlp_without_head_has_no_batch_stats_and_takes_tabular_rows():
  model = create_model('mlp', num_classes=3, hidden_dims=(16, 8))
  rows = jnp.asarray(np.random.RandomState(0).randn(4, 6), jnp.float32)
  variables = init(model, rows)
  assert set(variables) == {'params'}
  outputs = apply(model, variables, rows, train=True, mutable=False)
  assert outputs['logits'].shape == (4, 3) and outputs['features'].shape == (4, 8)
  assert 'projection' not in outputs
  # Images are flattened: an [4, 2, 3, 1] batch is the same as the [4, 6] rows.
  np.testing.assert_allclose(
      apply(model, variables, rows.reshape(4, 2, 3, 1), train=False)['logits'],
      outputs['logits'], rtol=1e-6)


# --------------------------------------------------------------------------------------
# BatchNorm behaviour, stop-gradient, bf16 (tiny CNN; each function compiled once).
# --------------------------------------------------------------------------------------


class _Cnn:
  """A tiny CNN with a projection head, its variables, and jitted forward passes."""

  def __init__(self):
    self.model = create_model('cnn', num_classes=4, width=4, projection_dim=3)
    self.images = jnp.asarray(np.random.RandomState(1).normal(1.0, 2.0, (4, 8, 8, 1)),
                              jnp.float32)
    self.variables = _random_variables(self.model, self.images, seed=2)
    self.train_apply = jax.jit(functools.partial(
        self.model.apply, train=True, mutable=['batch_stats']))
    self.eval_apply = jax.jit(functools.partial(self.model.apply, train=False))


@pytest.fixture(scope='module')
def cnn():
  return _Cnn()


def test_bn_running_stats_update_in_train_mode(cnn):
  _, updates = cnn.train_apply(cnn.variables, cnn.images)
  assert set(updates['batch_stats']) == {'encoder', 'projection_head'}
  old = cnn.variables['batch_stats']['encoder']['bn0']
  new = updates['batch_stats']['encoder']['bn0']
  # bn0 normalises conv0's output (a bias-free 'SAME' conv of the images).
  conv0 = _conv(cnn.images, cnn.variables['params']['encoder']['conv0'], 1, 'SAME', bias=False)
  # SmallCNN's running-average decay is 0.9; flax keeps the biased batch variance.
  np.testing.assert_allclose(
      new['mean'], 0.9 * old['mean'] + 0.1 * conv0.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      new['var'], 0.9 * old['var'] + 0.1 * conv0.var(axis=(0, 1, 2)), rtol=1e-4)
  assert not np.allclose(new['mean'], old['mean'], atol=1e-3)


def test_eval_mode_uses_running_stats_not_batch_stats(cnn):
  # Same first example, different rest of the batch (same shapes: no recompilation).
  others = cnn.images.at[1:].set(-3.0 * cnn.images[1:] + 5.0)
  eval_a = cnn.eval_apply(cnn.variables, cnn.images)['logits']
  eval_b = cnn.eval_apply(cnn.variables, others)['logits']
  # Eval: each example is normalised with the running stats, independent of the batch.
  np.testing.assert_allclose(eval_a[0], eval_b[0], rtol=1e-5, atol=1e-6)
  # Train: normalised with the batch statistics, so the rest of the batch matters.
  train_a, updated = cnn.train_apply(cnn.variables, cnn.images)
  train_b, _ = cnn.train_apply(cnn.variables, others)
  assert not np.allclose(train_a['logits'][0], train_b['logits'][0], atol=1e-3)
  # And eval mode reads the stored running statistics.
  eval_updated = cnn.eval_apply({**cnn.variables, **updated}, cnn.images)['logits']
  assert not np.allclose(eval_updated, eval_a, atol=1e-3)


def test_stop_gradient_classifier():
  # An MLP encoder keeps the gradient compile cheap; the wrapper is the same for all.
  plain_model = create_model('mlp', num_classes=3, hidden_dims=(8,), projection_dim=2)
  probe_model = plain_model.clone(stop_gradient_classifier=True)
  images = jnp.asarray(np.random.RandomState(0).randn(4, 3, 3, 1), jnp.float32)
  variables = _random_variables(plain_model, images, seed=3)

  def grads_and_outputs(params):
    # One forward per model; a vector-Jacobian product per loss d sum(out**2) / d params.
    results = {}
    for name, model, keys in (('plain', plain_model, ('logits',)),
                              ('probe', probe_model, ('logits', 'projection'))):
      forward = lambda params, model=model: model.apply(
          {**variables, 'params': params}, images, train=True, mutable=['batch_stats'])[0]
      outputs, vjp = jax.vjp(forward, params)
      for key in keys:
        cotangent = {k: 2 * v if k == key else jnp.zeros_like(v) for k, v in outputs.items()}
        results[name, key] = vjp(cotangent)[0]
      results[name, 'outputs'] = outputs
    return results

  results = jax.jit(grads_and_outputs)(variables['params'])
  l1 = lambda tree: float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(tree)))
  # Logits-only loss: the probe's encoder gets exactly zero gradient, the plain one not.
  assert l1(results['probe', 'logits']['encoder']) == 0.0
  assert l1(results['plain', 'logits']['encoder']) > 0.0
  # The classifier itself trains either way; the projection still trains the encoder.
  assert l1(results['probe', 'logits']['classifier']) > 0.0
  assert l1(results['probe', 'projection']['encoder']) > 0.0
  # The flag changes gradients only, never values.
  for key in ('logits', 'features', 'projection'):
    np.testing.assert_array_equal(results['plain', 'outputs'][key],
                                  results['probe', 'outputs'][key])


def test_bfloat16_compute_float32_outputs(cnn):
  bf16_model = cnn.model.clone(dtype=jnp.bfloat16,
                               encoder=cnn.model.encoder.clone(dtype=jnp.bfloat16))
  # Parameters do not depend on the compute dtype (float32 checked in the shape tests).
  outputs, updates = jax.jit(functools.partial(
      bf16_model.apply, train=True, mutable=['batch_stats']))(cnn.variables, cnn.images)
  assert all(v.dtype == jnp.float32 for v in outputs.values())
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(updates))
  # Same parameters in float32: close, but not bit-identical (bf16 really used).
  f32_outputs, _ = cnn.train_apply(cnn.variables, cnn.images)
  np.testing.assert_allclose(outputs['logits'], f32_outputs['logits'], atol=0.1, rtol=0.05)
  assert not np.array_equal(outputs['logits'], f32_outputs['logits'])


def test_create_model_bf16_reaches_the_encoder():
  model = create_model('cnn', num_classes=2, dtype=jnp.bfloat16)
  assert isinstance(model, EncoderWithHeads)
  assert model.dtype == jnp.bfloat16 and model.encoder.dtype == jnp.bfloat16


# --------------------------------------------------------------------------------------
# Agreement with plain jax.lax re-implementations of the reference architectures.
# --------------------------------------------------------------------------------------


def _conv(x, p, stride, padding, bias=True):
  y = jax.lax.conv_general_dilated(x, p['kernel'], (stride, stride), padding,
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + p['bias'] if bias else y


def _bn(x, p, stats, eps):
  return (x - stats['mean']) / jnp.sqrt(stats['var'] + eps) * p['scale'] + p['bias']


def _random_variables(model, images, seed):
  """Random values for every variable, without compiling an init: kernels
  N(0, 1/fan_in), BN scales/offsets/running stats away from 1/0 so every term counts."""
  shapes = abstract_init(model, images)
  leaves, treedef = jax.tree.flatten_with_path(shapes)
  rng = np.random.RandomState(seed)
  values = []
  for path, leaf in leaves:
    last = path[-1].key
    if last == 'kernel':
      value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape)
    elif last == 'var':
      value = rng.uniform(0.5, 2.0, leaf.shape)
    elif last == 'scale':
      value = rng.normal(1.0, 0.3, leaf.shape)
    else:  # biases, BN offsets, running means
      value = rng.normal(0.0, 0.3, leaf.shape)
    values.append(jnp.asarray(value, jnp.float32))
  return jax.tree.unflatten(treedef, values)


def _wrn_reference(variables, images, depth, width):
  """FixMatch's libml/models.py ResNet.classifier, written with jax.lax."""
  p, s = variables['params']['encoder'], variables['batch_stats']['encoder']
  act = lambda x: jnp.where(x >= 0, x, 0.1 * x)
  bn = functools.partial(_bn, eps=1e-3)
  x = _conv(images, p['stem'], 1, 'SAME')
  for scale, filters in enumerate((16 * width, 32 * width, 64 * width)):
    for i in range((depth - 4) // 6):
      q, st = p[f'group{scale}_block{i}'], s[f'group{scale}_block{i}']
      stride = 2 if (scale > 0 and i == 0) else 1
      x0 = x
      x = act(bn(x0, q['bn1'], st['bn1']))
      if scale == 0 and i == 0:  # activate_before_residual
        x0 = x
      x = _conv(x, q['conv1'], stride, 'SAME')
      x = act(bn(x, q['bn2'], st['bn2']))
      x = _conv(x, q['conv2'], 1, 'SAME')
      if x0.shape[-1] != filters:
        x0 = _conv(x0, q['shortcut'], stride, 'SAME')
      x = x0 + x
  features = act(bn(x, p['final_bn'], s['final_bn'])).mean(axis=(1, 2))
  c = variables['params']['classifier']
  return features, features @ c['kernel'] + c['bias']


def test_wide_resnet_matches_reference_forward_and_bn_momentum():
  depth, width = 10, 2
  model = create_model('wide_resnet', num_classes=3, depth=depth, width=width)
  images = jax.random.normal(jax.random.key(2), (3, 8, 8, 3))
  variables = _random_variables(model, images, seed=0)
  outputs = jax.jit(functools.partial(model.apply, train=False))(variables, images)
  features, logits = jax.jit(_wrn_reference, static_argnums=(2, 3))(
      variables, images, depth, width)
  np.testing.assert_allclose(outputs['features'], features, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(outputs['logits'], logits, rtol=1e-4, atol=1e-4)

  # Train mode: running averages move by (1 - 0.999) towards the batch statistics.
  _, updates = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))(
      variables, images)
  stem_out = _conv(images, variables['params']['encoder']['stem'], 1, 'SAME')
  old = variables['batch_stats']['encoder']['group0_block0']['bn1']
  new = updates['batch_stats']['encoder']['group0_block0']['bn1']
  np.testing.assert_allclose(
      new['mean'], 0.999 * old['mean'] + 0.001 * stem_out.mean(axis=(0, 1, 2)), atol=1e-5)


def test_wide_resnet_init_is_fixmatch():
  # One block (two convs + shortcut) keeps the init compile small.
  block = WideResNetBlock(features=128, strides=2)
  params = init(block, jnp.zeros((1, 4, 4, 64)))['params']
  # N(0, 2 / (k * k * out_channels)), untruncated, zero biases.
  for name, fan_out in (('conv2', 9 * 128), ('shortcut', 128)):
    kernel, std = params[name]['kernel'], np.sqrt(2 / fan_out)
    assert abs(float(kernel.std()) - std) < 0.05 * std, name
    if name == 'conv2':  # 147k draws: a truncated normal would stop at 2 std.
      assert float(jnp.abs(kernel).max()) > 3.0 * std
    np.testing.assert_array_equal(params[name]['bias'], 0.0)


def _resnet_reference(variables, images, stage_sizes, block, stem, width):
  """torchvision's ResNet (v1.5), eval mode, written with jax.lax."""
  p, s = variables['params']['encoder'], variables['batch_stats']['encoder']
  bn = functools.partial(_bn, eps=1e-5)
  conv = lambda x, q, stride, pad: _conv(x, q, stride, [(pad, pad), (pad, pad)], bias=False)
  relu = jax.nn.relu
  if stem == 'imagenet':
    x = relu(bn(conv(images, p['stem_conv'], 2, 3), p['stem_bn'], s['stem_bn']))
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                              [(0, 0), (1, 1), (1, 1), (0, 0)])
  else:
    x = relu(bn(conv(images, p['stem_conv'], 1, 1), p['stem_bn'], s['stem_bn']))
  for stage, n in enumerate(stage_sizes):
    for i in range(n):
      q, st = p[f'stage{stage}_block{i}'], s[f'stage{stage}_block{i}']
      stride = 2 if (stage > 0 and i == 0) else 1
      planes = width * 2**stage
      if block == 'basic':
        y = relu(bn(conv(x, q['conv1'], stride, 1), q['bn1'], st['bn1']))
        y = bn(conv(y, q['conv2'], 1, 1), q['bn2'], st['bn2'])
        out_planes = planes
      else:
        y = relu(bn(conv(x, q['conv1'], 1, 0), q['bn1'], st['bn1']))
        y = relu(bn(conv(y, q['conv2'], stride, 1), q['bn2'], st['bn2']))
        y = bn(conv(y, q['conv3'], 1, 0), q['bn3'], st['bn3'])
        out_planes = 4 * planes
      shortcut = x
      if stride != 1 or x.shape[-1] != out_planes:
        shortcut = bn(conv(x, q['shortcut_conv'], stride, 0), q['shortcut_bn'], st['shortcut_bn'])
      x = relu(shortcut + y)
  return x.mean(axis=(1, 2))


@pytest.mark.parametrize('block, stem', [('basic', 'imagenet'), ('bottleneck', 'cifar')])
def test_resnet_matches_reference_forward(block, stem):
  stage_sizes, width = (2, 1), 4
  model = EncoderWithHeads(
      encoder=ResNet(stage_sizes=stage_sizes, block=block, stem=stem, width=width),
      num_classes=3)
  images = jax.random.normal(jax.random.key(3), (2, 12, 12, 3))
  variables = _random_variables(model, images, seed=1)
  outputs = apply(model, variables, images, train=False)
  features = jax.jit(_resnet_reference, static_argnums=(2, 3, 4, 5))(
      variables, images, stage_sizes, block, stem, width)
  np.testing.assert_allclose(outputs['features'], features, rtol=1e-4, atol=1e-4)
