"""Probes a run's frozen features again: ``python scripts/probe_run.py runs/<name> [--init]``.

The linear probe and the weighted kNN of ``config.feature_eval`` (``sslx/evaluation.py``)
on the labeled subset of the run's own split, scored on its test set, for

- the workdir's latest checkpoint (the raw parameters, as the trainer's
  ``linear_probe_accuracy`` / ``knn_accuracy`` in ``results.json``), or
- with ``--init``, the network the run started from (its ``seed``'s initialisation, no
  training): the bar that says what the training itself bought.

``--probe_l2``, ``--knn_k`` and ``--knn_temperature`` change the probes' settings;
``--pixels`` adds the same linear probe on raw pixels. Any run with in-memory data can be
probed, semi-supervised ones included. Prints one JSON line per workdir; a workdir without
``config.json`` or a checkpoint is one line on stderr and exit status 2.

  python scripts/probe_run.py runs/simclr runs/simclr --init --knn_k=10
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probe(workdir: str, *, init: bool = False, pixels: bool = False, **feature_eval) -> dict:
  """``{"step": ..., "linear_probe_accuracy": ..., "knn_accuracy": ...[, pixel probe]}``.

  `feature_eval`: fields of ``config.feature_eval`` to override (``probe_l2``, ``knn_k``,
  ``knn_temperature``); the config's validation checks them.
  """
  import jax
  from sslx import plot, train
  config = plot.load_config(workdir)
  fe = config.feature_eval
  fe.linear_probe, fe.knn, fe.pixel_baseline = True, True, bool(pixels)
  for key, value in feature_eval.items():
    if value is not None:
      fe[key] = value
  rebuild = plot.rebuild_run if init else lambda c: plot.restore_latest(workdir, c)
  state, model, normalize, dataset = rebuild(config)  # both validate the config
  out = {"step": int(jax.device_get(state.step))}
  out.update(train.feature_evaluation(config, model, state, normalize, dataset))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--init", action="store_true",
                      help="probe the run's untrained initialisation, not its checkpoint")
  parser.add_argument("--pixels", action="store_true", help="add the raw-pixel linear probe")
  parser.add_argument("--probe_l2", type=float, default=None)
  parser.add_argument("--knn_k", type=int, default=None)
  parser.add_argument("--knn_temperature", type=float, default=None)
  args = parser.parse_args(argv)
  for workdir in args.workdirs:
    try:
      out = probe(workdir, init=args.init, pixels=args.pixels, probe_l2=args.probe_l2,
                  knn_k=args.knn_k, knn_temperature=args.knn_temperature)
    except (FileNotFoundError, ValueError) as e:
      print(f"error: {workdir}: {e}", file=sys.stderr)
      sys.exit(2)
    print(json.dumps({"workdir": workdir, "init": args.init, **out}), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
