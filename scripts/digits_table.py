"""Reproduces the README's digits results table: every method, several seeds, mean +- std.

  python scripts/digits_table.py --labels_per_class=2,5 --seeds=0,1,2 --out=results/digits_table_v2

Each (row, labels per class, seed) trains in its own workdir under ``--workroot`` (a
re-run resumes or just re-reads finished runs), with ``seed`` and ``data.split_seed`` both
set to the seed, so each seed is a different labeled subset *and* initialisation.
Writes ``<out>.json`` (every number) and ``<out>.md`` (the table) and prints the table.
``--rows`` picks rows by name; ``--smoke`` runs every row at smoke size (for tests).

``--dataset=notmnist`` runs the rows that exist on the notMNIST recipe instead
(``experiments/notmnist.py``: the 28x28 network, views and schedule; each method row is
``notmnist.py:method=NAME``, the default job's row is the recipe itself), 10 labels per
class by default, into ``results/notmnist_table``:

  python scripts/digits_table.py --dataset=notmnist --rows=flexmatch --seeds=0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str):
  from sslx.config import load_config_file
  return load_config_file(os.path.join(REPO, "experiments", f"{name}.py"), arg)


def trainer_row(experiment: str, metric: str, overrides=None, all_labels: bool = False,
                args: str = "", shares_runs_of: str | None = None):
  """A row that trains `experiment` (with config `args`) and reports `metric`.

  `shares_runs_of`: read another row's runs (same config, another metric) instead of
  training again.
  """

  def run(seed: int, labels_per_class: int, workdir: str, smoke: bool) -> float:
    from sslx import train
    if shares_runs_of:
      parts = workdir.split(os.sep)
      workdir = os.sep.join(parts[:-3] + [shares_runs_of] + parts[-2:])
    if all_labels:  # the label count does not change this run: one set of runs for all columns
      parts = workdir.split(os.sep)
      workdir = os.sep.join(parts[:-2] + ["all_labels", parts[-1]])
    arg = ",".join(a for a in ("smoke" if smoke else "", args,
                               "" if all_labels else f"labels_per_class={labels_per_class}") if a)
    config = load_config(experiment, arg)
    config.seed = seed
    config.data.split_seed = seed
    for key, value in (overrides or {}).items():
      node = config
      *parents, leaf = key.split(".")
      for p in parents:
        node = node[p]
      node[leaf] = value
    return float(train.train_and_evaluate(config, workdir)[metric])
  return run


def _pixels(seed: int, labels_per_class: int, data_name: str):
  """Flattened [0, 1] pixels of the labeled subset (the trainer rows' split for `seed`),
  the rest of the training set (labels -1) and the test set."""
  from sslx import data
  cfg = data.default_data_config()
  cfg.name = data_name
  cfg.num_labels = 10 * labels_per_class
  cfg.split_seed = seed
  cfg.unlabeled_pool = "rest"
  ds = data.load_dataset(cfg)
  flat = lambda x: x.reshape(len(x), -1).astype(np.float64) / 255.0
  x = np.concatenate([flat(ds.labeled_images), flat(ds.unlabeled_images)])
  y = np.concatenate([ds.labeled_labels, np.full(len(ds.unlabeled_images), -1)])
  return x, y, flat(ds.test_images), ds.test_labels


def label_spreading_row(which: str, data_name: str = "digits"):
  """scikit-learn's or sslx's LabelSpreading(kernel='knn') on raw pixels, test accuracy."""

  def run(seed: int, labels_per_class: int, workdir: str, smoke: bool) -> float:
    del workdir, smoke
    x, y, x_test, y_test = _pixels(seed, labels_per_class, data_name)
    if which == "sklearn":
      from sklearn.semi_supervised import LabelSpreading
    else:
      from sslx import LabelSpreading
    model = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2, max_iter=1000)
    model.fit(x, y)
    return float(np.mean(model.predict(x_test) == y_test))
  return run


# name -> (description, runner). Ablations change one ingredient of the best recipe.
ROWS = {
    "supervised_labeled": ("Supervised, labeled subset only",
                           trainer_row("supervised_digits", "test_accuracy_ema")),
    "supervised_all": ("Supervised, all 1437 labels (upper bound)",
                       trainer_row("supervised_digits", "test_accuracy_ema", all_labels=True)),
    "sklearn_label_spreading": ("scikit-learn LabelSpreading (kNN graph, raw pixels)",
                                label_spreading_row("sklearn")),
    "sslx_label_spreading": ("sslx LabelSpreading (kNN graph, raw pixels)",
                             label_spreading_row("sslx")),
    "simclr_linear_probe": ("SimCLR + linear probe on the labeled subset",
                            trainer_row("simclr_digits", "linear_probe_accuracy")),
    "pixels_linear_probe": ("Linear probe on raw pixels (the bar SimCLR must beat)",
                            trainer_row("simclr_digits", "pixel_linear_probe_accuracy",
                                        shares_runs_of="simclr_linear_probe")),
    "fixmatch": ("FixMatch", trainer_row("fixmatch_digits", "test_accuracy_ema")),
    "fixmatch_no_ema": ("FixMatch, raw params (no EMA)",
                        trainer_row("fixmatch_digits", "test_accuracy",
                                                    shares_runs_of="fixmatch")),
    "fixmatch_da": ("FixMatch + distribution alignment, threshold 0.9",
                    trainer_row("fixmatch_digits", "test_accuracy_ema", args="da=1,threshold=0.9")),
    "fixmatch_da_graph": ("FixMatch + DA + in-batch graph pseudo-labels (the default job)",
                          trainer_row("fixmatch_graph_digits", "test_accuracy_ema")),
    "fixmatch_da_graph_no_da": ("The default job without distribution alignment",
                                trainer_row("fixmatch_graph_digits", "test_accuracy_ema",
                                            overrides={"fixmatch.distribution_alignment": False})),
    "fixmatch_da_graph_nt_xent": ("The default job + NT-Xent (all three families in one step)",
                                  trainer_row("fixmatch_graph_digits", "test_accuracy_ema",
                                              args="nt_xent=0.1")),
    "fixmatch_nt_xent": ("FixMatch + NT-Xent",
                         trainer_row("fixmatch_simclr_digits", "test_accuracy_ema")),
    "deep_lp": ("Deep label propagation (Iscen et al.)",
                trainer_row("lp_digits", "test_accuracy_ema")),
    "mean_teacher": ("Mean Teacher (Tarvainen & Valpola)",
                     trainer_row("mean_teacher_digits", "test_accuracy_ema")),
    **{name: (title, trainer_row(f"{name}_digits", "test_accuracy_ema")) for name, title in (
        ("pseudo_label", "Pseudo-Label"), ("pi_model", "Pi-model"), ("uda", "UDA"),
        ("vat", "VAT + EntMin"), ("mixmatch", "MixMatch"),
        ("flexmatch", "FlexMatch"), ("freematch", "FreeMatch"), ("softmatch", "SoftMatch"),
        ("dash", "Dash"), ("adamatch", "AdaMatch"), ("simmatch", "SimMatch"),
        ("comatch", "CoMatch"), ("remixmatch", "ReMixMatch"),
        ("co_training", "Co-training (two networks)"),
        ("self_training", "Self-training / Noisy Student (rounds)"))},
    "byol_linear_probe": ("BYOL + linear probe on the labeled subset",
                          trainer_row("byol_digits", "linear_probe_accuracy")),
    "byol_knn": ("BYOL + weighted kNN on the labeled subset",
                 trainer_row("byol_digits", "knn_accuracy", shares_runs_of="byol_linear_probe")),
    "rotation_linear_probe": ("Rotation prediction + linear probe on the labeled subset",
                              trainer_row("rotation_digits", "linear_probe_accuracy")),
    "rotation_knn": ("Rotation prediction + weighted kNN on the labeled subset",
                     trainer_row("rotation_digits", "knn_accuracy",
                                 shares_runs_of="rotation_linear_probe")),
    **{row: (f"{title} + {probe} on the labeled subset",
             trainer_row(f"{name}_digits", metric,
                         shares_runs_of=None if metric == "linear_probe_accuracy"
                         else f"{name}_linear_probe"))
       for name, title in (("simsiam", "SimSiam"), ("barlow_twins", "Barlow Twins"),
                           ("vicreg", "VICReg"), ("moco", "MoCo v3"), ("dino", "DINO"),
                           ("swav", "SwAV"), ("nnclr", "NNCLR"), ("mae", "MAE"))
       for row, probe, metric in ((f"{name}_linear_probe", "linear probe", "linear_probe_accuracy"),
                                  (f"{name}_knn", "weighted kNN", "knn_accuracy"))},
}


def _experiment_module(name: str):
  from sslx.config import load_config_module
  return load_config_module(os.path.join(REPO, "experiments", f"{name}.py"))


def _notmnist_rows():
  """The rows that run on notMNIST: the supervised bounds, the default job's recipe, every
  method of ``notmnist.METHODS`` (plain FixMatch included) and label spreading on the
  file's raw pixels."""
  notmnist = _experiment_module("notmnist")
  methods = notmnist.METHODS
  metric = "test_accuracy_ema"
  rows = {
      "supervised_labeled": (ROWS["supervised_labeled"][0],
                             trainer_row("notmnist", metric, args="supervised")),
      "supervised_all": ("Supervised, all 8,000 labels (upper bound)",
                         trainer_row("notmnist", metric, all_labels=True,
                                     args="supervised,labels_per_class=all")),
      "fixmatch_da_graph": (ROWS["fixmatch_da_graph"][0], trainer_row("notmnist", metric)),
      **{f"{which}_label_spreading": (
          ROWS[f"{which}_label_spreading"][0],
          label_spreading_row(which, "npz:" + notmnist.DATA_PATH)) for which in ("sklearn", "sslx")},
  }
  row_of = {"lp": "deep_lp", "fixmatch_simclr": "fixmatch_nt_xent"}  # method -> digits row
  rows.update({row_of.get(m, m): (ROWS[row_of.get(m, m)][0],
                                  trainer_row("notmnist", metric, args=f"method={m}"))
               for m in methods})
  # The default job's ablation rows change the same ingredient of the 28x28 recipe.
  rows.update({
      "fixmatch_no_ema": (ROWS["fixmatch_no_ema"][0], trainer_row(
          "notmnist", "test_accuracy", args="method=fixmatch", shares_runs_of="fixmatch")),
      "fixmatch_da": (ROWS["fixmatch_da"][0], trainer_row(
          "notmnist", metric, args="method=fixmatch",
          overrides={"fixmatch.distribution_alignment": True, "fixmatch.threshold": 0.9})),
      "fixmatch_da_graph_no_da": (ROWS["fixmatch_da_graph_no_da"][0], trainer_row(
          "notmnist", metric, overrides={"fixmatch.distribution_alignment": False})),
      "fixmatch_da_graph_nt_xent": (ROWS["fixmatch_da_graph_nt_xent"][0], trainer_row(
          "notmnist", metric, args="nt_xent=0.1")),
  })
  # Self-supervised rows: notmnist_ssl.py:method=NAME, the probes' metric of the digits row
  # of the same name (a kNN row reads its probe row's runs).
  for m in _experiment_module("notmnist_ssl").METHODS:
    for probe, m_metric in (("linear_probe", "linear_probe_accuracy"), ("knn", "knn_accuracy")):
      row = f"{m}_{probe}"
      if row in ROWS:
        rows[row] = (ROWS[row][0], trainer_row(
            "notmnist_ssl", m_metric, args=f"method={m}",
            shares_runs_of=None if probe == "linear_probe" else f"{m}_linear_probe"))
  rows["pixels_linear_probe"] = (ROWS["pixels_linear_probe"][0], trainer_row(
      "notmnist_ssl", "pixel_linear_probe_accuracy", args="method=simclr",
      shares_runs_of="simclr_linear_probe"))
  return rows


_DEFAULTS = {"digits": ("2,5", "runs/digits_table", "results/digits_table_v2"),
             "notmnist": ("10", "runs/notmnist_table", "results/notmnist_table")}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="digits", choices=sorted(_DEFAULTS))
  parser.add_argument("--rows", default=None,
                      help="comma-separated row names (default: every row of --dataset)")
  parser.add_argument("--labels_per_class", default=None, help="default: 2,5 (notmnist: 10)")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--workroot", default=None,
                      help="default: runs/digits_table (notmnist: runs/notmnist_table)")
  parser.add_argument("--out", default=None,
                      help="default: results/digits_table_v2 (notmnist: results/notmnist_table)")
  parser.add_argument("--jax_cache", default=None,
                      help="persistent XLA compilation cache shared by the runs (default "
                           "<workroot>/jax_cache; '' turns it off): each row's seeds and "
                           "columns compile the same programs (fixmatch_graph_digits: first "
                           "step 40 s without, 6.5 s with)")
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--report_only", action="store_true",
                      help="print the table of what <out>.json holds; train nothing")
  args = parser.parse_args(argv)
  table_rows = ROWS if args.dataset == "digits" else _notmnist_rows()
  default_lpc, default_workroot, default_out = _DEFAULTS[args.dataset]
  args.labels_per_class = args.labels_per_class or default_lpc
  args.workroot = args.workroot or default_workroot
  args.out = args.out or default_out
  rows = [r for r in (args.rows or ",".join(table_rows)).split(",") if r]
  unknown = [r for r in rows if r not in table_rows]
  if unknown:
    parser.error(f"unknown rows {unknown} for --dataset={args.dataset}; known: "
                 f"{list(table_rows)}")
  lpcs = [int(x) for x in args.labels_per_class.split(",")]
  seeds = [int(x) for x in args.seeds.split(",")]

  cache = os.path.join(args.workroot, "jax_cache") if args.jax_cache is None else args.jax_cache
  if cache and not (args.report_only or args.smoke):  # (smoke: tests share one process)
    import jax
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(cache))

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  path_json = args.out + ".json"
  results = json.load(open(path_json)) if os.path.exists(path_json) else {}
  for row in rows:
    for lpc in lpcs:
      for seed in seeds:
        key = f"{row}/{lpc}/{seed}"
        if (key in results and not args.smoke) or args.report_only:
          continue
        t0 = time.time()
        workdir = os.path.join(args.workroot, row, f"lpc{lpc}", f"seed{seed}")
        results[key] = table_rows[row][1](seed, lpc, workdir, args.smoke)
        print(f"{key}: {results[key]:.4f} ({time.time() - t0:.0f} s)", flush=True)
        tmp = path_json + ".tmp"
        with open(tmp, "w") as f:
          json.dump(results, f, indent=1, sort_keys=True)
        os.replace(tmp, path_json)

  lines = ["| method | " + " | ".join(f"{l} labels/class ({10 * l} labels)" for l in lpcs) + " |",
           "|---|" + "---|" * len(lpcs)]
  for row in rows:
    cells = []
    for lpc in lpcs:
      vals = [100 * results[f"{row}/{lpc}/{s}"] for s in seeds if f"{row}/{lpc}/{s}" in results]
      if not vals:
        cells.append("—")
      elif len(vals) == 1:  # one seed has no spread to report
        cells.append(f"{vals[0]:.1f} (n=1)")
      else:
        cells.append(f"{np.mean(vals):.1f} ± {np.std(vals):.1f} (n={len(vals)})")
    lines.append(f"| {table_rows[row][0]} | " + " | ".join(cells) + " |")
  table = "\n".join(lines)
  with open(args.out + ".md", "w") as f:
    f.write(table + "\n")
  print(table)
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
