"""How many programs the host may queue ahead of the devices, and what stops a stalled run.

Why a bound (the multi-device CPU deadlock)
-------------------------------------------
JAX dispatches asynchronously: ``train_step(state, arrays)`` returns as soon as the
program is queued. On XLA:CPU each device admits a limited number of queued programs
(the PJRT CPU client's per-device "in-flight computations" semaphore, 32 slots). The
launch that waits for a slot waits *on a thread of the client's pool*, which has only
``max(cores, devices)`` threads and is also the pool that runs the queued programs. With
2 devices on 2 cores and more than ~32 steps queued between two host syncs:

* device 0 runs step k; its all-reduce blocks its thread until device 1 arrives;
* the other thread is taken by a launch of a later step, blocked on a full semaphore;
* device 1's step k is queued behind them with no thread left to run it.

Nobody can move; after 40 s XLA aborts the process (``rendezvous.cc: Termination timeout
... Expected 2 threads to join the rendezvous, but only 1 of them arrived``). It needs
collectives (so: 2+ devices) and a long queue (many steps between log/eval/checkpoint
syncs), and load makes it likelier. ``scripts/repro_cpu_deadlock.py`` shows it in 20
lines: 30 queued steps always pass, 40 always hang, and any bound passes.

The fix is at the dispatch: :class:`Pacer` keeps at most ``depth`` calls of a compiled
program in flight, waiting for the oldest before queueing another. Two queued steps are
enough to keep the devices busy (the host needs well under a millisecond to dispatch a
step), so the bound costs no throughput. Every compiled program the trainer calls in a
loop goes through one (the train step; eval and refresh sync each call already).

The watchdog
------------
:class:`Watchdog` is the net under everything else: if the host has waited on one piece of
device work (a step, an evaluation, a refresh, a checkpoint; not the first step's
compilation, which is host work) for longer than ``config.stall_timeout_s``, it prints what was running and exits the process with
:data:`STALLED_EXIT_CODE`. Checkpoints are written atomically, so the newest one is intact
and rerunning the command resumes exactly. Without it a stuck collective on GPU/TPU hangs
forever, and on CPU XLA's abort says nothing about the step.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time

import jax

DEFAULT_DEPTH = 2  # programs in flight per compiled function; far below XLA:CPU's 32
STALLED_EXIT_CODE = 43  # `python -m sslx.main` exit status when the watchdog stops a run


class Pacer:
  """Keeps at most ``depth`` dispatched calls of one program in flight.

  ``pacer.admit(outputs)`` after each call: once more than ``depth`` calls are queued, it
  blocks until the oldest call's outputs are ready. ``outputs`` must not be donated to a
  later call (pass the metrics, not the state).
  """

  def __init__(self, depth: int = DEFAULT_DEPTH):
    if depth < 1:
      raise ValueError(f"depth must be >= 1, got {depth}")
    self.depth = depth
    self._queue: collections.deque = collections.deque()

  def admit(self, outputs) -> None:
    self._queue.append(outputs)
    while len(self._queue) > self.depth:
      jax.block_until_ready(self._queue.popleft())

  def drain(self) -> None:
    """Waits for every call still in flight."""
    while self._queue:
      jax.block_until_ready(self._queue.popleft())

  @property
  def in_flight(self) -> int:
    """Calls admitted and not yet waited for (at most ``depth``)."""
    return len(self._queue)


class Watchdog:
  """Stops the process when one piece of device work takes longer than ``timeout_s``.

  ``watchdog.running("train step 537")`` before each blocking piece of work names it and
  restarts the clock; ``watchdog.idle()`` stops the clock (host-only work such as a
  feature probe is not watched). A daemon thread checks once a second; on a stall it writes
  one line to stderr and calls ``on_stall(message)``, by default ``os._exit(43)``: the
  stuck thread is inside the runtime and cannot be interrupted, and everything written so
  far (checkpoints, metrics) was written atomically. ``timeout_s <= 0`` turns it off.
  """

  def __init__(self, timeout_s: float, *, on_stall=None, what_next: str = ""):
    self.timeout_s = float(timeout_s)
    self.what_next = what_next
    self._on_stall = on_stall or (lambda message: os._exit(STALLED_EXIT_CODE))
    self._lock = threading.Lock()
    self._what: str | None = None
    self._since = 0.0
    self._stop = threading.Event()
    self._thread = None
    self.fired: str | None = None

  def __enter__(self):
    if self.timeout_s > 0:
      self._thread = threading.Thread(target=self._watch, name="sslx-watchdog", daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def running(self, what: str) -> None:
    with self._lock:
      self._what, self._since = what, time.monotonic()

  def idle(self) -> None:
    with self._lock:
      self._what = None

  def _watch(self):
    while not self._stop.wait(min(1.0, self.timeout_s / 4)):
      with self._lock:
        what, waited = self._what, time.monotonic() - self._since
      if what is None or waited <= self.timeout_s:
        continue
      message = (f"error: stalled: no progress for {waited:.0f} s in {what} "
                 f"(stall_timeout_s={self.timeout_s:g}). {self.what_next}").rstrip()
      self.fired = message
      print(message, file=sys.stderr, flush=True)
      self._on_stall(message)
      return
