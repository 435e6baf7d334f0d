"""Reliability: exact resume after SIGKILL and SIGTERM, the non-finite guard, determinism,
atomic checkpoints.

The interrupted runs are real ``python -m sslx.main`` subprocesses of the digits smoke
config on 2 simulated CPU devices, compared bit for bit with an uninterrupted one. They
share a persistent XLA compilation cache, so only the first compiles; the uninterrupted
reference run is made once per session and reused by tests/test_multiprocess.py. The steps
at which runs are killed are random; the seed is in every failure message (set
``SSLX_KILL_SEED`` to replay one).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from helpers import REPO, load_experiment, read_jsonl
from sslx import train

NUM_STEPS = 40
CHECKPOINT_EVERY = 4
# log_every=1: every step's metrics reach metrics.jsonl (the tests watch it to time the
# signals, and compare it row by row). All of these are observation-only fields.
OVERRIDES = (f"--config.num_steps={NUM_STEPS}", f"--config.checkpoint_every={CHECKPOINT_EVERY}",
             "--config.log_every=1", f"--config.eval_every={NUM_STEPS}",
             "--config.keep_checkpoints=100")
CONFIG = os.path.join(REPO, "experiments", "supervised_digits.py") + ":smoke"
TIMEOUT_S = 300
KILL_SEED = int(os.environ.get("SSLX_KILL_SEED", random.SystemRandom().randrange(2**31)))


# ---------------------------------------------------------------------------------------
# Helpers (also used by tests/test_multiprocess.py)
# ---------------------------------------------------------------------------------------


def subprocess_env(basetemp, num_devices: int | None = 2) -> dict[str, str]:
  """CPU, `num_devices` simulated devices, and a compilation cache shared by the session."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=os.path.join(str(basetemp), "sslx_jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.pop("XLA_FLAGS", None)
  if num_devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  return env


def main_command(workdir: str, *extra: str) -> list[str]:
  return [sys.executable, "-m", "sslx.main", f"--config={CONFIG}", f"--workdir={workdir}",
          *OVERRIDES, *extra]


def start(workdir: str, env, *extra: str, log_name: str = "log") -> subprocess.Popen:
  """Starts `python -m sslx.main`; stdout+stderr go to <workdir>.<log_name>.txt."""
  log = open(f"{workdir}.{log_name}.txt", "w")
  proc = subprocess.Popen(main_command(workdir, *extra), env=env, cwd=REPO, stdout=log,
                          stderr=subprocess.STDOUT, text=True)
  proc.log_path = log.name
  log.close()  # the child holds its own descriptor
  return proc


def log_text(proc) -> str:
  with open(proc.log_path) as f:
    return f.read()


def finish(proc, timeout: float = TIMEOUT_S) -> int:
  try:
    return proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    pytest.fail(f"timed out after {timeout}s; log tail:\n{log_text(proc)[-3000:]}")


def logged_steps(workdir: str) -> list[int]:
  """Steps in metrics.jsonl so far (tolerates a line the child is writing)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [train._parse_row(line) for line in f]
  return [r["step"] for r in rows if r]


def wait_for_step(workdir: str, step: int, procs, timeout: float = TIMEOUT_S) -> None:
  """Returns once metrics.jsonl has a row for `step` or later (the run is past it)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if any(s >= step for s in logged_steps(workdir)):
      return
    for p in procs:
      if p.poll() is not None:
        pytest.fail(f"run ended (rc {p.returncode}) before step {step} "
                    f"[SSLX_KILL_SEED={KILL_SEED}]:\n{log_text(p)[-3000:]}")
    time.sleep(0.005)
  for p in procs:
    p.kill()
  pytest.fail(f"no step {step} within {timeout}s [SSLX_KILL_SEED={KILL_SEED}]")


def finalized_steps(workdir: str) -> list[int]:
  ckpt = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(ckpt) if n.isdigit()) if os.path.isdir(ckpt) else []


def read_checkpoint(workdir: str, step: int) -> dict:
  """A checkpoint's full state dict as host numpy arrays (any device count wrote it)."""
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  return jax.tree.map(np.asarray, checkpointer.restore(path, target))


def assert_bit_identical(got: dict, want: dict, what: str, min_leaves: int = 10) -> None:
  got_flat = jax.tree_util.tree_flatten_with_path(got)[0]
  want_flat = jax.tree_util.tree_flatten_with_path(want)[0]
  assert [p for p, _ in got_flat] == [p for p, _ in want_flat], what
  assert len(got_flat) >= min_leaves, what  # e.g. params, BatchNorm stats, optimizer, EMA
  for (path, a), (_, b) in zip(got_flat, want_flat):
    assert a.dtype == b.dtype and a.shape == b.shape, (what, jax.tree_util.keystr(path))
    assert a.tobytes() == b.tobytes(), (
        f"{what}: {jax.tree_util.keystr(path)} differs (max abs diff "
        f"{np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))}) "
        f"[SSLX_KILL_SEED={KILL_SEED}]")


def reference_run(basetemp) -> str:
  """The uninterrupted run (2 devices, one process); made once per pytest session."""
  workdir = os.path.join(str(basetemp), "sslx_reference_run")
  if not os.path.exists(os.path.join(workdir, "results.json")):
    shutil.rmtree(workdir, ignore_errors=True)
    proc = start(workdir, subprocess_env(basetemp))
    assert finish(proc) == 0, log_text(proc)[-3000:]
  return workdir


def preempted_step(log: str) -> int:
  found = re.findall(r"checkpoint written at step (\d+)", log)
  assert len(found) == 1, log[-3000:]
  return int(found[0])


# ---------------------------------------------------------------------------------------
# Fixtures: one reference run, one SIGKILLed run and one SIGTERMed run, each resumed
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def basetemp(tmp_path_factory):
  return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def reference(basetemp):
  return reference_run(basetemp)


@pytest.fixture(scope="module")
def interrupted(basetemp, reference):
  """One run taken through both kinds of interruption, at random steps:

  1. SIGKILL (no warning) at step >= k1; a stale half-written checkpoint is planted;
  2. resumed, then SIGTERM (a preemption notice) at step >= k2: checkpoint, exit 42;
  3. resumed again, to the end.
  """
  del reference  # runs first: it fills the compilation cache
  rng = random.Random(KILL_SEED)
  workdir = os.path.join(str(basetemp), "sslx_interrupted_run")
  env = subprocess_env(basetemp)
  info = dict(workdir=workdir, k1=rng.randint(2, 14))
  # 1. SIGKILL.
  proc = start(workdir, env, log_name="1")
  wait_for_step(workdir, info["k1"], [proc])
  proc.send_signal(signal.SIGKILL)
  info["rc1"] = finish(proc)
  info["killed_after"] = max(logged_steps(workdir))
  info["last_good"] = (finalized_steps(workdir) or [0])[-1]
  # What a SIGKILL in the middle of orbax's save leaves: the next step's temporary dir,
  # complete-looking but never committed. It must be neither restored nor in the way.
  info["planted"] = None
  if info["last_good"]:
    planted = os.path.join(workdir, "checkpoints",
                           f"{info['last_good'] + CHECKPOINT_EVERY}.orbax-checkpoint-tmp")
    if not os.path.exists(planted):
      shutil.copytree(os.path.join(workdir, "checkpoints", str(info["last_good"])), planted)
      os.remove(os.path.join(planted, "commit_success.txt"))
      info["planted"] = planted
  # 2. Resume, then SIGTERM. k2 > every step logged so far, so the signal lands in the
  # resumed training loop, not during start-up.
  info["k2"] = min(info["killed_after"] + rng.randint(2, 12), NUM_STEPS - 8)
  assert info["k2"] > info["killed_after"], f"the kill landed too late: {info}"
  proc = start(workdir, env, log_name="2")
  wait_for_step(workdir, info["k2"], [proc])
  proc.send_signal(signal.SIGTERM)
  info["rc2"] = finish(proc)
  info["log2"] = log_text(proc)
  info["stopped"] = preempted_step(info["log2"]) if info["rc2"] == 42 else None
  info["checkpoints2"] = finalized_steps(workdir)
  info["logged2"] = logged_steps(workdir)
  if info["stopped"] is not None:
    info["state2"] = read_checkpoint(workdir, info["stopped"])
  # 3. Resume to the end.
  proc = start(workdir, env, log_name="3")
  info["rc3"] = finish(proc)
  info["log3"] = log_text(proc)
  with open(os.path.join(workdir, "results.json")) as f:
    info["results"] = json.load(f)
  return info


# ---------------------------------------------------------------------------------------
# Exact resume
# ---------------------------------------------------------------------------------------


def test_reference_run_is_complete(reference):
  assert finalized_steps(reference) == list(range(CHECKPOINT_EVERY, NUM_STEPS + 1,
                                                  CHECKPOINT_EVERY))
  assert logged_steps(reference) == list(range(1, NUM_STEPS + 1))
  with open(os.path.join(reference, "results.json")) as f:
    results = json.load(f)
  assert results["num_devices"] == 2 and results["steps"] == NUM_STEPS
  assert results["resumed_from_step"] == 0


def _context(info) -> str:
  keys = ("k1", "killed_after", "last_good", "planted", "k2", "stopped", "rc1", "rc2", "rc3")
  return f"[SSLX_KILL_SEED={KILL_SEED}, " + ", ".join(f"{k}={info[k]}" for k in keys) + "]"


def test_sigkill_resumes_from_the_last_committed_checkpoint(interrupted):
  info = interrupted
  context = _context(info)
  assert info["rc1"] == -signal.SIGKILL, context
  assert info["k1"] <= info["killed_after"] < NUM_STEPS, context
  assert info["last_good"] <= info["killed_after"], context
  # Resumed from the last committed step, not from the planted temporary dir...
  assert f"Resumed from checkpoint at step {info['last_good']}" in info["log2"] or (
      info["last_good"] == 0 and "Resumed" not in info["log2"]), context
  # ...which orbax replaced when it saved that step for real.
  assert not [n for n in os.listdir(os.path.join(info["workdir"], "checkpoints"))
              if "tmp" in n], context


def test_sigterm_checkpoints_the_step_it_arrived_in_and_exits_42(interrupted):
  info = interrupted
  context = _context(info) + info["log2"][-2000:]
  assert info["rc2"] == train.PREEMPTED_EXIT_CODE, context
  stopped = info["stopped"]
  # The step the loop was in when the signal came: at or after the step we saw logged.
  assert info["k2"] <= stopped < NUM_STEPS, context
  assert info["checkpoints2"][-1] == stopped, context  # saved on the spot...
  assert int(info["state2"]["step"]) == stopped, context
  assert max(info["logged2"]) == stopped, context  # ...with its metrics
  assert info["rc3"] == 0, info["log3"][-2000:]
  assert info["results"]["resumed_from_step"] == stopped, context


def test_interrupted_run_ends_bit_identical_to_the_uninterrupted_one(interrupted, reference):
  info = interrupted
  assert info["results"]["steps"] == NUM_STEPS
  assert_bit_identical(read_checkpoint(info["workdir"], NUM_STEPS),
                       read_checkpoint(reference, NUM_STEPS),
                       f"SIGKILL + SIGTERM + resumes vs uninterrupted {_context(info)}")


def test_same_seed_gives_identical_metrics(interrupted, reference):
  """metrics.jsonl (every step's losses, gradient norm, learning rate; the final accuracy)
  is the same text for two runs with one seed and device count, interrupted or not."""
  with open(os.path.join(reference, "metrics.jsonl")) as f:
    want = f.read()
  assert want.count("\n") == NUM_STEPS and "test/accuracy" in want
  with open(os.path.join(interrupted["workdir"], "metrics.jsonl")) as f:
    assert f.read() == want, _context(interrupted)


def test_half_written_checkpoint_is_never_the_latest(reference, tmp_path):
  """orbax writes <step>.orbax-checkpoint-tmp and renames it once complete."""
  workdir = str(tmp_path / "w")
  shutil.copytree(os.path.join(reference, "checkpoints"), os.path.join(workdir, "checkpoints"))
  half = os.path.join(workdir, "checkpoints", f"{NUM_STEPS + 4}.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(workdir, "checkpoints", str(NUM_STEPS)), half)
  os.remove(os.path.join(half, "commit_success.txt"))
  manager = train._checkpoint_manager(workdir, keep=100)
  assert manager.latest_step() == NUM_STEPS
  assert NUM_STEPS + 4 not in manager.all_steps()
  manager.close()


# ---------------------------------------------------------------------------------------
# The non-finite guard (in process, on a tiny MLP: cheap to compile)
# ---------------------------------------------------------------------------------------

NAN_AT_STEP = 4  # the update 4 -> 5


def _mlp_config(**overrides):
  config = load_experiment("supervised_digits", "smoke")
  config.model = dict(name="mlp", hidden_dims=(16,))
  config.num_steps = 8
  config.eval_every = 8
  config.keep_checkpoints = 10
  config.debug.nan_at_step = NAN_AT_STEP
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.fixture(scope="module")
def nan_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("nan")
  # Stops: metrics reach the host only at the checkpoint steps 3 and 6, so the NaN of
  # update 4 -> 5 is found at step 6, and the guard must run before that save.
  stop_dir = str(root / "stop")
  with pytest.raises(train.NonFiniteError) as info:
    train.train_and_evaluate(_mlp_config(checkpoint_every=3, log_every=8), stop_dir)
  # Skips: every step logged and checkpointed.
  skip_dir = str(root / "skip")
  results = train.train_and_evaluate(
      _mlp_config(checkpoint_every=1, log_every=1, skip_nonfinite_updates=True), skip_dir)
  return dict(stop_dir=stop_dir, message=str(info.value), skip_dir=skip_dir, results=results)


def test_nan_stops_with_the_step_and_terms_and_keeps_the_last_good_checkpoint(nan_runs):
  message = nan_runs["message"]
  assert re.match(r"non-finite loss or gradients in the update from step 4 to step 5: "
                  r"loss=nan \(grad_norm=", message), message
  assert "The last good checkpoint is kept" in message
  workdir = nan_runs["stop_dir"]
  assert finalized_steps(workdir) == [3]  # step 6 (after the NaN) was never saved
  assert not [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if "tmp" in n]
  assert logged_steps(workdir) == [3]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  last_good = read_checkpoint(workdir, 3)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(last_good))
  same_run = read_checkpoint(nan_runs["skip_dir"], 3)  # identical up to the NaN
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               last_good, same_run)


def test_skip_nonfinite_updates_skips_and_counts(nan_runs):
  workdir, results = nan_runs["skip_dir"], nan_runs["results"]
  assert results["skipped_updates"] == 1 and results["steps"] == 8
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["skipped_updates"] for r in rows] == [0, 0, 0, 0, 1, 1, 1, 1]
  assert np.isnan(rows[NAN_AT_STEP]["loss"]) and np.isfinite(rows[NAN_AT_STEP + 1]["loss"])
  before, skipped, after = (read_checkpoint(workdir, s) for s in (4, 5, 6))
  assert int(skipped["step"]) == 5
  for key in ("params", "opt_state"):  # the NaN update changed nothing
    assert_bit_identical(skipped[key], before[key], f"the skipped update changed {key}",
                         min_leaves=2)
  assert not np.array_equal(after["params"]["model"]["classifier"]["kernel"],
                            skipped["params"]["model"]["classifier"]["kernel"])
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(after))


# ---------------------------------------------------------------------------------------
# metrics.jsonl after a crash
# ---------------------------------------------------------------------------------------


def test_metrics_cut_mid_line_by_a_crash_are_trimmed_on_resume(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"loss": 1.0 / s, "skipped_updates": float(s > 2), "step": s} for s in (1, 2, 3, 4)]
  text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
  path.write_text(text + '{"loss": 0.1, "st')  # SIGKILL mid-write
  writer = train.MetricWriter(str(tmp_path), resume_step=3, enabled=True)
  assert path.read_text() == "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[:3])
  assert writer.resumed_row == rows[2]  # counters such as skipped_updates carry on
  writer.write(4, {"loss": 0.25, "skipped_updates": 1.0})
  writer.close()
  assert [r["step"] for r in read_jsonl(str(path))] == [1, 2, 3, 4]
