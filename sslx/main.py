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

After ``pip install "sslx[train]"`` the same entry point is the ``sslx-train`` command, and
``--config`` also takes a shipped experiment by name from any directory
(``sslx-train --config=fixmatch_digits:smoke --workdir=runs/x``; ``--list_experiments``
lists them). ``--print_config`` prints the experiment's docstring (its args) and every
resolved field, then exits. A config that cannot be found or loaded, an unknown ``:arg``
and an unknown ``--config.x`` field each get one line on stderr and exit status 2.
"""

import logging as std_logging
import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sslx import config as config_lib

DEFAULT_EXPERIMENT = "fixmatch_graph_digits"

_CONFIG = config_flags.DEFINE_config_file(
    "config", config_lib.resolve_config_path(DEFAULT_EXPERIMENT),
    "Experiment: a config file path[:arg], or a shipped experiment's name[:arg] "
    "(--list_experiments; default: fixmatch_graph_digits). Override fields with "
    "--config.a.b=value; --print_config lists the fields and the experiment's args.",
    lock_config=True)
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the experiment's docstring (its :args) and every resolved "
    "field (the names --config.<field>=... accepts), then exit.")
_LIST_EXPERIMENTS = flags.DEFINE_bool(
    "list_experiments", False, "List the shipped experiments by name, then exit.")
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
  if _LIST_EXPERIMENTS.value:
    for name, doc in config_lib.list_experiments():
      print(f"{name:26s} {doc}")
    return
  config = _CONFIG.value
  # "path.py:arg" -> "path.py" (check_config_args made the path absolute).
  config_path = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")[0]
  if _PRINT_CONFIG.value:
    print(describe_config(config_path, config))
    return
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


def describe_config(path: str, config) -> str:
  """The experiment file's docstring as ``#`` comments, then one ``field = value`` line
  per leaf of `config`, named as ``--config.<field>=...`` takes it."""
  import ast
  with open(path) as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  lines = [f"# {path}"] + [f"# {line}".rstrip() for line in doc.strip().split("\n") if doc]
  lines += [f"{field} = {value!r}" for field, value in _leaves(config)]
  return "\n".join(lines)


def _leaves(config, prefix=""):
  for key in sorted(config.keys()):
    value = config[key]
    if hasattr(value, "keys"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _config_spec(argv):
  """(index of the --config flag, the index of its value, its value) or None."""
  for i, a in enumerate(argv[1:], 1):
    if a == "--":
      break
    if a.startswith("--config="):
      return i, i, a[len("--config="):]
    if a == "--config" and i + 1 < len(argv):
      return i, i + 1, argv[i + 1]
  return None


def check_config_args(argv: list[str]) -> list[str]:
  """Resolves ``--config`` (a path or a shipped name) and checks it and every
  ``--config.x`` override before absl parses the flags.

  Returns `argv` with the config path made absolute. Loads the config once before absl
  does (cheap), so that its errors are ours to report: exits 2 with one line when the
  config cannot be found or loaded (no ``get_config``, it returns a dict, it refuses its
  ``:arg`` with a ValueError/KeyError), or an override names a field the config does not
  have (through absl/ml_collections each ends in a traceback, e.g. for
  ``--config.num_step=5``).
  """
  argv = list(argv)
  found = _config_spec(argv)
  spec = found[2] if found else DEFAULT_EXPERIMENT
  path, _, arg = spec.partition(":")
  try:
    path = config_lib.resolve_config_path(path)
  except ValueError as e:
    _fail(str(e))
  if found:
    resolved = path + (":" + arg if arg else "")
    if found[0] == found[1]:
      argv[found[0]] = "--config=" + resolved
    else:
      argv[found[1]] = resolved
  overrides = [a for a in argv[1:] if a.startswith(("--config.", "--noconfig."))]
  try:
    config = config_lib.load_config_file(path, arg or None)
  except (ValueError, KeyError) as e:
    _fail(f"--config={spec}: {e.args[0] if e.args else e}")
  for a in overrides:
    field = a.split("=", 1)[0][len("--config."):] if a.startswith("--config.") else (
        a.split("=", 1)[0][len("--noconfig."):])
    node, done = config, []
    for part in field.split("."):
      if hasattr(node, "keys") and part in node:
        node = node[part]
        done.append(part)
        continue
      import difflib
      keys = list(node.keys()) if hasattr(node, "keys") else []
      close = difflib.get_close_matches(part, keys, n=1)
      where = ".".join(done) or "the config"
      hint = (f"; did you mean --config.{'.'.join(done + [close[0]])}?" if close
              else "; --print_config lists the fields")
      _fail(f"{a.split('=', 1)[0]}: {where} has no field {part!r}{hint}")
  return argv


def run(argv=None):
  """The ``sslx-train`` command and ``python -m sslx.main``."""
  main_module = sys.modules.get("__main__")
  if main_module is not None and not getattr(main_module, "__doc__", None):
    main_module.__doc__ = __doc__  # --help of the sslx-train wrapper shows this module's
  app.run(main, argv=check_config_args(sys.argv if argv is None else argv))


if __name__ == "__main__":
  run()
