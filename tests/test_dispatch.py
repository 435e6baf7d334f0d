"""Bounded dispatch (the multi-device XLA:CPU deadlock) and the stall watchdog.

``sslx/dispatch.py`` explains the deadlock: more than ~32 programs queued per XLA:CPU
device, with collectives, starve the CPU client's thread pool. The CLI runs below queue
200 steps between host syncs on 2 and 4 simulated devices while other processes keep the
cores busy: before the fix they aborted in XLA's rendezvous most of the time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax
import pytest

from helpers import REPO
from sslx import dispatch, train
import test_reliability as rel


def _slow_program():
  return jax.jit(lambda x: jax.lax.fori_loop(0, 60, lambda i, y: jnp.tanh(y @ y), x))


def test_pacer_keeps_at_most_depth_calls_in_flight():
  slow, x = _slow_program(), jnp.eye(192) * 0.5
  jax.block_until_ready(slow(x))
  pacer, outs = dispatch.Pacer(depth=2), []
  for _ in range(8):
    outs.append(slow(x))
    pacer.admit(outs[-1])
    assert pacer.in_flight <= 2
    assert all(o.is_ready() for o in outs[:-2])
  pacer.drain()
  assert pacer.in_flight == 0 and all(o.is_ready() for o in outs)
  with pytest.raises(ValueError, match="depth"):
    dispatch.Pacer(depth=0)


def test_train_step_never_queues_more_than_two_steps():
  """Any loop over ``make_train_step``'s function is bounded, not just the trainer's."""
  mesh = train.make_mesh()
  params = {"model": {"w": jnp.eye(192) * 0.5}}

  def loss_fn(params, state, batch, rng):
    w = params["model"]["w"]
    y = jax.lax.fori_loop(0, 60, lambda i, y: jnp.tanh(y @ w), batch["x"])
    loss = jnp.mean(y ** 2)
    return loss, (state.model_state, state.method_state, {"loss": loss})

  optimizer = optax.sgd(1e-6)
  state = train.TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state={},
                           opt_state=optimizer.init(params),
                           ema_params=jax.tree.map(jnp.copy, params["model"]))
  state = jax.device_put(state, train.replicated(mesh))
  step = train.make_train_step(loss_fn=loss_fn, optimizer=optimizer, schedule=lambda s: 0.0,
                               mesh=mesh, seed=0, labeled_batch_size=0, unlabeled_batch_size=0,
                               ema_decay=0.0, streaming=True)
  batch = {"x": jnp.ones((64 * mesh.devices.size, 192))}
  history = []
  for _ in range(10):
    state, metrics = step(state, batch)
    history.append(metrics["loss"])
    assert all(m.is_ready() for m in history[:-dispatch.DEFAULT_DEPTH]), len(history)


def test_watchdog_names_what_stalled_and_stays_quiet_otherwise():
  fired = []
  with dispatch.Watchdog(0.3, on_stall=fired.append, what_next="rerun it") as dog:
    dog.running("train step 7")
    time.sleep(0.1)
    dog.running("train step 8")  # progress restarts the clock
    time.sleep(0.2)
    assert not fired
    dog.idle()  # host-only work is not watched
    time.sleep(0.6)
    assert not fired
    dog.running("evaluation at step 9")
    deadline = time.time() + 5
    while not fired and time.time() < deadline:
      time.sleep(0.05)
  assert len(fired) == 1
  assert re.fullmatch(r"error: stalled: no progress for \d+ s in evaluation at step 9 "
                      r"\(stall_timeout_s=0.3\)\. rerun it", fired[0]), fired[0]
  with dispatch.Watchdog(0, on_stall=fired.append) as off:  # 0 = off: no thread at all
    off.running("x")
    assert off._thread is None


def _cpu_load(n: int) -> list[subprocess.Popen]:
  """`n` processes that keep a core each busy (what made the deadlock likelier)."""
  burn = "import time\nt = time.time()\nwhile time.time() - t < 600: sum(i * i for i in range(10000))"
  return [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("config,devices", [("supervised_digits.py:smoke", 2),
                                            ("supervised_digits.py:smoke", 4),
                                            ("lp_digits.py:smoke", 2)])
def test_long_queues_between_host_syncs_do_not_deadlock(tmp_path, config, devices):
  """200 steps (deep LP: with a refresh every 50) between two host syncs, cores loaded."""
  workdir = str(tmp_path / "run")
  env = rel.subprocess_env(tmp_path.parent, num_devices=devices)
  extra = ["--config.deep_lp.refresh_every=50"] if config.startswith("lp_") else []
  cmd = [sys.executable, "-m", "sslx.main", f"--config={os.path.join(REPO, 'experiments', config)}",
         f"--workdir={workdir}", "--config.num_steps=200", "--config.log_every=200",
         "--config.eval_every=200", "--config.checkpoint_every=200", *extra]
  load = _cpu_load(2)
  try:
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
  finally:
    for p in load:
      p.kill()
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["steps"] == 200 and results["num_devices"] == devices


@pytest.mark.slow
def test_a_stalled_step_stops_the_run_and_the_rerun_resumes_exactly(tmp_path_factory):
  """The watchdog exits 43 naming the steps; the newest checkpoint resumes bit for bit."""
  basetemp = tmp_path_factory.getbasetemp()
  reference = rel.reference_run(basetemp)
  workdir = os.path.join(str(basetemp), "sslx_stalled_run")
  env = rel.subprocess_env(basetemp)
  proc = rel.start(workdir, env, "--config.debug.stall_at_step=9", "--config.stall_timeout_s=3",
                   log_name="stalled")
  assert rel.finish(proc) == dispatch.STALLED_EXIT_CODE, rel.log_text(proc)[-3000:]
  log = rel.log_text(proc)
  # The update from step 9 to 10 blocks; the host waits on it within two queued steps.
  found = re.search(r"error: stalled: no progress for \d+ s in train steps? (\d+)(?: to (\d+))? "
                    r"\(stall_timeout_s=3\)\. The newest checkpoint in .* is kept", log)
  assert found, log[-3000:]
  assert int(found.group(1)) <= 10 <= int(found.group(2) or found.group(1)), found.group(0)
  assert rel.finalized_steps(workdir) == [4, 8]  # checkpoint_every=4; nothing after the stall
  proc = rel.start(workdir, env, log_name="resumed")
  assert rel.finish(proc) == 0, rel.log_text(proc)[-3000:]
  assert "Resumed from checkpoint at step 8" in rel.log_text(proc)
  rel.assert_bit_identical(rel.read_checkpoint(workdir, rel.NUM_STEPS),
                           rel.read_checkpoint(reference, rel.NUM_STEPS), "resumed after a stall")
