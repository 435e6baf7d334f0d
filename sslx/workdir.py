"""The workdir: who may write it (a lock), what a run leaves in it, atomic writes.

A run's workdir holds ``config.json``, ``checkpoints/``, ``metrics.jsonl``,
``results.json``, ``labeled_indices.json``, ``data_fingerprint.json`` and TensorBoard
files. Two processes writing one workdir would mix two runs, so process 0 of a run holds
:class:`WorkdirLock` for as long as it runs.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local disks, NFS v3+ and
gcsfuse, unlike ``flock``, which NFS and gcsfuse do not honour reliably) holding the
holder's host, pid and start time. A daemon thread touches it every ``HEARTBEAT_S``. A
lock is stale, and taken over, when its pid is dead on this host (a SIGKILLed run can be
resumed at once) or its heartbeat is older than ``STALE_AFTER_S`` (a run killed on
another host: wait that long, or delete the file after checking that run is gone).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import socket
import threading
import time
import uuid

from absl import logging

from sslx import config as config_lib

LOCK_FILENAME = "sslx.lock"
FINGERPRINT_FILENAME = "data_fingerprint.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # 20 missed heartbeats: clocks of hosts sharing a filesystem may differ

_OWNED = ("checkpoints", "config.json", "metrics.jsonl", "results.json", "labeled_indices.json",
          FINGERPRINT_FILENAME)


# ---------------------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------------------


def _atomic_write_text(path: str, text: str) -> None:
  """Writes via ``<path>.tmp.<pid>`` and a rename; the temporary file never outlives a
  failed write (a full disk, a read-only filesystem), which raises ``ValueError``."""
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise ValueError(f"cannot write {path!r}: {e.strerror or e}") from e


def check_writable(workdir: str) -> None:
  """Refuses a workdir that is a file, or whose directory cannot be created or written."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"workdir {workdir!r} is a file, not a directory; use another --workdir.")
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):  # the nearest directory that exists
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"workdir {workdir!r}: {existing!r} is a file, not a directory.")


# ---------------------------------------------------------------------------------------
# Config and results of a previous run
# ---------------------------------------------------------------------------------------


def check_workdir(workdir: str, config, *, overwrite: bool) -> None:
  """Refuses a workdir holding a run of a different config (unless `overwrite`)."""
  check_writable(workdir)
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path) or overwrite:
    return
  with open(path) as f:
    try:
      old = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"workdir {workdir!r} has an unreadable config.json ({e}); "
                       "pass --overwrite to start afresh") from e
  # Fields added to sslx since the run started are no difference at their defaults.
  defaults = json.loads(config_lib.base_config().to_json())
  diff = config_lib.differing_fields(old, json.loads(config.to_json()), defaults=defaults)
  if diff:
    raise ValueError(
        f"workdir {workdir!r} holds a run with a different config; refusing to resume it. "
        f"Differences:\n  " + "\n  ".join(diff) +
        "\nUse another --workdir, or pass --overwrite to delete that run.")


def finished_results(workdir: str) -> dict | None:
  """``results.json`` of a finished run in `workdir`, or None if the run has not finished
  or has no ``config.json`` (the caller's :func:`check_workdir` has found that config to
  be this run's; without one, the checkpoint is checked instead)."""
  path = os.path.join(workdir, "results.json")
  if not (os.path.exists(path) and os.path.exists(os.path.join(workdir, "config.json"))):
    return None
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"workdir {workdir!r} has an unreadable results.json ({e}); delete it to "
                     "redo the final evaluation, or pass --overwrite to start afresh.") from e
  if not isinstance(results, dict):
    raise ValueError(f"workdir {workdir!r}: results.json is not a JSON object; delete it to "
                     "redo the final evaluation.")
  return results


def check_fingerprint(workdir: str, fingerprint: dict | None, *, overwrite: bool) -> None:
  """Refuses to resume a run in `workdir` on data that differs from what it started on.

  `fingerprint` is :func:`sslx.data.fingerprint`'s ``{field: value}`` (None: the source has
  none, e.g. streaming). A workdir without a fingerprint (written before sslx kept one)
  passes.
  """
  path = os.path.join(workdir, FINGERPRINT_FILENAME)
  if overwrite or fingerprint is None or not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"workdir {workdir!r} has an unreadable {FINGERPRINT_FILENAME} ({e}); "
                     "pass --overwrite to start afresh.") from e
  new = json.loads(json.dumps(fingerprint))  # tuples -> lists, as stored
  changed = [f"{k}: {old.get(k, '<missing>')!r} -> {new.get(k, '<missing>')!r}"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  if changed:
    raise ValueError(
        f"workdir {workdir!r} holds a run started on different data; refusing to resume it on "
        "this data. Changed:\n  " + "\n  ".join(changed[:10]) +
        (f"\n  ... and {len(changed) - 10} more" if len(changed) > 10 else "") +
        "\nRestore the original data, use another --workdir, or pass --overwrite.")


def write_fingerprint(workdir: str, fingerprint: dict | None) -> None:
  if fingerprint is not None:
    _atomic_write_text(os.path.join(workdir, FINGERPRINT_FILENAME),
                       json.dumps(fingerprint, indent=1, sort_keys=True))


def clear_workdir(workdir: str) -> None:
  for name in os.listdir(workdir) if os.path.isdir(workdir) else ():
    path = os.path.join(workdir, name)
    if name in _OWNED or name.startswith("events.out.tfevents"):
      shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


# ---------------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  except (OverflowError, ValueError):
    return False
  return True


def _since(epoch: float) -> str:
  return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


class WorkdirLock:
  """Process 0's exclusive claim on a workdir, from :meth:`acquire` until :meth:`release`.

  Used as a context manager around a whole run, so every exit path releases it;
  :meth:`acquire` is called once the run knows it will write (after validation).
  ``acquire`` raises ``ValueError`` naming the holder (host, pid, since when) if another
  live process holds the workdir.
  """

  def __init__(self, workdir: str, *, heartbeat_s: float = HEARTBEAT_S,
               stale_after_s: float = STALE_AFTER_S):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILENAME)
    self.heartbeat_s = heartbeat_s
    self.stale_after_s = stale_after_s
    self.record: dict | None = None  # ours, while held
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._dir_times = None  # the workdir's times before the lock file changed them
    self.wrote = False  # set by the run before its first write

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()

  def _read(self, path: str) -> dict | None:
    try:
      with open(path) as f:
        record = json.load(f)
      return record if isinstance(record, dict) else {}
    except FileNotFoundError:
      return None
    except (OSError, ValueError):  # being written, or garbage: judged by its age alone
      return {}

  def _stale_reason(self, record: dict) -> str | None:
    """Why the lock `record` (now at self.path) no longer protects a live run, or None."""
    try:
      age = time.time() - os.stat(self.path).st_mtime
    except FileNotFoundError:
      return "gone"
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int) and (
        not _pid_alive(record["pid"])):
      return f"pid {record['pid']} is no longer running on this host"
    if age > self.stale_after_s:
      return f"no heartbeat for {age:.0f} s"
    return None

  def _holder(self, record: dict) -> str:
    if not record:
      return f"an unreadable lock {self.path!r}"
    since = record.get("since")
    return (f"host {record.get('host')!r}, pid {record.get('pid')}, since "
            f"{_since(since) if isinstance(since, (int, float)) else since}")

  def acquire(self) -> None:
    try:
      os.makedirs(self.workdir, exist_ok=True)
    except OSError as e:  # read-only filesystem, full disk, no permission
      raise ValueError(f"workdir {self.workdir!r}: cannot create it: {e.strerror or e}") from e
    record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
              "token": uuid.uuid4().hex}
    st = os.stat(self.workdir)
    self._dir_times = (st.st_atime_ns, st.st_mtime_ns)
    for _ in range(3):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        held = self._read(self.path)
        if held is None:
          continue  # released meanwhile: try again
        reason = self._stale_reason(held)
        if reason is None:
          raise ValueError(
              f"workdir {self.workdir!r} is in use by another run ({self._holder(held)}); "
              f"two runs must not share a workdir. Wait for it to finish, or use another "
              f"--workdir. If that run is gone (e.g. killed on another host), delete "
              f"{self.path!r}, or wait {self.stale_after_s:.0f} s after its last heartbeat.")
        self._break(held, reason)
        continue
      except OSError as e:
        raise ValueError(f"workdir {self.workdir!r}: cannot create {self.path!r}: "
                         f"{e.strerror or e}") from e
      try:
        with os.fdopen(fd, "w") as f:
          json.dump(record, f)
          f.flush()
          os.fsync(f.fileno())
      except OSError as e:  # e.g. a full disk: leave nothing behind
        os.remove(self.path)
        os.utime(self.workdir, ns=self._dir_times)
        raise ValueError(f"workdir {self.workdir!r}: cannot write {self.path!r}: "
                         f"{e.strerror or e}") from e
      self.record = record
      self._stop.clear()
      self._thread = threading.Thread(target=self._heartbeat, name="sslx-workdir-lock",
                                      daemon=True)
      self._thread.start()
      return
    raise ValueError(f"workdir {self.workdir!r}: could not take the lock {self.path!r} "
                     "(other runs are starting in it at the same time).")

  def _break(self, held: dict, reason: str) -> None:
    """Moves a stale lock aside; if another process replaced it meanwhile, puts it back."""
    aside = f"{self.path}.stale.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return  # someone else moved it: race for the fresh one
    moved = self._read(aside) or {}
    if held and moved.get("token") != held.get("token"):  # a fresh lock: not ours to break
      try:
        os.link(aside, self.path)  # fails if a third process already made one: fine
      except OSError:
        pass
    else:
      logging.warning("sslx: took over the workdir lock of %s (%s)", self._holder(held), reason)
    try:
      os.remove(aside)
    except OSError:
      pass

  def _heartbeat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      try:
        os.utime(self.path)
      except OSError as e:
        logging.warning("sslx: cannot refresh the workdir lock %s: %s", self.path, e)

  def release(self) -> None:
    if self.record is None:
      return
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    current = self._read(self.path)
    if current and current.get("token") == self.record["token"]:
      try:
        os.remove(self.path)
        if not self.wrote:  # a run refused under the lock leaves the workdir as it found it
          os.utime(self.workdir, ns=self._dir_times)
      except OSError as e:
        if e.errno != errno.ENOENT:
          logging.warning("sslx: cannot remove the workdir lock %s: %s", self.path, e)
    self.record = None
