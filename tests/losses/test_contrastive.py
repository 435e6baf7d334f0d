"""Tests for sslx.losses.contrastive (NT-Xent, contrastive accuracy, diagnostics).

`test_multi_device_*` share one child process with 4 simulated CPU devices that
checks every `axis_name` code path of sslx.losses (nt_xent,
contrastive_accuracy and fixmatch_consistency) against the single-device value
on the gathered batch, and that importing the losses pulls in no TensorFlow,
tfds or orbax.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from sslx.losses.contrastive import (alignment, contrastive_accuracy, nt_xent,
                                     uniformity)


def _embeddings(n, d=8, seed=0, dtype=jnp.float32):
  k1, k2 = jax.random.split(jax.random.key(seed))
  z1 = jax.random.normal(k1, (n, d))
  z2 = z1 + 0.7 * jax.random.normal(k2, (n, d))  # correlated views
  return z1.astype(dtype), z2.astype(dtype)


def _np_nt_xent(z1, z2, temperature):
  """Reference: explicit loop over the 2N anchors, float64."""
  u = np.concatenate([z1, z2]).astype(np.float64)
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  n2 = len(u)
  n = n2 // 2
  losses = []
  for a in range(n2):
    positive = (a + n) % n2
    sims = np.array([u[a] @ u[b] / temperature for b in range(n2) if b != a])
    pos = u[a] @ u[positive] / temperature
    log_denominator = sims.max() + np.log(np.exp(sims - sims.max()).sum())
    losses.append(log_denominator - pos)
  return np.mean(losses)


@pytest.fixture(scope="module")
def jitted_nt_xent():
  # temperature is traced, so one compile serves every temperature.
  return jax.jit(lambda z1, z2, t: nt_xent(z1, z2, temperature=t))


def test_hand_computed_value(jitted_nt_xent):
  # Orthonormal examples, identical views, tau = 0.5: every anchor has the
  # positive at 1/tau = 2 and two negatives at 0.
  z = jnp.eye(2)
  np.testing.assert_allclose(jitted_nt_xent(z, z, 0.5),
                             np.log1p(2 * np.exp(-2.0)), rtol=1e-6)
  # N = 1: the only other embedding is the positive, so the loss is 0.
  np.testing.assert_allclose(
      jitted_nt_xent(jnp.array([[1.0, 2.0]]), jnp.array([[3.0, -1.0]]), 0.1),
      0.0, atol=1e-7)


def test_matches_float64_reference_loop(jitted_nt_xent):
  z1, z2 = _embeddings(5, d=3, seed=3)
  for t in (0.1, 0.7):
    np.testing.assert_allclose(jitted_nt_xent(z1, z2, t),
                               _np_nt_xent(z1, z2, t), rtol=1e-5)


@pytest.mark.parametrize("n", [1, 4, 13])
def test_agrees_with_optax_ntxent(jitted_nt_xent, n):
  z1, z2 = _embeddings(n, seed=n)
  embeddings = jnp.concatenate([z1, z2])
  labels = jnp.concatenate([jnp.arange(n), jnp.arange(n)])
  optax_ntxent = jax.jit(optax.losses.ntxent)
  for t in (0.05, 0.1, 0.5, 1.0):
    np.testing.assert_allclose(
        jitted_nt_xent(z1, z2, t), optax_ntxent(embeddings, labels, t),
        atol=1e-5, rtol=1e-5, err_msg=f"n={n}, temperature={t}")


def test_jit_matches_eager_and_pair_permutation_invariance(jitted_nt_xent):
  z1, z2 = _embeddings(6)
  eager = nt_xent(z1, z2, temperature=0.2)
  np.testing.assert_allclose(jitted_nt_xent(z1, z2, 0.2), eager, rtol=1e-6)
  perm = np.array([3, 0, 5, 1, 4, 2])
  np.testing.assert_allclose(jitted_nt_xent(z1[perm], z2[perm], 0.2), eager,
                             rtol=1e-5)
  # Swapping the two views is the same set of anchors.
  np.testing.assert_allclose(jitted_nt_xent(z2, z1, 0.2), eager, rtol=1e-5)
  # Permuting only one view breaks the pairs: a different loss.
  assert abs(jitted_nt_xent(z1[perm], z2, 0.2) - eager) > 1e-2
  # Invariant to the scale of each embedding (normalised inside).
  scale = jnp.arange(1.0, 7.0)[:, None]
  np.testing.assert_allclose(jitted_nt_xent(z1 * scale, z2, 0.2), eager,
                             rtol=1e-5)


def test_check_grads():
  z1, z2 = _embeddings(3, d=4, seed=1)
  check_grads(jax.jit(lambda a, b: nt_xent(a, b, temperature=0.5)), (z1, z2),
              order=1,
              modes=("fwd", "rev"), atol=2e-2, rtol=2e-2, eps=1e-2)


def test_numerically_safe_gradients(jitted_nt_xent):
  # A zero embedding and a tiny temperature: finite loss and gradients.
  z1, z2 = _embeddings(4, seed=2)
  z1 = z1.at[0].set(0.0)
  loss, grads = jax.jit(jax.value_and_grad(
      lambda a, b: nt_xent(a, b, temperature=0.01), argnums=(0, 1)))(z1, z2)
  assert np.isfinite(loss)
  assert all(np.isfinite(g).all() for g in grads)
  # Logits up to 1/tau = 1000 do not overflow (mismatched pairs, so the
  # loss is large, not ~0).
  z1, z2 = _embeddings(4, seed=5)
  z2 = z2[::-1]
  expected = _np_nt_xent(z1, z2, 1e-3)
  assert expected > 100
  np.testing.assert_allclose(jitted_nt_xent(z1, z2, 1e-3), expected,
                             rtol=1e-5)


def test_bfloat16_inputs_are_computed_in_float32(jitted_nt_xent):
  z1, z2 = _embeddings(6, dtype=jnp.bfloat16)
  got = jitted_nt_xent(z1, z2, 0.1)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
      got, _np_nt_xent(np.asarray(z1, np.float32), np.asarray(z2, np.float32),
                       0.1), rtol=1e-5)


def test_contrastive_accuracy():
  z = jnp.eye(3)
  np.testing.assert_allclose(contrastive_accuracy(z, z), 1.0)
  # Example 0's views point opposite ways, so each is closer to example 1:
  # anchors 0 and 3 miss; the other four hit.
  z1 = jnp.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
  z2 = jnp.array([[-1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(contrastive_accuracy(z1, z2), 4 / 6)
  assert contrastive_accuracy(z1, z2).dtype == jnp.float32


def _np_alignment(z1, z2, alpha):
  u = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
  v = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
  return np.mean(np.linalg.norm(u - v, axis=1) ** alpha)


def _np_uniformity(z, t):
  u = z / np.linalg.norm(z, axis=1, keepdims=True)
  i, j = np.triu_indices(len(u), k=1)  # torch.pdist's pairs
  return np.log(np.mean(np.exp(-t * np.sum((u[i] - u[j]) ** 2, axis=1))))


def test_alignment_and_uniformity_match_wang_isola_formulas():
  z1, z2 = _embeddings(7, d=5, seed=4)
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  jit_alignment = jax.jit(lambda a, b, alpha: alignment(a, b, alpha=alpha))
  jit_uniformity = jax.jit(lambda z, t: uniformity(z, t=t))
  for alpha in (1.0, 2.0, 3.0):
    np.testing.assert_allclose(jit_alignment(z1, z2, alpha),
                               _np_alignment(z1, z2, alpha), rtol=1e-5)
  for t in (0.5, 2.0, 10.0):
    np.testing.assert_allclose(jit_uniformity(z1, t), _np_uniformity(z1, t),
                               rtol=1e-5)
  # Hand values: antipodal pair; collapsed embeddings.
  np.testing.assert_allclose(uniformity(jnp.array([[1.0, 0], [-2.0, 0]])),
                             -8.0, rtol=1e-6)
  np.testing.assert_allclose(uniformity(jnp.ones((3, 2))), 0.0, atol=1e-6)
  np.testing.assert_allclose(
      alignment(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 3.0]])), 2.0,
      rtol=1e-6)


def test_alignment_gradient_finite_at_zero_distance():
  z = jnp.array([[1.0, 2.0], [0.5, -1.0]])
  grad_alignment = jax.jit(jax.grad(
      lambda a, alpha: alignment(a, z, alpha=alpha)))
  for alpha in (1.0, 2.0):
    assert np.isfinite(grad_alignment(z, alpha)).all()
  grad = jax.jit(jax.grad(uniformity))(jnp.ones((3, 2)))
  assert np.isfinite(grad).all()


@pytest.mark.parametrize("call, match", [
    (lambda: nt_xent(jnp.ones((4, 3)), jnp.ones((4, 3)), temperature=0.0),
     r"`temperature` must be > 0, got 0.0"),
    (lambda: nt_xent(jnp.ones((4, 3)), jnp.ones((4, 3)), temperature=-1.0),
     r"`temperature` must be > 0, got -1.0"),
    (lambda: nt_xent(jnp.ones((4, 3)), jnp.ones((5, 3))),
     r"`z1` and `z2` must have the same shape, got \(4, 3\) and \(5, 3\)"),
    (lambda: nt_xent(jnp.ones((4,)), jnp.ones((4,))),
     r"`z1` must have rank 2 \(\[batch, dim\]\), got shape \(4,\)"),
    (lambda: nt_xent(jnp.ones((4, 3), jnp.int32), jnp.ones((4, 3), jnp.int32)),
     r"`z1` must be a floating-point array, got dtype int32"),
    (lambda: nt_xent(jnp.ones((0, 3)), jnp.ones((0, 3))),
     r"batch of at least 1"),
    (lambda: contrastive_accuracy(jnp.ones((4, 3)), jnp.ones((4, 2))),
     r"`z1` and `z2` must have the same shape, got \(4, 3\) and \(4, 2\)"),
    (lambda: alignment(jnp.ones((4, 3)), jnp.ones((4, 3)), alpha=0.0),
     r"`alpha` must be > 0"),
    (lambda: uniformity(jnp.ones((1, 3))), r"at least 2 embeddings"),
    (lambda: uniformity(jnp.ones((2, 3)), t=-2.0), r"`t` must be > 0"),
    (lambda: uniformity(jnp.ones((2, 3), jnp.int8)),
     r"`z` must be a floating-point array, got dtype int8"),
])
def test_errors_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_traced_temperature_is_accepted():
  z1, z2 = _embeddings(4)
  grad_t = jax.jit(jax.grad(lambda t: nt_xent(z1, z2, temperature=t)))(0.3)
  assert np.isfinite(grad_t) and grad_t != 0


# ---------------------------------------------------------------------------
# Multi-device: one child process with 4 simulated CPU devices.
# ---------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, sys
    import sslx.losses.classification, sslx.losses.consistency
    import sslx.losses.contrastive
    heavy = sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'orbax')
                   if m in sys.modules)
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    from sslx.losses.contrastive import nt_xent, contrastive_accuracy
    from sslx.losses.consistency import fixmatch_consistency

    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ('data',),
                         axis_types=(jax.sharding.AxisType.Auto,))
    out = {'heavy_modules': heavy}
    def maxdiff(a, b):
      return max(float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
                 for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    k = jax.random.split(jax.random.key(0), 6)
    z1 = jax.random.normal(k[0], (16, 8))
    z2 = z1 + 0.5 * jax.random.normal(k[1], (16, 8))
    T = 0.2
    shard = lambda f, outs: jax.jit(jax.shard_map(
        f, mesh=mesh, in_specs=(P('data'), P('data')), out_specs=outs))

    # nt_xent value and gradients w.r.t. the sharded embeddings.
    f = shard(lambda a, b: nt_xent(a, b, temperature=T, axis_name='data'), P())
    single = jax.jit(lambda a, b: nt_xent(a, b, temperature=T))
    out['nt_xent_value'] = maxdiff(f(z1, z2), single(z1, z2))
    out['nt_xent_local_differs'] = maxdiff(
        shard(lambda a, b: nt_xent(a, b, temperature=T)[None], P('data'))(
            z1, z2).mean(), single(z1, z2))
    out['nt_xent_grad_z'] = maxdiff(
        jax.jit(jax.grad(f, argnums=(0, 1)))(z1, z2),
        jax.jit(jax.grad(single, argnums=(0, 1)))(z1, z2))

    # A user's training step: grad w.r.t. replicated params inside shard_map.
    x1 = jax.random.normal(k[2], (16, 6))
    x2 = x1 + 0.3 * jax.random.normal(k[3], (16, 6))
    w = jax.random.normal(k[4], (6, 8))
    def step(a, b, w):
      return jax.grad(lambda w: nt_xent(a @ w, b @ w, temperature=T,
                                        axis_name='data'))(w)
    g_shard = jax.jit(jax.shard_map(step, mesh=mesh,
        in_specs=(P('data'), P('data'), P()), out_specs=P()))(x1, x2, w)
    g_single = jax.jit(jax.grad(
        lambda w: nt_xent(x1 @ w, x2 @ w, temperature=T)))(w)
    out['nt_xent_grad_params'] = maxdiff(g_shard, g_single)
    out['grad_params_scale'] = float(jnp.max(jnp.abs(g_single)))

    # contrastive_accuracy: global fraction (views of 0-3 swapped -> misses).
    zb = z2.at[:4].set(-z2[:4])
    acc = shard(lambda a, b: contrastive_accuracy(a, b, axis_name='data'),
                P())(z1, zb)
    out['accuracy_value'] = maxdiff(acc, jax.jit(contrastive_accuracy)(z1, zb))
    out['accuracy'] = float(acc)

    # Plain jit over the mesh with globally sharded arrays, no axis_name.
    s = NamedSharding(mesh, P('data'))
    out['jit_sharded_value'] = maxdiff(
        single(jax.device_put(z1, s), jax.device_put(z2, s)),
        single(z1, z2))

    # fixmatch_consistency with axis_name: batch statistics are global.
    weak = 4.0 * jax.random.normal(k[5], (16, 5))
    strong = weak + jax.random.normal(k[0], (16, 5))
    p_model = jnp.array([0.3, 0.1, 0.2, 0.25, 0.15])
    kw = dict(threshold=0.7, soft_targets=True, sharpen_temperature=0.5,
              model_distribution=p_model)
    fm = shard(lambda a, b: fixmatch_consistency(
        a, b, axis_name='data', **kw), (P(), {
            'mask': P('data'), 'mask_rate': P(), 'pseudo_labels': P('data'),
            'confidence': P('data'), 'mean_probs': P()}))
    fm_single = jax.jit(lambda a, b: fixmatch_consistency(a, b, **kw))
    (l4, a4), (l1, a1) = fm(weak, strong), fm_single(weak, strong)
    out['fixmatch_loss'] = maxdiff(l4, l1)
    out['fixmatch_aux'] = maxdiff(a4, a1)
    out['fixmatch_mask_rate'] = float(a1['mask_rate'])
    out['fixmatch_grad'] = maxdiff(
        jax.jit(jax.grad(lambda b: fm(weak, b)[0]))(strong),
        jax.jit(jax.grad(lambda b: fm_single(weak, b)[0]))(strong))

    # Legacy pmap with the usual recipe (grad, then pmean of the grads).
    pm = jax.pmap(lambda a, b: nt_xent(a, b, temperature=T, axis_name='i'),
                  axis_name='i')(z1.reshape(4, 4, 8), z2.reshape(4, 4, 8))
    out['pmap_value'] = maxdiff(pm, jnp.full((4,), single(z1, z2)))
    def pstep(a, b, w):
      return jax.lax.pmean(jax.grad(lambda w: nt_xent(
          a @ w, b @ w, temperature=T, axis_name='i'))(w), 'i')
    gp = jax.pmap(pstep, axis_name='i', in_axes=(0, 0, None))(
        x1.reshape(4, 4, 6), x2.reshape(4, 4, 6), w)
    out['pmap_grad_params'] = maxdiff(gp[0], g_single)
    print('RESULT' + json.dumps(out))
""")


@pytest.fixture(scope="module")
def multi_device():
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _CHILD], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])


def test_importing_losses_pulls_in_no_tensorflow_tfds_or_orbax(multi_device):
  assert multi_device["heavy_modules"] == []


def test_multi_device_nt_xent_equals_gathered_batch(multi_device):
  assert multi_device["nt_xent_value"] < 1e-5
  # Without axis_name each device only sees its own negatives: differs.
  assert multi_device["nt_xent_local_differs"] > 1e-2
  assert multi_device["nt_xent_grad_z"] < 1e-6
  assert multi_device["grad_params_scale"] > 1e-3
  assert multi_device["nt_xent_grad_params"] < 1e-5
  assert multi_device["jit_sharded_value"] < 1e-5
  assert multi_device["pmap_value"] < 1e-5
  assert multi_device["pmap_grad_params"] < 1e-5


def test_multi_device_contrastive_accuracy(multi_device):
  assert multi_device["accuracy_value"] < 1e-6
  assert multi_device["accuracy"] <= 1 - 8 / 32  # the 8 flipped anchors miss


def test_multi_device_fixmatch_consistency(multi_device):
  assert 0 < multi_device["fixmatch_mask_rate"] < 1  # a mixed batch
  assert multi_device["fixmatch_loss"] < 1e-6
  assert multi_device["fixmatch_aux"] < 1e-6
  assert multi_device["fixmatch_grad"] < 1e-6
