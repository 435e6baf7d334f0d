"""Checkpoints: orbax ``CheckpointManager`` around the whole ``TrainState``.

A checkpoint is refused before any array is read when its tree does not fit the state
this config builds (names, shapes, dtypes are compared on orbax's metadata), so a
resume on another model/optimizer/method says which fields differ and writes nothing.
Orbax writes each step into a temporary directory and commits it by renaming, so a
process killed mid-save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import os

import flax
import jax
import numpy as np

from sslx.step import TrainState, to_host


def _checkpoint_manager(workdir: str, keep: int):
  import orbax.checkpoint as ocp
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options, item_handlers=ocp.StandardCheckpointHandler())


def save_checkpoint(manager, state: TrainState) -> None:
  import orbax.checkpoint as ocp
  step = int(to_host(state.step))
  manager.save(step, args=ocp.args.StandardSave(flax.serialization.to_state_dict(state)))


def restore_checkpoint(manager, state: TrainState, step: int | None = None) -> TrainState:
  import orbax.checkpoint as ocp
  step = manager.latest_step() if step is None else step
  target = flax.serialization.to_state_dict(state)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  return flax.serialization.from_state_dict(state, restored)


def _leaf_specs(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  """``{'params.encoder.conv0.kernel': (shape, dtype name)}`` for arrays or orbax metadata."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path):
          (tuple(x.shape) if hasattr(x, "shape") else np.shape(x),
           np.dtype(x.dtype).name if hasattr(x, "dtype") else type(x).__name__)
          for path, x in flat}


def checkpoint_mismatches(checkpoint_tree, state_dict) -> list[str]:
  """Where a checkpoint's tree (orbax metadata) and this run's state dict disagree."""
  def show(spec):
    return f"{spec[1]}{list(spec[0])}"
  saved, wanted = _leaf_specs(checkpoint_tree), _leaf_specs(state_dict)
  out = [f"{k}: in this run's state, missing from the checkpoint"
         for k in sorted(set(wanted) - set(saved))]
  out += [f"{k}: in the checkpoint, not in this run's state" for k in sorted(set(saved) - set(wanted))]
  out += [f"{k}: checkpoint {show(saved[k])}, this run {show(wanted[k])}"
          for k in sorted(set(saved) & set(wanted)) if saved[k] != wanted[k]]
  return out


def restore_checked(manager, state: TrainState, workdir: str) -> TrainState:
  """Restores the latest checkpoint, or raises a ValueError that says what is wrong with it.

  Checks the checkpoint's metadata against `state` (names, shapes, dtypes) before reading
  any array, so a checkpoint of another model/optimizer is refused with the differing
  fields named; unreadable metadata or array files (a corrupt or partly deleted step)
  are refused too. Nothing is written either way.
  """
  step = manager.latest_step()
  where = os.path.join(workdir, "checkpoints", str(step))
  older = [s for s in manager.all_steps() if s != step]
  fix = ("Use another --workdir, or pass --overwrite to delete this run" +
         (f", or delete {where} to resume from step {max(older)}" if older else "") + ".")
  try:
    metadata = manager.item_metadata(step)
    tree = getattr(metadata, "tree", metadata)
    if not isinstance(tree, dict):
      raise ValueError(f"no array metadata found (got {type(metadata).__name__})")
  except Exception as e:  # orbax/tensorstore raise many kinds
    raise ValueError(
        f"workdir {workdir!r}: the checkpoint at step {step} is unreadable, corrupt or partly "
        f"deleted ({type(e).__name__}: {e}). {fix}") from e
  problems = checkpoint_mismatches(tree, flax.serialization.to_state_dict(state))
  if problems:
    shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
    raise ValueError(
        f"workdir {workdir!r}: the checkpoint at step {step} does not fit this config's state "
        f"(written by another model, optimizer or method?):\n  " + "\n  ".join(shown) +
        f"\n{fix}")
  try:
    restored = restore_checkpoint(manager, state, step)
  except Exception as e:  # orbax/tensorstore raise many kinds
    raise ValueError(
        f"workdir {workdir!r}: the checkpoint at step {step} could not be read; its files are "
        f"corrupt ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}). {fix}") from e
  if int(to_host(restored.step)) != step:
    raise ValueError(
        f"workdir {workdir!r}: the checkpoint directory {where} holds the state of step "
        f"{int(to_host(restored.step))}, not {step} (renamed by hand?). {fix}")
  return restored
