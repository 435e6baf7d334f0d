"""Runs one experiment: ``python -m sslx.main --config=experiments/x.py[:arg] --workdir=DIR``.

With no ``--config`` it runs the project's default experiment into ``runs/<name>``.
Overrides: ``--config.num_steps=2000 --config.data.num_labels=40``.
Multi-host (TPU pod slices, GPU clusters): pass ``--multihost`` on every host; JAX reads
the coordinator from the environment (``jax.distributed.initialize()``) on Cloud TPU, Slurm
and Open MPI; elsewhere also pass ``--coordinator_address=host0:port --num_processes=N
--process_id=i`` (``scripts/launch_tpu_pod.sh`` starts a run on every TPU worker).

Exit status: 0 done; 2 bad config/data/workdir or a non-finite loss (message on stderr);
42 (``train.PREEMPTED_EXIT_CODE``) preempted by SIGTERM or SIGINT (Ctrl-C) after writing a
checkpoint: run the same command again to resume; 130 Ctrl-C before the first step; 43 (``dispatch.STALLED_EXIT_CODE``) stopped by the
watchdog because a step, evaluation or checkpoint made no progress for
``config.stall_timeout_s``: the newest checkpoint is kept, run the same command again.
"""

import logging as std_logging
import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "experiments", "fixmatch_graph_digits.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Experiment config file[:arg] (default: the digits experiment).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go "
                               "(default: runs/<config name>).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete a previous run in --workdir "
                               "instead of refusing to resume a different config.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "With --multihost: host:port of process 0's coordinator. "
    "Leave unset on Cloud TPU, Slurm and Open MPI, where JAX detects it.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "With --multihost: total number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "With --multihost: this process's index, 0..num_processes-1.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "XLA:CPU devices to split the batch across when running on CPU "
    "(see sslx/devices.py). 0: one per core, fewer if the batch sizes do not divide "
    "(1 with --multihost). No effect on GPU/TPU.")


class _QuietLibraries(std_logging.Filter):
  """Keeps orbax/jax INFO chatter off the console (warnings and errors still show)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or not any(
        f"{os.sep}{lib}{os.sep}" in record.pathname for lib in ("orbax", "jax", "absl"))


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in explicit) and not _MULTIHOST.value:
    raise app.UsageError("--coordinator_address/--num_processes/--process_id need --multihost")
  config = _CONFIG.value
  from sslx import devices  # before JAX's first operation
  if _CPU_DEVICES.value < 0:
    raise app.UsageError(f"--cpu_devices must be >= 0, got {_CPU_DEVICES.value}")
  cpu_devices = _CPU_DEVICES.value or (
      1 if _MULTIHOST.value else devices.auto_cpu_devices(devices.config_batch_sizes(config)))
  devices.use_cpu_devices(cpu_devices)
  if _MULTIHOST.value:
    import jax
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from sslx import train  # after flags: JAX must not start before distributed init
  config_path = config_flags.get_config_filename(flags.FLAGS["config"])
  name = os.path.splitext(os.path.basename(config_path))[0]
  workdir = _WORKDIR.value or os.path.join("runs", name)
  try:
    results = train.train_and_evaluate(config, workdir, overwrite=_OVERWRITE.value)
  except train.Preempted as e:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback on the way out
    logging.warning("%s", e)
    sys.exit(train.PREEMPTED_EXIT_CODE)
  except (ValueError, train.NonFiniteError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:  # Ctrl-C before the training loop (which checkpoints on it)
    print("error: interrupted (SIGINT) before training started; nothing was trained, so "
          "nothing needed saving", file=sys.stderr)
    sys.exit(130)
  print(f"test accuracy {results['test_accuracy']:.4f} (EMA {results['test_accuracy_ema']:.4f})"
        f" after {results['steps']} steps on {results['num_devices']} device(s); "
        f"results in {os.path.join(workdir, 'results.json')}")


def _config_file_arg(argv: list[str]) -> str | None:
  """The value of ``--config=...`` / ``--config ...`` in `argv`, if given."""
  for i, a in enumerate(argv[1:], 1):
    if a == "--":
      break
    if a.startswith("--config="):
      return a[len("--config="):]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def check_config_file(argv: list[str]) -> None:
  """Loads ``--config`` once before absl does, so that a missing file, a file without
  ``get_config``, a ``get_config`` that refuses its arg or returns a dict each exit 2 with
  one line (through absl they end in a traceback)."""
  value = _config_file_arg(argv)
  if not value:
    return
  from sslx import config as config_lib
  path, _, arg = value.partition(":")
  try:
    config_lib.load_config_file(path, arg or None)
  except ValueError as e:
    print(f"error: --config={value}: {e}", file=sys.stderr)
    sys.exit(2)


def run():
  check_config_file(sys.argv)
  app.run(main)


if __name__ == "__main__":
  run()
