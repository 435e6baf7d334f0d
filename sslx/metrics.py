"""Metric writing: ``metrics.jsonl`` (one JSON object per log step) and TensorBoard."""

from __future__ import annotations

import json
import os

from sslx.workdir import _atomic_write_text


def _parse_row(line: str) -> dict | None:
  """One ``metrics.jsonl`` row, or None for a blank or cut-off line (a SIGKILL mid-write)."""
  try:
    row = json.loads(line)
  except json.JSONDecodeError:
    return None
  return row if isinstance(row, dict) else None


class MetricWriter:
  """``metrics.jsonl`` (one JSON object per log step) and TensorBoard (no TensorFlow)."""

  def __init__(self, workdir: str, *, resume_step: int, enabled: bool):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.resumed_row: dict = {}  # the last row kept from a previous run (counters resume)
    if not enabled:
      return
    if os.path.exists(self.path):  # drop what a crashed run logged past its checkpoint
      with open(self.path) as f:
        rows = [_parse_row(l) for l in f]
      rows = [r for r in rows if r is not None and r.get("step", 0) <= resume_step]
      self.resumed_row = rows[-1] if rows else {}
      _atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(logdir=workdir)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **scalars}, sort_keys=True) + "\n")
    for k, v in scalars.items():
      self.tb.add_scalar(k, v, step)
    self.tb.flush()

  def close(self):
    if self.enabled:
      self.tb.close()
