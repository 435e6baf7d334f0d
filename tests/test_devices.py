"""sslx.devices: how many XLA:CPU devices a CPU run uses."""

import os
import subprocess
import sys

import pytest

from sslx import devices
from sslx.config import base_config


@pytest.mark.parametrize("sizes, cores, expected", [
    ([64, 448, 1024], 2, 2),
    ([64, 448, 1024], 8, 8),
    ([64, 448, 1024], 6, 4),  # 6 and 5 do not divide 64: the largest count that does
    ([9, 63], 2, 1),
    ([32, 224, 360], 16, 8),
    ([32, 0], 4, 4),  # a zero batch size (no unlabeled stream) constrains nothing
    ([64], 0, 1),
])
def test_auto_cpu_devices(sizes, cores, expected):
  assert devices.auto_cpu_devices(sizes, cores=cores) == expected


@pytest.mark.parametrize("platforms, expected", [("cpu", False), ("cuda", True),
                                                 ("tpu,cpu", True), ("cpu,cuda", False)])
def test_jax_platforms_decides_whether_an_accelerator_is_expected(platforms, expected,
                                                                  monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert devices.accelerator_expected() is expected
  if expected:
    assert devices.auto_cpu_devices([64]) == 1
  else:
    cores = devices.available_cores()
    assert devices.auto_cpu_devices([64]) == max(n for n in range(1, cores + 1) if 64 % n == 0)


def test_config_batch_sizes_are_the_ones_device_errors_checks():
  c = base_config()
  c.batch_size, c.unlabeled_ratio, c.eval_batch_size = 12, 7, 100
  assert devices.config_batch_sizes(c) == [12, 84, 100]
  c.unlabeled_ratio = 0
  assert devices.config_batch_sizes(c) == [12, 100]
  c.batch_size = -3  # left for the config's validation to report, by name
  assert devices.config_batch_sizes(c) == [100]


@pytest.mark.parametrize("count", [0, -2, 1.5, True])
def test_use_cpu_devices_rejects_bad_counts(count, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  with pytest.raises(ValueError, match="cpu_devices"):
    devices.use_cpu_devices(count)


def test_forced_count_in_xla_flags_wins(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=3")
  assert devices.use_cpu_devices(2) == 3  # returned without touching JAX's config


def test_use_cpu_devices_sets_the_device_count_in_a_fresh_process():
  code = ("from sslx import devices; n = devices.use_cpu_devices(3); "
          "import jax; print(n, jax.device_count())")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["3", "3"]
