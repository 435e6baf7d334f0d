"""The trainer: the loop around one assembled experiment.

``train_and_evaluate(config, workdir)``: ``sslx.experiment.setup(config)`` builds the
state, the jitted step (``sslx/step.py``), evaluation and input and checks the config and
data; the workdir is then locked and checked (``sslx/workdir.py``), the latest checkpoint
restored (``sslx/checkpoints.py``), and the loop runs the steps with bounded dispatch and a
stall watchdog (``sslx/dispatch.py``), logs (``sslx/metrics.py``), evaluates, checkpoints
and handles preemption (SIGTERM, Ctrl-C).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from sslx import dispatch, experiment
from sslx import workdir as workdir_lib
from sslx.workdir import _OWNED, _atomic_write_text, check_workdir, clear_workdir  # noqa: F401
# The functional core lives in sslx/step.py and the assembly in sslx/experiment.py; these
# names stay importable from here for scripts and tests.
from sslx.experiment import build_model, make_normalize, setup  # noqa: F401
from sslx.step import (TrainState, batch_sharded, create_train_state, ema_update,  # noqa: F401
                       global_batch, make_eval_fn, make_mesh, make_refresh_fn, make_train_step,
                       replicated, to_host)
from sslx.checkpoints import (_checkpoint_manager, checkpoint_mismatches,  # noqa: F401
                              restore_checked, restore_checkpoint, save_checkpoint)
from sslx.metrics import MetricWriter, _parse_row  # noqa: F401

PREEMPTED_EXIT_CODE = 42  # what `python -m sslx.main` exits with after a SIGTERM checkpoint


class NonFiniteError(FloatingPointError):
  """The loss or the gradients became NaN or infinite."""


class Preempted(Exception):
  """A SIGTERM arrived; a checkpoint was written at `step`."""

  def __init__(self, step: int, signal_name: str = "SIGTERM"):
    super().__init__(f"preempted ({signal_name}): checkpoint written at step {step}")
    self.step = step
    self.signal_name = signal_name




def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class _SigtermFlag:
  """Tells the loop, after each step, whether to checkpoint and stop for a preemption.

  One process: a Python handler for SIGTERM and SIGINT (Ctrl-C) sets a flag, so Ctrl-C
  also checkpoints and exits 42; a second Ctrl-C only repeats that it is stopping. Several processes
  (``jax.distributed``): a host may get SIGTERM steps before another, and a host that
  stopped alone would leave the others waiting in a collective. JAX's preemption sync
  manager (started by ``jax.distributed.initialize``) catches SIGTERM on any host and all
  hosts agree on one step (``CheckpointManager.reached_preemption``, orbax's wrapper of
  ``multihost_utils.reached_preemption_sync_point``), so every host saves that step. A
  Python handler would hide the signal from it, so none is installed there.
  """

  def __init__(self, manager):
    self.raised = False
    self._manager = manager
    self._multihost = jax.process_count() > 1
    self._previous = {}
    self.signal_name = "SIGTERM"

  def __enter__(self):
    if self._multihost:
      return self
    for signum in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not in the main thread: no handler
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if not self.raised:
      self.signal_name = signal.Signals(signum).name
    print(f"{signal.Signals(signum).name}: stopping after this step; a checkpoint of it is "
          "written first (run the same command again to resume)", file=sys.stderr, flush=True)
    self.raised = True

  def reached(self, step: int) -> bool:
    """Call once after every step (all hosts): True = checkpoint `step` and stop."""
    if self._multihost:
      self.raised = self.raised or self._manager.reached_preemption(step)
    return self.raised

  def __exit__(self, exc_type, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, signal.SIG_DFL if previous is None else previous)
    if exc_type is not None:  # e.g. NonFiniteError: commit the good checkpoint still being
      self._manager.wait_until_finished()  # written (async) before the process exits


def feature_evaluation(config, model, state, normalize, dataset) -> dict[str, float]:
  """Linear probe / weighted kNN on frozen features, as `config.feature_eval` asks."""
  from sslx import evaluation
  fe = config.feature_eval
  if not (fe.linear_probe or fe.knn or fe.pixel_baseline):
    return {}
  params, model_state = to_host(state.params["model"]), to_host(state.model_state)
  out = {}
  if fe.linear_probe or fe.knn:
    feats = lambda x: evaluation.extract_features(model, params, model_state, normalize, x)
    train_f, test_f = feats(dataset.labeled_images), feats(dataset.test_images)
    if fe.linear_probe:
      out["linear_probe_accuracy"] = evaluation.linear_probe_accuracy(
          train_f, dataset.labeled_labels, test_f, dataset.test_labels,
          num_classes=dataset.num_classes, l2=fe.probe_l2)
    if fe.knn:
      out["knn_accuracy"] = evaluation.knn_accuracy(
          train_f, dataset.labeled_labels, test_f, dataset.test_labels,
          num_classes=dataset.num_classes, k=fe.knn_k, temperature=fe.knn_temperature)
  if fe.pixel_baseline:
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
    out["pixel_linear_probe_accuracy"] = evaluation.linear_probe_accuracy(
        flat(dataset.labeled_images), dataset.labeled_labels, flat(dataset.test_images),
        dataset.test_labels, num_classes=dataset.num_classes, l2=fe.probe_l2)
  for k, v in out.items():
    logging.info("%s %.4f", k, v)
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       overwrite: bool = False, devices=None) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its latest checkpoint) and evaluates.

  Every check that can fail runs before anything is written to `workdir`; process 0
  then holds the workdir's lock (``sslx.workdir.WorkdirLock``) until it returns or raises.
  A workdir whose run already finished is not rerun: its ``results.json`` is returned.
  Returns the dict written to ``results.json``.
  """
  with workdir_lib.WorkdirLock(workdir) as lock:  # acquired after validation, below
    return _train_and_evaluate(config, workdir, overwrite=overwrite, devices=devices, lock=lock)


def _train_and_evaluate(config, workdir: str, *, overwrite: bool, devices, lock) -> dict[str, Any]:
  t_start = time.time()
  # -- Assemble everything (validates config and data; writes nothing).
  exp = experiment.setup(config, devices=devices)
  dataset, mesh, model, normalize = exp.dataset, exp.mesh, exp.model, exp.normalize
  pool_sizes, num_devices, streaming = exp.pool_sizes, exp.num_devices, exp.input.streaming
  train_step, evaluate, refresh = exp.train_step, exp.evaluate, exp.refresh
  check_workdir(workdir, config, overwrite=overwrite)
  fingerprint = getattr(dataset, "fingerprint", None)
  workdir_lib.check_fingerprint(workdir, fingerprint, overwrite=overwrite)

  # -- Workdir.
  is_chief = jax.process_index() == 0
  if is_chief:  # one run per workdir; rechecked under the lock (another run may have written)
    lock.acquire()
    check_workdir(workdir, config, overwrite=overwrite)
    workdir_lib.check_fingerprint(workdir, fingerprint, overwrite=overwrite)
  # lock.wrote: the workdir changed (a refusal before then restores its mtime on release)
  lock.wrote = overwrite or not os.path.isdir(os.path.join(workdir, "checkpoints"))
  if overwrite and is_chief:
    clear_workdir(workdir)
  os.makedirs(workdir, exist_ok=True)

  # -- Resume.
  state = exp.state
  manager = _checkpoint_manager(workdir, config.keep_checkpoints)
  if manager.latest_step() is not None:
    state = restore_checked(manager, state, workdir)  # a clear ValueError, workdir untouched
    finished = None if overwrite else workdir_lib.finished_results(workdir)
    if finished is not None and int(to_host(state.step)) >= config.num_steps:
      manager.close()  # a rerun of a finished run: report it, rewrite nothing
      logging.info("%s holds this config's finished run; not rerunning it (pass --overwrite "
                   "to start afresh). Its results.json:\n%s", workdir,
                   json.dumps(finished, indent=2))
      return finished
    logging.info("Resumed from checkpoint at step %d", int(to_host(state.step)))
  lock.wrote = True
  if is_chief:  # only after a successful restore: a refused resume leaves the workdir as it was
    _atomic_write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))
    dataset.save_split(workdir)
    workdir_lib.write_fingerprint(workdir, fingerprint)
  start_step = int(to_host(state.step))
  inputs = exp.input.iterate(start_step)
  arrays = exp.input.arrays  # for a refresh (device-resident data only)
  writer = MetricWriter(workdir, resume_step=start_step, enabled=is_chief)
  logging.info("Training %s on %s: %d devices (%s), steps %d -> %d, labeled batch %d, "
               "unlabeled batch %d", config.method, dataset.name, num_devices,
               jax.devices()[0].platform, start_step, config.num_steps, config.batch_size,
               config.batch_size * config.unlabeled_ratio)

  def evaluate_both(state) -> dict[str, float]:
    out = {}
    for name, params in (("test/accuracy", state.params["model"]),
                         ("test/accuracy_ema", state.ema_params)):
      if streaming:
        out[name] = evaluate.stream(params, state.model_state, dataset.eval_batches(
            config.eval_batch_size // jax.process_count()))
      else:
        out[name] = evaluate(params, state.model_state, dataset.test_images, dataset.test_labels)
    return out

  pending: list[tuple[int, dict]] = []  # device metrics since the last log step
  skipped_updates = int(writer.resumed_row.get("skipped_updates", 0))  # counted before a resume

  def flush(step: int, extra: dict[str, float] | None = None) -> dict[str, float]:
    """Fetches pending metrics (one transfer), checks them, logs their mean."""
    nonlocal skipped_updates
    if not pending:
      return {}
    host = to_host([m for _, m in pending])
    steps = [s for s, _ in pending]
    pending.clear()
    for s, m in zip(steps, host):
      if m["nonfinite"] and not config.skip_nonfinite_updates:
        bad = sorted(k for k, v in m.items() if k.startswith("loss") and not np.isfinite(v))
        raise NonFiniteError(
            f"non-finite loss or gradients in the update from step {s - 1} to step {s}: "
            f"{', '.join(f'{k}={m[k]}' for k in bad) or 'loss terms finite, gradients not'} "
            f"(grad_norm={m['grad_norm']}). The last good checkpoint is kept; set "
            "skip_nonfinite_updates=True to skip such updates instead.")
      skipped_updates += int(m["nonfinite"])
    scalars = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "nonfinite"}
    scalars["skipped_updates"] = float(skipped_updates)
    scalars.update(extra or {})
    writer.write(step, scalars)
    return scalars

  # -- Loop.
  step = start_step
  t_last, step_last = time.time(), start_step
  watchdog = dispatch.Watchdog(
      config.stall_timeout_s, what_next=f"The newest checkpoint in {workdir} is kept: run the "
      "same command again to resume from it.")
  with watchdog, _SigtermFlag(manager) as sigterm:
    while step < config.num_steps:
      if refresh is not None and refresh.due(step):  # a pure function of (state, data)
        watchdog.running(f"the refresh before step {step + 1}")
        state = refresh(state, arrays)
      oldest = max(step + 1 - dispatch.DEFAULT_DEPTH, start_step + 1)  # queued, may be running
      if step == start_step:  # the first call compiles: host work, not a stalled device
        watchdog.idle()
      else:
        watchdog.running(f"train steps {oldest} to {step + 1}")
      state, metrics = train_step(state, next(inputs))
      step += 1
      pending.append((step, metrics))
      if step == start_step + 1:  # first line right after compilation; rates exclude it
        watchdog.running(f"train step {step}")
        jax.block_until_ready(metrics)
        now = time.time()
        logging.info("step %d/%d: compiled and ran the first step in %.1f s", step,
                     config.num_steps, now - t_last)
        t_last, step_last = now, step
      preempted = sigterm.reached(step)  # read once: the signal may land mid-iteration
      is_log = step % config.log_every == 0 or step == config.num_steps
      is_eval = step % config.eval_every == 0 or step == config.num_steps
      is_ckpt = step % config.checkpoint_every == 0 or step == config.num_steps
      if is_log or is_eval or is_ckpt or preempted:
        watchdog.running(f"evaluation at step {step}" if is_eval else f"train step {step}")
        scalars = flush(step, evaluate_both(state) if is_eval else None)
        if is_log:
          now = time.time()
          rate = (step - step_last) / max(now - t_last, 1e-9)
          t_last, step_last = now, step
          shown = " ".join(f"{k} {v:.4g}" for k, v in sorted(scalars.items())
                           if k in ("loss", "learning_rate") or k.startswith("test/"))
          logging.info("step %d/%d %s %.2f steps/s ETA %s", step, config.num_steps, shown,
                       rate, _format_eta((config.num_steps - step) / max(rate, 1e-9)))
      if is_ckpt or preempted:  # after flush(): a non-finite state is never saved
        watchdog.running(f"the checkpoint save at step {step}")
        save_checkpoint(manager, state)
      if preempted and step < config.num_steps:
        manager.wait_until_finished()
        writer.close()
        raise Preempted(step, sigterm.signal_name)
    watchdog.running("finishing the checkpoint writes")
    manager.wait_until_finished()
    watchdog.running(f"the final evaluation at step {step}")
    final = evaluate_both(state)

  # -- Results.
  results = {
      "method": config.method, "dataset": dataset.name, "model": config.model.name,
      "num_labels": pool_sizes["labeled"], "steps": int(to_host(state.step)),
      "test_accuracy": final["test/accuracy"], "test_accuracy_ema": final["test/accuracy_ema"],
      "num_devices": num_devices, "platform": jax.devices()[0].platform,
      "num_processes": jax.process_count(), "skipped_updates": skipped_updates,
      "resumed_from_step": start_step, "wall_time_s": round(time.time() - t_start, 2),
  }
  results.update(feature_evaluation(config, model, state, normalize, dataset))
  if is_chief:
    _atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
  writer.close()
  manager.close()
  logging.info("Done: test accuracy %.4f (EMA %.4f), %d steps, %.1f s",
               results["test_accuracy"], results["test_accuracy_ema"], results["steps"],
               results["wall_time_s"])
  return results
