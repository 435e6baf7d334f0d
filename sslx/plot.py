r"""Draws a run's curves from ``<workdir>/metrics.jsonl``, and optionally its learned features.

  sslx-plot runs/fixmatch_digits          # or: python scripts/plot_run.py runs/fixmatch_digits
  sslx-plot runs/simclr_digits --features --tsne --out=/tmp/plots

Writes PNG files into ``--out`` (default ``<workdir>/plots``):

* ``overview.png``: losses, test accuracy, learning rate and the run's main diagnostic
  (FixMatch mask rate and pseudo-label accuracy, or SimCLR contrastive accuracy).
* ``losses.png``: the total loss and each weighted term's loss (``loss/<term>``).
* ``optimization.png``: learning rate, gradient norm (log scale), skipped updates.
* ``accuracy.png``: test accuracy of the raw and of the EMA parameters, with the
  training accuracy of the labeled batch for comparison.
* ``term_<name>.png``: every scalar a loss term logs, one panel each: for ``fixmatch``
  the mask rate, mean confidence and pseudo-label accuracy against the true labels of the
  unlabeled pool (all and confident only); for ``nt_xent`` contrastive accuracy,
  alignment and uniformity (Wang & Isola 2020); new terms get theirs automatically.
* ``term_<name>_<metric>.png``: per-class metrics (``<term>/<metric>/<c>``, e.g.
  ``term_fixmatch_confident_per_class.png``, FixMatch's confident pseudo-labels per
  class) as a class x step heatmap of each class's share, with the total below.
* ``features.png`` (``--features``): the test set's pre-classifier features from the
  workdir's latest checkpoint (EMA parameters when the run kept an EMA), projected to 2-D
  by PCA (and by t-SNE with ``--tsne``), coloured by class, next to a PCA of the raw
  pixels for comparison.

Metric rows are written at log steps, each training scalar (losses, learning rate,
gradient norm, diagnostics) the mean over the steps since the previous log step: a
plotted point is the mean of its log window, as the x labels say. Test accuracy is
evaluated at eval steps only, so each curve
uses the rows that have its key. A resumed run's rows are read in step order, the last
row of a repeated step winning; a cut-off last line (a killed run) is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110
# The trainer logs, at each log step, the mean of every training scalar over the steps
# since the previous log step (sslx/train.py); test metrics are evaluated at that step.
WINDOW_XLABEL = "step (each point: mean over the log window ending there)"
_OPTIMIZATION_KEYS = ("learning_rate", "grad_norm", "skipped_updates")


# ---------------------------------------------------------------------------
# Reading metrics
# ---------------------------------------------------------------------------


def read_metrics(path: str) -> list[dict]:
  """Rows of a ``metrics.jsonl``, sorted by step, one row per step (the last one written).

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: the file holds no readable row with a ``step``.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"no metrics file at {path!r} (is this a sslx workdir?)")
  by_step: dict[int, dict] = {}
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # blank or cut-off line
      if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
        by_step[int(row["step"])] = row
  if not by_step:
    raise ValueError(f"{path!r} has no metric rows with a 'step' (has the run logged yet?)")
  return [by_step[s] for s in sorted(by_step)]


def series(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """``(steps, values)`` of the rows that have a finite number under `key`."""
  steps, values = [], []
  for row in rows:
    v = row.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
      steps.append(row["step"])
      values.append(float(v))
  return np.asarray(steps, np.int64), np.asarray(values, np.float64)


def metric_keys(rows: Iterable[dict]) -> list[str]:
  keys: dict[str, None] = {}
  for row in rows:
    for k in row:
      if k != "step":
        keys[k] = None
  return sorted(keys)


def group_keys(keys: Sequence[str]) -> dict:
  """Sorts metric names into the figures that show them.

  Returns a dict with ``losses``, ``optimization``, ``test`` (lists of keys),
  ``terms`` (term -> its scalar keys), ``per_class`` (``'<term>/<metric>'`` ->
  ``[(class, key), ...]`` sorted by class) and ``other`` (anything else).
  """
  out = {"losses": [], "optimization": [], "test": [], "terms": {}, "per_class": {},
         "other": []}
  for k in keys:
    parts = k.split("/")
    if k == "loss" or parts[0] == "loss":
      out["losses"].append(k)
    elif k in _OPTIMIZATION_KEYS:
      out["optimization"].append(k)
    elif parts[0] == "test":
      out["test"].append(k)
    elif len(parts) == 3 and parts[2].isdigit():
      out["per_class"].setdefault(f"{parts[0]}/{parts[1]}", []).append((int(parts[2]), k))
    elif len(parts) == 2:
      out["terms"].setdefault(parts[0], []).append(k)
    else:
      out["other"].append(k)
  for name in out["per_class"]:
    out["per_class"][name].sort()
  for term in out["terms"]:  # known metrics in a reading order, then the rest by name
    out["terms"][term].sort(key=_display_order)
  out["losses"].sort(key=lambda k: (k != "loss", k))  # the total first
  out["optimization"].sort(key=_OPTIMIZATION_KEYS.index)
  return out


# ---------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------

_LABELS = {
    "loss": "total (weighted sum)",
    "test/accuracy": "test, raw parameters",
    "test/accuracy_ema": "test, EMA parameters",
    "learning_rate": "learning rate",
    "grad_norm": "gradient norm",
    "skipped_updates": "skipped non-finite updates",
    "fixmatch/mask_rate": "mask rate (share of confident pseudo-labels)",
    "fixmatch/pseudo_label_accuracy": "pseudo-label accuracy (all unlabeled)",
    "fixmatch/confident_pseudo_label_accuracy": "pseudo-label accuracy (confident only)",
    "fixmatch/confidence": "mean confidence of the weak view",
    "nt_xent/contrastive_accuracy": "contrastive accuracy (positive ranked first)",
    "nt_xent/alignment": "alignment (lower = positives closer)",
    "nt_xent/uniformity": "uniformity (lower = more spread)",
}


def _display_order(key: str):
  order = list(_LABELS)
  return (order.index(key), key) if key in _LABELS else (len(order), key)


def _label(key: str) -> str:
  return _LABELS.get(key, key)


def _plot(ax, rows, key, *, label=None, style="-", marker=None):
  steps, values = series(rows, key)
  if not len(steps):
    return None
  if marker is None:
    marker = "o" if len(steps) <= 30 else None
  (line,) = ax.plot(steps, values, style, marker=marker, markersize=3, label=label or _label(key))
  return line


def _finish(ax, *, ylabel=None, title=None, logy=False, xlabel=WINDOW_XLABEL):
  ax.set_xlabel(_wrap(xlabel, ax.get_position().width * ax.figure.get_figwidth(), 10))
  if ylabel:
    ax.set_ylabel(ylabel)
  if title:
    ax.set_title(_wrap(title, ax.get_position().width * ax.figure.get_figwidth(), 10),
                 fontsize=10)
  if logy:
    _log_axis(ax)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)


def _wrap(text: str, width_in: float, fontsize: float) -> str:
  """`text` broken into lines that fit `width_in` inches at `fontsize` points (an
  average character is ~0.55 em wide), each of its own lines wrapped separately."""
  chars = max(20, int(width_in * 72 / (0.55 * fontsize)))
  return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def _log_axis(ax):
  """Log scale with plain tick labels ("2", "0.5"), not matplotlib's "2x10^0" for the
  minor ticks of a range narrower than a decade."""
  ax.set_yscale("log")
  plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
  low, high = ax.get_ylim()
  decades = math.log10(high / low) if low > 0 and high > low else 0.0
  ax.yaxis.set_major_formatter(plain)
  if decades <= 1:  # few or no major ticks in view: label every minor one
    ax.yaxis.set_minor_formatter(plain)
  elif decades <= 3:
    ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(plain)
  else:
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _save(fig, out_dir: str, name: str, suptitle: str) -> str:
  if suptitle:
    fig.suptitle(_wrap(suptitle, fig.get_figwidth(), 10), fontsize=10)
  if fig.get_layout_engine() is None:
    fig.tight_layout()
  path = os.path.join(out_dir, name)
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def _accuracy_label(rows, key):
  steps, values = series(rows, key)
  if not len(values):
    return _label(key)
  return f"{_label(key)}: final {values[-1]:.4f}, best {values.max():.4f}"


def _draw_losses(ax, rows, groups):
  for k in groups["losses"]:
    _plot(ax, rows, k, style="-" if k == "loss" else "--")
  _finish(ax, ylabel="loss", title="losses")


def _draw_accuracy(ax, rows, groups, terms):
  test = list(groups["test"])
  if {"test/accuracy", "test/accuracy_ema"} <= set(test) and all(
      np.array_equal(a, b) for a, b in zip(series(rows, "test/accuracy"),
                                           series(rows, "test/accuracy_ema"))):
    test.remove("test/accuracy_ema")  # no EMA in this run: the two curves are one
  for k in test:
    _plot(ax, rows, k, label=_accuracy_label(rows, k))
  for term, keys in terms.items():  # training accuracy of labeled batches, for comparison
    for k in keys:
      if k.endswith("/accuracy"):
        _plot(ax, rows, k, label=f"train (log-window mean), {k}", style=":")
  _finish(ax, ylabel="accuracy", title="accuracy",
          xlabel="step (test: evaluated at that step)")


def _main_diagnostic(groups) -> tuple[str, list[str]]:
  terms = groups["terms"]
  if "fixmatch" in terms:
    keys = [k for k in ("fixmatch/mask_rate", "fixmatch/pseudo_label_accuracy",
                        "fixmatch/confident_pseudo_label_accuracy") if k in terms["fixmatch"]]
    return "pseudo-labels", keys
  if "nt_xent" in terms:
    return "contrastive", [k for k in ("nt_xent/contrastive_accuracy",) if k in terms["nt_xent"]]
  return "gradient norm", [k for k in ("grad_norm",) if k in groups["optimization"]]


def plot_curves(rows: Sequence[dict], out_dir: str, *, title: str = "") -> list[str]:
  """Writes the curve PNGs for `rows` into `out_dir`; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  groups = group_keys(metric_keys(rows))
  terms = groups["terms"]
  paths = []

  # Overview: the four panels one looks at first.
  fig, axes = plt.subplots(2, 2, figsize=(12, 8))
  _draw_losses(axes[0, 0], rows, groups)
  _draw_accuracy(axes[0, 1], rows, groups, terms)
  _plot(axes[1, 0], rows, "learning_rate")
  _finish(axes[1, 0], ylabel="learning rate", title="learning rate")
  name, keys = _main_diagnostic(groups)
  for k in keys:
    _plot(axes[1, 1], rows, k)
  _finish(axes[1, 1], title=name, logy=name == "gradient norm")
  paths.append(_save(fig, out_dir, "overview.png", title))

  fig, ax = plt.subplots(figsize=(8, 5))
  _draw_losses(ax, rows, groups)
  paths.append(_save(fig, out_dir, "losses.png", title))

  fig, ax = plt.subplots(figsize=(8, 5))
  _draw_accuracy(ax, rows, groups, terms)
  paths.append(_save(fig, out_dir, "accuracy.png", title))

  opt = [k for k in groups["optimization"]
         if k != "skipped_updates" or series(rows, k)[1].max(initial=0) > 0]
  if opt:
    fig, axes = plt.subplots(1, len(opt), figsize=(5 * len(opt), 4), squeeze=False)
    for ax, k in zip(axes[0], opt):
      _plot(ax, rows, k)
      _finish(ax, title=_label(k), logy=k == "grad_norm")
    paths.append(_save(fig, out_dir, "optimization.png", title))

  for term, keys in sorted(terms.items()):
    paths.append(_grid(rows, keys, out_dir, f"term_{term}.png", f"{title}\nterm '{term}'"))
  if groups["other"]:
    paths.append(_grid(rows, groups["other"], out_dir, "other.png", title))
  for name, items in sorted(groups["per_class"].items()):
    paths.append(_per_class(rows, name, items, out_dir, title))
  return paths


def _grid(rows, keys, out_dir, filename, title) -> str:
  cols = min(3, len(keys))
  nrows = math.ceil(len(keys) / cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
  for ax, k in zip(axes.flat, keys):
    _plot(ax, rows, k)
    _finish(ax, title=_label(k))
    if ax.get_legend():
      ax.get_legend().remove()  # the title names the one curve
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  return _save(fig, out_dir, filename, title)


def _per_class(rows, name, items, out_dir, title) -> str:
  """Heatmap: for each logged step, each class's share of the per-class metric's total."""
  classes = [c for c, _ in items]
  steps = sorted({r["step"] for r in rows if any(k in r for _, k in items)})
  counts = np.full((len(classes), len(steps)), np.nan)
  index = {s: j for j, s in enumerate(steps)}
  for i, (_, k) in enumerate(items):
    s, v = series(rows, k)
    counts[i, [index[x] for x in s]] = v
  totals = np.nansum(counts, axis=0)
  shares = np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)
  fig, (ax, ax_total) = plt.subplots(
      2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]},
      layout="constrained")
  edges = _edges(np.asarray(steps, np.float64))
  vmax = max(2.0 / len(classes), float(np.nanmax(shares, initial=0.0)))
  mesh = ax.pcolormesh(edges, np.arange(len(classes) + 1) - 0.5, shares, cmap="viridis",
                       vmin=0, vmax=vmax, shading="flat")
  fig.colorbar(mesh, ax=[ax, ax_total], label="share of the total", shrink=0.9)
  ax.set_yticks(range(len(classes)), [str(c) for c in classes], fontsize=7)
  ax.set_ylabel("class")
  ax.set_title(_wrap(f"{name}: each class's share per logged step (blank: total 0); "
                     f"balanced = {1 / len(classes):.3f}", 8, 10), fontsize=10)
  ax_total.plot(steps, totals, "-", marker="o" if len(steps) <= 30 else None, markersize=3)
  ax_total.set_ylabel("total")
  ax_total.set_xlabel(WINDOW_XLABEL)
  ax_total.grid(alpha=0.3)
  filename = f"term_{name.replace('/', '_')}.png"
  return _save(fig, out_dir, filename, title)


def _edges(x: np.ndarray) -> np.ndarray:
  """Cell edges around the centres `x` (for pcolormesh)."""
  if len(x) == 1:
    return np.array([x[0] - 0.5, x[0] + 0.5])
  mid = (x[1:] + x[:-1]) / 2
  return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


# ---------------------------------------------------------------------------
# Features of the latest checkpoint
# ---------------------------------------------------------------------------


def load_config(workdir: str):
  """The run's config (``<workdir>/config.json``) as an ``ml_collections.ConfigDict``."""
  import ml_collections
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config.json in {workdir!r}: --features needs a sslx workdir")
  with open(path) as f:
    saved = json.load(f)
  # A run written by an older sslx lacks the fields added since (a new augmentation's
  # settings, a method's new option): give them their defaults, which the older code
  # behaved as, so its checkpoint can still be restored and plotted.
  from sslx.methods import default_augment_config, method_option_configs
  for section, defaults in [("augment", default_augment_config()),
                            *method_option_configs().items()]:
    if isinstance(saved.get(section), dict):
      for key, value in defaults.to_dict().items():
        saved[section].setdefault(key, value)
  return ml_collections.ConfigDict(saved)


def rebuild_run(config):
  """The run's model and dataset (same split) and the untrained state it started from
  (its ``seed``'s initialisation), on one device.

  Returns ``(state, model, normalize, dataset)``, as :func:`restore_latest`.

  Raises:
    ValueError: a streamed dataset (its test set is not held in memory), or an invalid config.
  """
  import jax
  from sslx import experiment
  if config.data.streaming:
    raise ValueError(f"reading features needs a device-resident dataset; {config.data.name!r} is "
                     "streamed (data.streaming=True)")
  exp = experiment.setup(config, devices=jax.devices()[:1])
  return exp.state, exp.model, exp.normalize, exp.dataset


def restore_latest(workdir: str, config=None):
  """Rebuilds the run's model and dataset and restores its latest checkpoint.

  Returns ``(state, model, normalize, dataset)``: a ``sslx.train.TrainState``, the flax
  module, the input normalisation and the ``sslx.data.SSLDataset`` (same split).

  Raises:
    FileNotFoundError: no checkpoint in the workdir.
    ValueError: a streamed dataset (its test set is not held in memory), or a checkpoint
      that does not fit the config (``sslx.train.restore_checked``'s message).
  """
  from sslx import train
  config = load_config(workdir) if config is None else config
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"no checkpoints/ in {workdir!r}: nothing to restore")
  state, model, normalize, dataset = rebuild_run(config)
  manager = train._checkpoint_manager(workdir, config.keep_checkpoints)  # pylint: disable=protected-access
  try:
    if manager.latest_step() is None:
      raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')!r}")
    state = train.restore_checked(manager, state, workdir)
  finally:
    manager.close()
  return state, model, normalize, dataset


def _subsample(labels: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
  if len(labels) <= max_points:
    return np.arange(len(labels))
  return np.sort(np.random.default_rng(seed).choice(len(labels), max_points, replace=False))


def embed_2d(x: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, str]:
  """``[N, D] -> [N, 2]`` by ``'pca'`` or ``'tsne'``; also returns an axis note."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  if method == "pca":
    from sklearn.decomposition import PCA
    pca = PCA(n_components=2, random_state=seed)
    y = pca.fit_transform(x)
    r = pca.explained_variance_ratio_
    return y, f"PC1 {r[0]:.0%} / PC2 {r[1]:.0%} of the variance"
  if method == "tsne":
    from sklearn.manifold import TSNE
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    # Exact gradients are cheaper than Barnes-Hut's approximation up to ~1000 points.
    algorithm = "exact" if len(x) <= 1000 else "barnes_hut"
    y = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed,
             method=algorithm).fit_transform(x.astype(np.float32))
    return y, f"perplexity {perplexity:g}"
  raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def _scatter(ax, y, labels, num_classes, title):
  if num_classes <= 20:
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    for c in range(num_classes):
      m = labels == c
      if m.any():
        ax.scatter(y[m, 0], y[m, 1], s=6, color=cmap(c), label=str(c), alpha=0.8, linewidths=0)
  else:
    ax.scatter(y[:, 0], y[:, 1], s=4, c=labels, cmap="hsv", alpha=0.7, linewidths=0)
  ax.set_title(title, fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])


def test_features(workdir: str, *, max_points: int = 2000, params: str = "auto"):
  """The test set's learned features from a workdir's latest checkpoint.

  Returns ``(images, labels, features, info)``: a fixed random subset of at most
  ``max_points`` test images (uint8), their labels, ``[N, D]`` features of the EMA
  (``params='auto'`` when the run kept one, or ``'ema'``) or raw (``'raw'``) parameters,
  and ``info`` = dict(dataset, num_classes, step, params).
  """
  from sslx import evaluation, train
  if params not in ("auto", "ema", "raw"):
    raise ValueError(f"params must be 'auto', 'ema' or 'raw', got {params!r}")
  if max_points < 3:
    raise ValueError(f"max_points must be >= 3, got {max_points}")
  config = load_config(workdir)
  state, model, normalize, dataset = restore_latest(workdir, config)
  use_ema = config.ema_decay > 0 if params == "auto" else params == "ema"
  weights = state.ema_params if use_ema else state.params["model"]
  idx = _subsample(dataset.test_labels, max_points)
  images, labels = dataset.test_images[idx], np.asarray(dataset.test_labels)[idx]
  feats = evaluation.extract_features(model, train.to_host(weights),
                                      train.to_host(state.model_state), normalize, images,
                                      batch_size=min(512, len(images)))
  info = dict(dataset=dataset.name, num_classes=dataset.num_classes,
              step=int(train.to_host(state.step)), params="EMA" if use_ema else "raw")
  return images, labels, feats, info


def _legend(fig, ax):
  handles, names = ax.get_legend_handles_labels()
  if handles:
    fig.legend(handles, names, loc="center right", title="class", markerscale=2, fontsize=8)
  return bool(handles)


def plot_features(workdir: str, out_dir: str, *, tsne: bool = False, max_points: int = 2000,
                  params: str = "auto", title: str = "") -> str:
  """Writes ``features.png``: 2-D projections of the test set's features, by class.

  Args:
    workdir: a sslx workdir with ``config.json`` and at least one checkpoint.
    out_dir: where the PNG goes.
    tsne: add a t-SNE panel (scikit-learn; slower than PCA).
    max_points: at most this many test images (a fixed random subset).
    params: ``'ema'``, ``'raw'`` or ``'auto'`` (EMA when the run kept one).
  """
  images, labels, feats, info = test_features(workdir, max_points=max_points, params=params)
  panels = [("raw pixels, PCA", *embed_2d(images.astype(np.float32) / 255.0, "pca")),
            ("features, PCA", *embed_2d(feats, "pca"))]
  if tsne:
    panels.append(("features, t-SNE", *embed_2d(feats, "tsne")))
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5), squeeze=False)
  for ax, (name, y, note) in zip(axes[0], panels):
    _scatter(ax, y, labels, info["num_classes"], f"{name}\n{note}")
  legend = _legend(fig, axes[0, -1])
  if legend:
    fig.subplots_adjust(right=0.92)
  head = (f"{title}\n" if title else "") + (
      f"{len(labels)} test images of {info['dataset']}, {feats.shape[1]}-d features of the "
      f"{info['params']} parameters at step {info['step']}")
  fig.suptitle(head, fontsize=10)
  fig.tight_layout(rect=(0, 0, 0.92 if legend else 1, 1))
  path = os.path.join(out_dir, "features.png")
  os.makedirs(out_dir, exist_ok=True)
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def plot_feature_grid(runs: Sequence[tuple[str, str]], path: str, *, method: str = "tsne",
                      max_points: int = 1000, params: str = "auto", columns: int = 4) -> str:
  """One PNG comparing runs: the test set's raw pixels, then each run's features, in 2-D.

  Args:
    runs: ``(name, workdir)`` pairs, drawn in this order; each panel's title gives the
      run's linear-probe / kNN / test accuracy from its ``results.json`` when present.
    path: the PNG to write.
    method: ``'tsne'`` or ``'pca'``.
    max_points, params: as :func:`plot_features` (the same test subset for every run).
  """
  if not runs:
    raise ValueError("runs is empty: give at least one (name, workdir)")
  panels = []
  for name, workdir in runs:
    images, labels, feats, info = test_features(workdir, max_points=max_points, params=params)
    if not panels:
      panels.append(("raw pixels", embed_2d(images.astype(np.float32) / 255.0, method)[0],
                     labels, info))
    panels.append((f"{name}\n{_scores(workdir, info['params'])}", embed_2d(feats, method)[0],
                   labels, info))
  rows = -(-len(panels) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.6 * rows), squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  for ax, (title, y, labels, info) in zip(axes.flat, panels):
    _scatter(ax, y, labels, info["num_classes"], title)
  legend = _legend(fig, axes.flat[0])
  info = panels[0][3]
  kinds = sorted({p[3]["params"] for p in panels[1:]})
  which = (f"each run's {kinds[0]} parameters" if len(kinds) == 1
           else "each run's EMA parameters where it kept them, else raw")
  fig.suptitle(f"{'t-SNE' if method == 'tsne' else 'PCA'} of {len(panels[0][2])} test images "
               f"of {info['dataset']}, {which} (latest checkpoint)", fontsize=10)
  fig.tight_layout(rect=(0, 0, 0.94 if legend else 1, 1))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def _scores(workdir: str, params: str) -> str:
  """The run's probe / kNN accuracy and the test accuracy of the parameters drawn."""
  try:
    with open(os.path.join(workdir, "results.json")) as f:
      res = json.load(f)
  except (OSError, json.JSONDecodeError):
    return "(no results.json)"
  names = (("linear_probe_accuracy", "probe"), ("knn_accuracy", "kNN"),
           ("test_accuracy_ema" if params == "EMA" else "test_accuracy", f"test ({params})"))
  return ", ".join(f"{short} {100 * res[k]:.1f}" for k, short in names
                   if isinstance(res.get(k), (int, float))) or "(no accuracy)"


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def run_title(workdir: str) -> str:
  """``method on dataset (N labels), model: final numbers`` from the workdir's JSON files."""
  parts = []
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      cfg = json.load(f)
    labels = cfg["data"]["num_labels"]
    parts.append(f"{cfg['method']} on {cfg['data']['name']} "
                 f"({'all' if labels == -1 else labels} labels), {cfg['model']['name']}")
  except (OSError, KeyError, TypeError, json.JSONDecodeError):
    parts.append(os.path.basename(os.path.normpath(workdir)))
  try:
    with open(os.path.join(workdir, "results.json")) as f:
      res = json.load(f)
    shown = [f"{k} {res[k]:.4f}" for k in ("test_accuracy", "test_accuracy_ema",
                                            "linear_probe_accuracy", "knn_accuracy")
             if isinstance(res.get(k), (int, float))]
    if shown:
      parts.append(f"after {res.get('steps', '?')} steps: " + ", ".join(shown))
  except (OSError, json.JSONDecodeError):
    pass
  return " | ".join(parts)


def main(argv: Sequence[str] | None = None) -> list[str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdir", help="a sslx workdir (holds metrics.jsonl)")
  parser.add_argument("--out", default=None, help="output folder (default <workdir>/plots)")
  parser.add_argument("--features", action="store_true",
                      help="also draw the test set's features from the latest checkpoint")
  parser.add_argument("--tsne", action="store_true", help="with --features: add t-SNE")
  parser.add_argument("--max_points", type=int, default=2000,
                      help="with --features: at most this many test images")
  parser.add_argument("--params", choices=("auto", "ema", "raw"), default="auto",
                      help="with --features: which parameters (auto: EMA if the run has one)")
  args = parser.parse_args(argv)
  out = args.out or os.path.join(args.workdir, "plots")
  title = run_title(args.workdir)
  paths = plot_curves(read_metrics(os.path.join(args.workdir, "metrics.jsonl")), out,
                      title=title)
  if args.features or args.tsne:
    paths.append(plot_features(args.workdir, out, tsne=args.tsne, max_points=args.max_points,
                               params=args.params, title=title))
  for p in paths:
    print(p)
  return paths


def cli(argv: Sequence[str] | None = None) -> None:
  """The ``sslx-plot`` command (and ``scripts/plot_run.py``): a missing or empty
  metrics file is one line on stderr and exit status 2."""
  try:
    main(argv)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  cli()
