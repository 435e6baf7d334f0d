"""Two processes on this machine under `jax.distributed` (localhost coordinator, one CPU
device each, gloo collectives) train the digits smoke config exactly as one process with
two devices does, and a SIGTERM to only one of them makes both checkpoint the same step
(JAX's preemption sync point) and exit; the pair then resumes.

Skipped, with the reason, where this platform cannot run multi-process CPU collectives
(set SSLX_SKIP_MULTIPROCESS=1 to skip it deliberately).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys

import pytest

from helpers import REPO
from test_reliability import (KILL_SEED, NUM_STEPS, assert_bit_identical, finalized_steps,
                              finish, log_text, logged_steps, preempted_step, read_checkpoint,
                              reference_run, start, subprocess_env, wait_for_step)
from sslx import train

# What a JAX/jaxlib without multi-process CPU collectives says when asked for them.
_NO_CPU_COLLECTIVES = ("aren't implemented on the CPU backend", "UNIMPLEMENTED: ",
                       "gloo is not available", "Gloo is not available")


def _skip_reason() -> str | None:
  if os.environ.get("SSLX_SKIP_MULTIPROCESS"):
    return "SSLX_SKIP_MULTIPROCESS is set"
  if sys.platform not in ("linux", "darwin"):
    return f"jax.distributed CPU collectives (gloo) are not built for {sys.platform}"
  return None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_pair(workdir: str, env, log_name: str):
  port = _free_port()
  return [start(workdir, env, "--multihost", f"--coordinator_address=localhost:{port}",
                "--num_processes=2", f"--process_id={i}", log_name=f"{log_name}{i}")
          for i in range(2)]


def _finish_pair(procs) -> list[int]:
  try:
    return [finish(p) for p in procs]
  finally:
    for p in procs:  # a dead peer can leave the other waiting on a barrier
      if p.poll() is None:
        p.kill()
        p.wait()


def _skip_if_unsupported(procs, codes) -> None:
  logs = [log_text(p) for p in procs]
  if all(c == 0 or c == train.PREEMPTED_EXIT_CODE for c in codes):
    return
  marker = next((m for m in _NO_CPU_COLLECTIVES for log in logs if m in log), None)
  if marker is not None and not any("steps/s" in log for log in logs):  # never trained
    pytest.skip(f"no multi-process CPU collectives on this platform ({marker!r} in the log)")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  if _skip_reason():
    pytest.skip(_skip_reason())
  basetemp = tmp_path_factory.getbasetemp()
  reference = reference_run(basetemp)
  workdir = os.path.join(str(basetemp), "sslx_two_process_run")
  env = subprocess_env(basetemp, num_devices=None)  # one CPU device per process
  target = random.Random(KILL_SEED + 2).randint(2, NUM_STEPS // 2 + 5)
  procs = _start_pair(workdir, env, "first")
  wait_for_step(workdir, target, procs)
  procs[1].send_signal(signal.SIGTERM)  # only the second process is told
  codes = _finish_pair(procs)
  _skip_if_unsupported(procs, codes)
  first = dict(codes=codes, logs=[log_text(p) for p in procs], target=target,
               checkpoints=finalized_steps(workdir))
  resumed = _finish_pair(_start_pair(workdir, env, "resume"))
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  return dict(workdir=workdir, reference=reference, first=first, resumed=resumed,
              results=results)


def test_sigterm_to_one_process_stops_both_at_the_same_step(two_processes):
  first = two_processes["first"]
  context = f"[SSLX_KILL_SEED={KILL_SEED}] " + first["logs"][0][-2000:]
  assert first["codes"] == [train.PREEMPTED_EXIT_CODE] * 2, context
  steps = [preempted_step(log) for log in first["logs"]]
  assert steps[0] == steps[1], context
  assert first["target"] <= steps[0] < NUM_STEPS, context
  assert first["checkpoints"][-1] == steps[0], context


def test_two_processes_train_like_one_process_with_two_devices(two_processes):
  info = two_processes
  assert info["resumed"] == [0, 0]
  results = info["results"]
  assert results["num_processes"] == 2 and results["num_devices"] == 2
  assert results["resumed_from_step"] == preempted_step(info["first"]["logs"][0])
  with open(os.path.join(info["reference"], "results.json")) as f:
    reference = json.load(f)
  assert results["test_accuracy"] == reference["test_accuracy"]
  assert logged_steps(info["workdir"]) == list(range(1, NUM_STEPS + 1))
  assert_bit_identical(read_checkpoint(info["workdir"], NUM_STEPS),
                       read_checkpoint(info["reference"], NUM_STEPS),
                       "2 processes x 1 device vs 1 process x 2 devices")
  with open(os.path.join(info["workdir"], "metrics.jsonl")) as f, \
      open(os.path.join(info["reference"], "metrics.jsonl")) as g:
    assert f.read() == g.read()


# ---------------------------------------------------------------------------------------
# scripts/launch_tpu_pod.sh, against a stand-in `gcloud` that runs the command locally
# ---------------------------------------------------------------------------------------

_FAKE_GCLOUD = """#!/usr/bin/env bash
printf '%s\\n' "$@" >> "$FAKE_GCLOUD_LOG"
for arg in "$@"; do case "$arg" in --command=*) cmd="${arg#--command=}";; esac; done
HOME="$FAKE_HOME" bash -c "$cmd"
"""


def test_launch_tpu_pod_runs_the_command_on_all_workers(tmp_path):
  bin_dir, home = tmp_path / "bin", tmp_path / "home"
  bin_dir.mkdir()
  (home / "sslx").mkdir(parents=True)
  (bin_dir / "gcloud").write_text(_FAKE_GCLOUD)
  (bin_dir / "gcloud").chmod(0o755)
  log = tmp_path / "gcloud_args.txt"
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             FAKE_HOME=str(home), FAKE_GCLOUD_LOG=str(log), PROJECT="my-project")
  script = os.path.join(REPO, "scripts", "launch_tpu_pod.sh")
  argv = [sys.executable, "-c", "import os, sys; print(os.getcwd(), sys.argv[1:])",
          "two words", "--config=x.py:labels=40,smoke", "$HOME"]
  out = subprocess.run([script, "my-v4-32", "us-central2-b", "--", *argv], env=env,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  # Ran in ~/sslx with every argument intact (no word splitting, no expansion).
  assert out.stdout.strip() == (f"{home / 'sslx'} ['two words', "
                                f"'--config=x.py:labels=40,smoke', '$HOME']")
  args = log.read_text().splitlines()
  assert args[:6] == ["compute", "tpus", "tpu-vm", "ssh", "my-v4-32", "--zone=us-central2-b"]
  assert "--worker=all" in args and "--project=my-project" in args
  bad = subprocess.run([script, "my-v4-32", "us-central2-b", "python"], env=env,
                       capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and "TPU_NAME ZONE -- COMMAND" in bad.stderr
