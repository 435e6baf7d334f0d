"""The README's first command, end to end: ``python -m sslx.main`` with nothing else.

The command every newcomer runs first, on the automatic device count (one XLA:CPU device
per core here), to the end of its 1,500 steps: it must finish and reach the accuracy the
README promises. About 100 s on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, load_experiment
from sslx import devices


@pytest.mark.slow
def test_the_default_job_completes_with_ema_accuracy_above_95(tmp_path):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the automatic device count, as a user gets it
  workdir = str(tmp_path / "default")
  out = subprocess.run([sys.executable, "-m", "sslx.main", f"--workdir={workdir}"], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-4000:]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  config = load_experiment("fixmatch_graph_digits")
  assert results["steps"] == config.num_steps
  assert results["num_devices"] == devices.auto_cpu_devices(devices.config_batch_sizes(config))
  assert results["test_accuracy_ema"] >= 0.95, results
  assert "test accuracy" in out.stdout
