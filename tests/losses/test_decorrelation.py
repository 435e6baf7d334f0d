"""Tests for sslx.losses.decorrelation (Barlow Twins, VICReg).

Each loss against its official PyTorch formula rewritten in float64 numpy, hand values,
jit == eager, gradients, invariances, errors; and one child process with 4 simulated CPU
devices checking that `axis_name` inside `jax.shard_map` gives the single-device value
and gradient of the whole batch.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sslx.losses import barlow_twins_loss, vicreg_loss
from sslx.losses.decorrelation import cross_correlation, vicreg_terms


def _views(n=12, d=6, seed=0):
  rng = np.random.default_rng(seed)
  z1 = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
  z2 = z1 + 0.6 * rng.normal(size=(n, d))
  return z1.astype(np.float32), z2.astype(np.float32)


def _official_barlow(z1, z2, lambd):
  """barlowtwins main.py: c = bn(z1).T @ bn(z2) / N (BatchNorm1d(affine=False), train mode:
  biased variance, eps 1e-5); on_diag (diag(c) - 1)^2 summed, off_diag c^2 summed."""
  def bn(z):
    z = np.asarray(z, np.float64)
    return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)  # np.var is the biased variance
  c = bn(z1).T @ bn(z2) / len(z1)
  on_diag = ((np.diagonal(c) - 1) ** 2).sum()
  off_diag = (c[~np.eye(len(c), dtype=bool)] ** 2).sum()
  return on_diag + lambd * off_diag


@pytest.fixture(scope="module")
def jit_barlow():
  return jax.jit(lambda a, b, lam: barlow_twins_loss(a, b, lambda_offdiag=lam))


def test_barlow_twins_matches_the_official_formula(jit_barlow):
  for seed, lam in ((0, 0.0051), (1, 0.5), (2, 0.0)):
    z1, z2 = _views(seed=seed)
    np.testing.assert_allclose(jit_barlow(z1, z2, lam), _official_barlow(z1, z2, lam), rtol=2e-5)
  z1, z2 = _views()
  np.testing.assert_allclose(barlow_twins_loss(z1, z2), _official_barlow(z1, z2, 0.0051),
                             rtol=2e-5)  # eager, default lambda
  np.testing.assert_allclose(jit_barlow(z1, z2, 0.0051), barlow_twins_loss(z1, z2), rtol=1e-6)


def test_barlow_twins_hand_values(jit_barlow):
  eps = 1e-5
  # Two perfectly anti-correlated units, identical views: C = [[1, -1], [-1, 1]] / (1 + eps).
  z = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
  np.testing.assert_allclose(cross_correlation(z, z), np.array([[1, -1], [-1, 1]]) / (1 + eps),
                             rtol=1e-6)
  expected = 2 * (1 - 1 / (1 + eps)) ** 2 + 0.25 * 2 / (1 + eps) ** 2
  np.testing.assert_allclose(jit_barlow(z, z, 0.25), expected, rtol=1e-6)
  # A constant unit standardises to 0: its diagonal entry costs (1 - 0)^2 = 1.
  z = jnp.array([[1.0, 5.0], [-1.0, 5.0], [3.0, 5.0]])
  np.testing.assert_allclose(jit_barlow(z, z, 1.0), (1 - 1 / (1 + eps / (8 / 3))) ** 2 + 1,
                             rtol=1e-5)


def test_barlow_twins_invariances_and_gradients(jit_barlow):
  z1, z2 = _views(seed=3)
  base = jit_barlow(z1, z2, 0.1)
  perm = np.random.default_rng(0).permutation(len(z1))
  np.testing.assert_allclose(jit_barlow(z1[perm], z2[perm], 0.1), base, rtol=1e-5)
  np.testing.assert_allclose(jit_barlow(z2, z1, 0.1), base, rtol=1e-5)  # C -> C^T
  # Per-unit affine maps are standardised away (up to the BatchNorm eps).
  np.testing.assert_allclose(jit_barlow(3 * z1 + 2, z2 - 1, 0.1), base, rtol=1e-4)
  assert abs(float(jit_barlow(z1[perm], z2, 0.1) - base)) > 1e-1  # pairs matter
  check_grads(lambda a, b: barlow_twins_loss(a, b, lambda_offdiag=0.1), (z1, z2), order=1,
              modes=["rev"], atol=1e-2, rtol=1e-2)
  # A constant (collapsed) unit: finite gradients (eps keeps the rsqrt finite).
  grads = jax.grad(barlow_twins_loss, argnums=(0, 1))(jnp.asarray(z1).at[:, 0].set(1.0), z2)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  got = barlow_twins_loss(z1.astype(jnp.bfloat16), z2.astype(jnp.bfloat16))
  assert got.dtype == jnp.float32


def _official_vicreg(x, y, sim, std, cov):
  """main_vicreg.py: mse; x - mean; sqrt(unbiased var + 1e-4); relu(1 - std) means / 2;
  cov = x.T @ x / (N - 1); off-diagonal squares summed / D, for both views."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n, d = x.shape
  repr_loss = ((x - y) ** 2).mean()
  x, y = x - x.mean(0), y - y.mean(0)
  std_x, std_y = np.sqrt(x.var(0, ddof=1) + 1e-4), np.sqrt(y.var(0, ddof=1) + 1e-4)
  std_loss = np.maximum(0, 1 - std_x).mean() / 2 + np.maximum(0, 1 - std_y).mean() / 2
  off = ~np.eye(d, dtype=bool)
  cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)
  cov_loss = (cov_x[off] ** 2).sum() / d + (cov_y[off] ** 2).sum() / d
  return sim * repr_loss + std * std_loss + cov * cov_loss


@pytest.fixture(scope="module")
def jit_vicreg():
  return jax.jit(lambda a, b, s, v, c: vicreg_loss(a, b, sim_coeff=s, std_coeff=v, cov_coeff=c))


def test_vicreg_matches_the_official_formula(jit_vicreg):
  for seed, coeffs in ((0, (25.0, 25.0, 1.0)), (1, (1.0, 0.0, 0.0)), (2, (0.0, 1.0, 0.0)),
                       (3, (0.0, 0.0, 1.0))):
    z1, z2 = _views(seed=seed)
    z1 = z1 * np.float32(0.3)  # some units below std 1, so the hinge is active
    np.testing.assert_allclose(jit_vicreg(z1, z2, *coeffs), _official_vicreg(z1, z2, *coeffs),
                               rtol=2e-5, err_msg=str(coeffs))
  z1, z2 = _views()
  np.testing.assert_allclose(vicreg_loss(z1, z2), _official_vicreg(z1, z2, 25, 25, 1), rtol=2e-5)
  np.testing.assert_allclose(jit_vicreg(z1, z2, 25.0, 25.0, 1.0), vicreg_loss(z1, z2), rtol=1e-6)


def test_vicreg_hand_values(jit_vicreg):
  # Unit 0 has unbiased variance 2 (std > 1: no hinge); unit 1 is constant (std 0.01:
  # hinge 0.99, mean over D = 2 units then / 2, for each view: 0.495 in all).
  z1 = jnp.array([[1.0, 0.0], [-1.0, 0.0]])
  z2 = z1 + jnp.array([0.0, 1.0])  # invariance: (0 + 1 + 0 + 1) / (N D = 4) = 0.5
  t = vicreg_terms(z1, z2)
  np.testing.assert_allclose([t["invariance"], t["variance"], t["covariance"]],
                             [0.5, 0.495, 0.0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jit_vicreg(z1, z2, 25.0, 25.0, 1.0), 25 * 0.5 + 25 * 0.495,
                             rtol=1e-6)
  # Two identical units: covariance [[2, 2], [2, 2]], off-diagonal 2 * 2^2 / D = 4 per view.
  z = jnp.array([[1.0, 1.0], [-1.0, -1.0]])
  np.testing.assert_allclose(jit_vicreg(z, z, 25.0, 25.0, 1.0), 8.0, rtol=1e-6)


def test_vicreg_invariances_and_gradients(jit_vicreg):
  z1, z2 = _views(seed=4)
  z1 = z1 * np.float32(0.3)
  base = jit_vicreg(z1, z2, 25.0, 25.0, 1.0)
  perm = np.random.default_rng(1).permutation(len(z1))
  np.testing.assert_allclose(jit_vicreg(z1[perm], z2[perm], 25.0, 25.0, 1.0), base, rtol=1e-5)
  np.testing.assert_allclose(jit_vicreg(z2, z1, 25.0, 25.0, 1.0), base, rtol=1e-5)
  assert abs(float(jit_vicreg(z1[perm], z2, 25.0, 25.0, 1.0) - base)) > 1e-1  # pairs matter
  # The loss is float32 whatever the input: a finite difference over check_grads' default
  # step is float32 rounding (1.4% off on jax 0.10.2). A 1e-2 step keeps every unit's std
  # (0.2-2.4) on one side of the hinge at 1 and agrees to 1e-4 here.
  check_grads(lambda a, b: vicreg_loss(a, b), (z1, z2), order=1, modes=["rev"],
              atol=2e-3, rtol=2e-3, eps=1e-2)
  # Collapsed embeddings: the sqrt stays differentiable (the 1e-4) and the hinge pushes out.
  grads = jax.grad(vicreg_loss, argnums=(0, 1))(jnp.ones((6, 4)), jnp.ones((6, 4)))
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  assert vicreg_loss(z1.astype(jnp.bfloat16), z2).dtype == jnp.float32


@pytest.mark.parametrize("call, match", [
    (lambda: barlow_twins_loss(jnp.ones((4, 3)), jnp.ones((4, 2))),
     r"`z1` and `z2` must have the same shape, got \(4, 3\) and \(4, 2\)"),
    (lambda: barlow_twins_loss(jnp.ones((4,)), jnp.ones((4,))), r"`z1` must have rank 2"),
    (lambda: barlow_twins_loss(jnp.ones((4, 3), jnp.int32), jnp.ones((4, 3), jnp.int32)),
     r"`z1` must be a floating-point array, got dtype int32"),
    (lambda: barlow_twins_loss(jnp.ones((1, 3)), jnp.ones((1, 3))),
     r"batch of at least 2, got `z1` of shape \(1, 3\)"),
    (lambda: barlow_twins_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), lambda_offdiag=-0.1),
     r"`lambda_offdiag` must be a scalar >= 0"),
    (lambda: vicreg_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), std_coeff=-1.0),
     r"`std_coeff` must be a scalar >= 0"),
    (lambda: vicreg_loss(jnp.ones((1, 3)), jnp.ones((1, 3))),
     r"vicreg_loss: batch statistics need a batch of at least 2"),
    (lambda: vicreg_loss(jnp.ones((4, 3)), jnp.ones((5, 3))), r"must have the same shape"),
])
def test_errors_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# ---------------------------------------------------------------------------
# Multi-device: one child process with 4 simulated CPU devices.
# ---------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp
    from jax.sharding import PartitionSpec as P
    import sslx.losses.decorrelation as dec

    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    def maxdiff(a, b):
      return max(float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
                 for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    k = jax.random.split(jax.random.key(0), 4)
    scale = jnp.linspace(0.5, 3.0, 8)
    z1 = jax.random.normal(k[0], (16, 8)) * scale + 1.0
    z2 = z1 + 0.5 * jax.random.normal(k[1], (16, 8))
    x1 = jax.random.normal(k[2], (16, 6))
    x2 = x1 + 0.3 * jax.random.normal(k[3], (16, 6))
    w = jax.random.normal(k[0], (6, 8))
    out = {}
    losses = {'barlow_twins': lambda a, b, ax=None: dec.barlow_twins_loss(
        a, b, lambda_offdiag=0.1, axis_name=ax)}
    if hasattr(dec, 'vicreg_loss'):
      losses['vicreg'] = lambda a, b, ax=None: dec.vicreg_loss(a, b, axis_name=ax)
    for name, fn in losses.items():
      sharded = jax.jit(jax.shard_map(lambda a, b: fn(a, b, 'data'), mesh=mesh,
                                      in_specs=(P('data'), P('data')), out_specs=P()))
      local = jax.jit(jax.shard_map(lambda a, b: fn(a, b)[None], mesh=mesh,
                                    in_specs=(P('data'), P('data')), out_specs=P('data')))
      single = jax.jit(fn)
      out[name + '_value'] = maxdiff(sharded(z1, z2), single(z1, z2))
      out[name + '_local_differs'] = maxdiff(local(z1, z2).mean(), single(z1, z2))
      out[name + '_grad_z'] = maxdiff(jax.jit(jax.grad(sharded, argnums=(0, 1)))(z1, z2),
                                      jax.jit(jax.grad(single, argnums=(0, 1)))(z1, z2))
      # A training step: gradient w.r.t. replicated parameters inside shard_map.
      def step(a, b, w):
        return jax.grad(lambda w: fn(a @ w, b @ w, 'data'))(w)
      g = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P('data'), P('data'), P()),
                                out_specs=P()))(x1, x2, w)
      g1 = jax.jit(jax.grad(lambda w: fn(x1 @ w, x2 @ w)))(w)
      out[name + '_grad_params'] = maxdiff(g, g1)
      out[name + '_grad_scale'] = float(jnp.max(jnp.abs(g1)))
      out[name + '_value_scale'] = float(single(z1, z2))
    print('RESULT' + json.dumps(out))
""")


@pytest.fixture(scope="module")
def multi_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_multi_device_equals_the_whole_batch(multi_device, name):
  scale = multi_device[f"{name}_value_scale"]
  assert multi_device[f"{name}_value"] < 1e-5 * max(1.0, scale)
  # Without axis_name each device standardises its own 4 rows: a different loss.
  assert multi_device[f"{name}_local_differs"] > 1e-2
  assert multi_device[f"{name}_grad_z"] < 1e-5
  assert multi_device[f"{name}_grad_scale"] > 1e-3
  assert multi_device[f"{name}_grad_params"] < 1e-5 * max(1.0, multi_device[f"{name}_grad_scale"])
