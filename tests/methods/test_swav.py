"""SwAV: Sinkhorn-Knopp and the swapped-prediction loss against main_swav.py rewritten in
numpy (with and without the queue), hand values, invariances, the global batch over 4
simulated devices under shard_map, the queue over training steps, and a smoke step."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import sinkhorn_knopp, swav_loss


def _official_sinkhorn(out, epsilon=0.05, iterations=3, world_size=1):
  """distributed_sinkhorn of main_swav.py, float64 numpy, Q as K-by-B."""
  q = np.exp(np.asarray(out, np.float64) / epsilon).T
  b, k = q.shape[1] * world_size, q.shape[0]
  q /= q.sum()
  for _ in range(iterations):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  q *= b
  return q.T


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _official_loss(output, bs, nmb_crops, crops_for_assign=(0, 1), temperature=0.1,
                   queue=None):
  """The loss loop of main_swav.py's train(): `output` is [sum(nmb_crops) * bs, K] crops
  concatenated on the batch axis; `queue` ([len(crops_for_assign), L, K] scores) optional."""
  output = np.asarray(output, np.float64)
  loss = 0.0
  for i, crop_id in enumerate(crops_for_assign):
    out = output[bs * crop_id: bs * (crop_id + 1)]
    if queue is not None:
      out = np.concatenate([queue[i], out])
    q = _official_sinkhorn(out)[-bs:]
    subloss = 0.0
    for v in np.delete(np.arange(np.sum(nmb_crops)), crop_id):
      x = output[bs * v: bs * (v + 1)] / temperature
      subloss -= np.mean(np.sum(q * _log_softmax(x), axis=1))
    loss += subloss / (np.sum(nmb_crops) - 1)
  return loss / len(crops_for_assign)


def _scores(v=5, b=8, k=6, seed=0):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(v, b, 4))
  c = rng.normal(size=(4, k))
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  c /= np.linalg.norm(c, axis=0, keepdims=True)
  return (z @ c).astype(np.float32)


def test_sinkhorn_matches_the_official_code_and_equipartitions():
  s = _scores()[0]
  q = sinkhorn_knopp(s, epsilon=0.05, num_iterations=3)
  np.testing.assert_allclose(q, _official_sinkhorn(s), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.sum(q, 1), 1.0, rtol=1e-5)  # each example: an assignment
  # Many iterations: every prototype gets B / K of the mass.
  q = sinkhorn_knopp(s, epsilon=0.05, num_iterations=200)
  np.testing.assert_allclose(np.sum(q, 0), 8 / 6, rtol=1e-3)
  # Hand value: equal scores give uniform codes 1/K.
  np.testing.assert_allclose(sinkhorn_knopp(jnp.zeros((3, 4))), 0.25, rtol=1e-6)
  perm = np.random.default_rng(1).permutation(8)
  np.testing.assert_allclose(sinkhorn_knopp(s[perm]), sinkhorn_knopp(s)[perm], rtol=1e-5)
  assert float(jnp.abs(jax.grad(lambda x: sinkhorn_knopp(x).sum())(s)).sum()) == 0.0
  with pytest.raises(ValueError, match="scores"):
    sinkhorn_knopp(s[0])


def test_swav_loss_matches_the_official_loop():
  s = _scores()
  loss, aux = swav_loss(s, num_assign=2, temperature=0.1)
  np.testing.assert_allclose(loss, _official_loss(s.reshape(-1, 6), 8, [2, 3]), rtol=1e-4)
  assert aux["codes"].shape == (2, 8, 6)
  queue = _scores(v=2, b=16, seed=3)
  got, _ = swav_loss(s, queue_scores=queue)
  np.testing.assert_allclose(got, _official_loss(s.reshape(-1, 6), 8, [2, 3], queue=queue),
                             rtol=1e-4)
  assert abs(float(got) - float(loss)) > 1e-4  # the queue changes the codes
  np.testing.assert_allclose(jax.jit(lambda x: swav_loss(x)[0])(s), loss, rtol=1e-5)
  perm = np.random.default_rng(2).permutation(8)
  np.testing.assert_allclose(swav_loss(s[:, perm])[0], loss, rtol=1e-5)
  # Hand value: equal scores -> uniform codes and predictions: log K.
  assert float(swav_loss(jnp.zeros((3, 2, 5)))[0]) == pytest.approx(np.log(5), rel=1e-6)
  g = jax.grad(lambda x: swav_loss(x)[0])(s)
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0
  with pytest.raises(ValueError, match="num_assign"):
    swav_loss(s, num_assign=6)
  with pytest.raises(ValueError, match="queue_scores"):
    swav_loss(s, queue_scores=queue[:1])


_CHILD = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from sslx.losses import sinkhorn_knopp, swav_loss
    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    s = jax.random.normal(jax.random.key(0), (16, 6)) * 0.5
    crops = jax.random.normal(jax.random.key(1), (4, 16, 6)) * 0.5
    sharded = jax.jit(jax.shard_map(lambda x: sinkhorn_knopp(x, axis_name='data'), mesh=mesh,
                                    in_specs=P('data'), out_specs=P('data')))
    local = jax.jit(jax.shard_map(sinkhorn_knopp, mesh=mesh, in_specs=P('data'),
                                  out_specs=P('data')))
    loss = jax.jit(jax.shard_map(lambda x: swav_loss(x, axis_name='data')[0], mesh=mesh,
                                 in_specs=P(None, 'data'), out_specs=P()))
    # The trainer's form: jit over a mesh with the batch sharded, no axis_name.
    spec = jax.sharding.NamedSharding(mesh, P('data'))
    jit_mesh = jax.jit(sinkhorn_knopp)(jax.device_put(s, spec))
    diff = lambda a, b: float(jnp.max(jnp.abs(a - b)))
    print('RESULT' + json.dumps({
        'codes': diff(sharded(s), sinkhorn_knopp(s)),
        'local_codes': diff(local(s), sinkhorn_knopp(s)),
        'jit_mesh': diff(jit_mesh, sinkhorn_knopp(s)),
        'loss': diff(loss(crops), swav_loss(crops)[0])}))
""")


def test_sinkhorn_uses_the_global_batch_over_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads([l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1][6:])
  assert out["codes"] < 1e-5 and out["jit_mesh"] < 1e-5 and out["loss"] < 1e-5, out
  assert out["local_codes"] > 1e-3, out  # per-device Sinkhorn would be a different method


def test_swav_training_steps_fill_the_queue():
  config = load_experiment("swav_digits", "smoke")
  config.swav.queue_size = 32  # two smoke batches of 16 unlabeled images
  exp = experiment.setup(config, devices=jax.devices()[:1])
  state = exp.state
  protos = np.asarray(state.params["swav"]["prototypes"]["prototypes"])
  previous = np.asarray(state.method_state["swav"]["queue"])
  n = config.batch_size * config.unlabeled_ratio
  in_use = []
  for k in range(3):
    state, metrics = exp.train_step(state, exp.input.arrays)
    queue = np.asarray(state.method_state["swav"]["queue"])
    assert queue.shape == (2, 32, config.model.projection_dim)
    np.testing.assert_allclose(queue[:, n:], previous[:, :32 - n], rtol=1e-6)  # FIFO
    np.testing.assert_allclose(np.linalg.norm(queue[:, :n], axis=-1), 1.0, rtol=1e-5)
    assert int(state.method_state["swav"]["filled"]) == min(32, n * (k + 1))
    in_use.append(float(metrics["swav/queue_in_use"]))
    previous = queue
    if k == 0:  # frozen for freeze_prototypes_steps=2: only weight decay moves them
      moved = np.abs(np.asarray(state.params["swav"]["prototypes"]["prototypes"]) - protos)
      assert moved.max() < 1e-3 * np.abs(protos).max()
    assert np.isfinite(float(metrics["loss/swav"]))
  assert in_use == [0.0, 0.0, 1.0]  # used once full (after two batches)
  assert not np.allclose(np.asarray(state.params["swav"]["prototypes"]["prototypes"]), protos)
  assert 0 < float(metrics["swav/code_entropy"]) <= np.log(config.swav.num_prototypes) + 1e-5
