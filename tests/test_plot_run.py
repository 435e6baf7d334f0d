"""sslx/plot.py (sslx-plot, scripts/plot_run.py): metric reading, figure grouping, PNG
output, feature pictures."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO, load_experiment, load_script

from sslx import plot as plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(num_log_steps=12, eval_every=3, *, fixmatch=True, nt_xent=True):
  """Rows shaped like the trainer's: train metrics every log step, test every few."""
  rows = []
  for i in range(1, num_log_steps + 1):
    step = 10 * i
    row = {"step": step, "loss": 3.0 / i, "loss/supervised": 2.0 / i,
           "learning_rate": 0.03 * math.cos(7 * math.pi * i / (16 * num_log_steps)),
           "grad_norm": 5.0 / i, "skipped_updates": 0.0, "supervised/accuracy": min(1, 0.1 * i)}
    if fixmatch:
      row.update({"loss/fixmatch": 0.1 * i, "fixmatch/mask_rate": i / num_log_steps,
                  "fixmatch/pseudo_label_accuracy": 0.5 + 0.04 * i,
                  "fixmatch/confident_pseudo_label_accuracy": 0.9,
                  "fixmatch/confidence": 0.6})
      for c in range(12):  # 12 classes: '10' and '11' must sort after '9'
        row[f"fixmatch/confident_per_class/{c}"] = float((c + i) % 5)
    if nt_xent:
      row.update({"loss/nt_xent": 4.0 - 0.1 * i, "nt_xent/contrastive_accuracy": 0.05 * i,
                  "nt_xent/alignment": 1.0 / i, "nt_xent/uniformity": -1.0 - 0.1 * i})
    if i % eval_every == 0:
      row.update({"test/accuracy": 0.05 * i, "test/accuracy_ema": 0.06 * i})
    rows.append(row)
  return rows


def _write_jsonl(path, rows, tail=""):
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
    f.write(tail)


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG_MAGIC and os.path.getsize(path) > 5000


# -- reading ---------------------------------------------------------------


def test_read_metrics_orders_dedupes_and_skips_cut_off_lines(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": 20, "loss": 2.0}, {"step": 10, "loss": 1.0}, {"step": 20, "loss": 5.0}]
  _write_jsonl(path, rows, tail='\n{"step": 30, "loss": 1')  # blank line, then a killed write
  got = plot_run.read_metrics(str(path))
  assert [r["step"] for r in got] == [10, 20]
  assert got[1]["loss"] == 5.0  # the last row written for a step wins (a resumed run)


def test_read_metrics_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no metrics file"):
    plot_run.read_metrics(str(tmp_path / "missing.jsonl"))
  (tmp_path / "empty.jsonl").write_text("\n")
  with pytest.raises(ValueError, match="no metric rows"):
    plot_run.read_metrics(str(tmp_path / "empty.jsonl"))


def test_series_keeps_only_rows_with_finite_values():
  rows = [{"step": 1, "a": 1.0}, {"step": 2}, {"step": 3, "a": float("nan")},
          {"step": 4, "a": 2}, {"step": 5, "a": True}]
  steps, values = plot_run.series(rows, "a")
  np.testing.assert_array_equal(steps, [1, 4])
  np.testing.assert_array_equal(values, [1.0, 2.0])


def test_group_keys_sorts_metrics_into_figures():
  keys = plot_run.metric_keys(_rows(3))
  g = plot_run.group_keys(keys)
  assert g["losses"] == ["loss", "loss/fixmatch", "loss/nt_xent", "loss/supervised"]
  assert g["optimization"] == ["learning_rate", "grad_norm", "skipped_updates"]
  assert g["test"] == ["test/accuracy", "test/accuracy_ema"]
  assert g["terms"]["fixmatch"][0] == "fixmatch/mask_rate"  # reading order, not alphabetical
  assert set(g["terms"]) == {"fixmatch", "nt_xent", "supervised"}
  per_class = g["per_class"]["fixmatch/confident_per_class"]
  assert [c for c, _ in per_class] == list(range(12))
  assert g["other"] == []


# -- curves ----------------------------------------------------------------


def test_plot_curves_writes_every_figure_of_a_composed_run(tmp_path):
  paths = plot_run.plot_curves(_rows(), str(tmp_path), title="synthetic run")
  names = sorted(os.path.basename(p) for p in paths)
  assert names == sorted([
      "overview.png", "losses.png", "accuracy.png", "optimization.png",
      "term_fixmatch.png", "term_nt_xent.png", "term_supervised.png",
      "term_fixmatch_confident_per_class.png"])
  assert all(_is_png(p) for p in paths)


def test_plot_curves_only_draws_the_terms_a_run_has(tmp_path):
  paths = plot_run.plot_curves(_rows(fixmatch=False), str(tmp_path))
  names = {os.path.basename(p) for p in paths}
  assert "term_nt_xent.png" in names
  assert not any("fixmatch" in n for n in names)
  assert not (tmp_path / "term_fixmatch.png").exists()


def test_cli_writes_into_workdir_plots_with_a_title_from_the_run(tmp_path, capsys):
  _write_jsonl(tmp_path / "metrics.jsonl", _rows(4, fixmatch=True, nt_xent=False))
  (tmp_path / "config.json").write_text(json.dumps(
      {"method": "fixmatch", "data": {"name": "cifar10", "num_labels": 40},
       "model": {"name": "wrn28_2"}}))
  (tmp_path / "results.json").write_text(json.dumps(
      {"steps": 40, "test_accuracy": 0.5, "test_accuracy_ema": 0.625}))
  assert plot_run.run_title(str(tmp_path)) == (
      "fixmatch on cifar10 (40 labels), wrn28_2 | after 40 steps: test_accuracy 0.5000, "
      "test_accuracy_ema 0.6250")
  paths = plot_run.main([str(tmp_path)])
  assert all(p.startswith(str(tmp_path / "plots")) and _is_png(p) for p in paths)
  assert str(tmp_path / "plots" / "overview.png") in capsys.readouterr().out


# -- features --------------------------------------------------------------


def test_embed_2d_pca_finds_the_dominant_direction():
  rng = np.random.default_rng(0)
  x = np.outer(rng.normal(size=200), [3.0, 4.0, 0.0]) + 0.01 * rng.normal(size=(200, 3))
  y, note = plot_run.embed_2d(x, "pca")
  assert y.shape == (200, 2)
  assert note.startswith("PC1 100%")
  with pytest.raises(ValueError, match="'pca' or 'tsne'"):
    plot_run.embed_2d(x, "umap")


def test_embed_2d_tsne_separates_two_clusters():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=(30, 5)), 20 + rng.normal(size=(30, 5))])
  y, _ = plot_run.embed_2d(x, "tsne")
  a, b = y[:30], y[30:]
  gap = np.linalg.norm(a.mean(0) - b.mean(0))
  assert gap > 3 * max(a.std(0).max(), b.std(0).max())


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A workdir holding config.json and one checkpoint of a tiny CNN (no training)."""
  from sslx import optim, train
  workdir = str(tmp_path_factory.mktemp("run"))
  config = load_experiment("supervised_digits", "smoke")
  config.ema_decay = 0.0  # `auto` then picks the raw parameters
  model = train.build_model(config, 10)
  optimizer, _ = optim.create_optimizer(config.optimizer, config.num_steps)
  state = train.create_train_state(model, optimizer, (8, 8, 1), jax.random.key(3))
  state = state.replace(step=jnp.asarray(7, jnp.int32),  # distinguishable from a fresh state
                        params=jax.tree.map(lambda p: p + 0.5, state.params))
  manager = train._checkpoint_manager(workdir, 1)  # pylint: disable=protected-access
  train.save_checkpoint(manager, state)
  manager.wait_until_finished()
  manager.close()
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json())
  return workdir, state


def test_restore_latest_returns_the_saved_state(saved_run):
  workdir, saved = saved_run
  state, _, _, dataset = plot_run.restore_latest(workdir)
  assert int(state.step) == 7
  jax.tree.map(np.testing.assert_array_equal, state.params, saved.params)
  assert dataset.name == "digits" and dataset.test_images.shape[1:] == (8, 8, 1)


def test_plot_features_writes_the_picture(saved_run, tmp_path):
  workdir, _ = saved_run
  path = plot_run.plot_features(workdir, str(tmp_path), max_points=120)
  assert path == str(tmp_path / "features.png") and _is_png(path)
  with pytest.raises(ValueError, match="params must be"):
    plot_run.plot_features(workdir, str(tmp_path), params="best")


def test_probe_run_scores_the_checkpoint_and_the_initialisation(saved_run, tmp_path, capsys):
  """scripts/probe_run.py: the checkpoint's or the untrained network's features, with the
  settings asked for (here every labeled point votes, checked against numpy), and clear
  errors."""
  from sslx import evaluation
  workdir, saved = saved_run
  probe_run = load_script("probe_run")
  initial, model, normalize, ds = plot_run.rebuild_run(plot_run.load_config(workdir))
  unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)

  def expected(state):
    params, model_state = jax.device_get((state.params["model"], state.model_state))
    feats = lambda x: evaluation.extract_features(model, params, model_state, normalize, x)
    train_f, test_f = feats(ds.labeled_images), feats(ds.test_images)
    votes = np.exp(unit(test_f) @ unit(train_f).T / 0.5) @ np.eye(10)[ds.labeled_labels]
    return {"knn_accuracy": float(np.mean(votes.argmax(1) == ds.test_labels)),
            "linear_probe_accuracy": evaluation.linear_probe_accuracy(
                train_f, ds.labeled_labels, test_f, ds.test_labels, num_classes=10, l2=0.5)}

  settings = dict(knn_k=10**6, knn_temperature=0.5, probe_l2=0.5)  # k: all labeled points
  trained = probe_run.probe(workdir, **settings)
  init = probe_run.probe(workdir, init=True, pixels=True, **settings)
  assert trained["step"] == 7 and init["step"] == 0
  assert "pixel_linear_probe_accuracy" in init and "pixel_linear_probe_accuracy" not in trained
  for got, state in ((trained, saved), (init, initial)):
    want = expected(state)
    assert got["knn_accuracy"] == pytest.approx(want["knn_accuracy"], abs=1.5 / len(ds.test_labels))
    assert got["linear_probe_accuracy"] == pytest.approx(want["linear_probe_accuracy"], abs=1e-6)
  assert trained["knn_accuracy"] != init["knn_accuracy"]  # two different networks were probed

  with pytest.raises(ValueError, match="feature_eval.knn_k"):
    probe_run.probe(workdir, knn_k=0)
  with pytest.raises(SystemExit) as exit_info:
    probe_run.main([workdir, str(tmp_path / "nowhere")])
  assert exit_info.value.code == 2
  out, err = capsys.readouterr()
  assert '"step": 7' in out and "nowhere" in err and "no config.json" in err


def test_plot_features_without_a_checkpoint_is_a_clear_error(saved_run, tmp_path):
  workdir, _ = saved_run
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "config.json").write_text(open(os.path.join(workdir, "config.json")).read())
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    plot_run.plot_features(str(empty), str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    plot_run.plot_features(str(tmp_path / "nowhere"), str(tmp_path))


def test_feature_grid_draws_pixels_then_every_run_with_its_scores(saved_run, tmp_path,
                                                                  monkeypatch):
  workdir, _ = saved_run
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"linear_probe_accuracy": 0.8125, "knn_accuracy": 0.75,
               "test_accuracy": 0.5, "test_accuracy_ema": 0.625}, f)
  path = str(tmp_path / "grid" / "features.png")
  figs = _figures_of(monkeypatch, lambda: plot_run.plot_feature_grid(
      [("first", workdir), ("second", workdir)], path, method="pca", max_points=60, columns=2,
      params="raw"))
  assert _is_png(path)
  (fig,) = figs
  titles = [ax.get_title() for ax in fig.axes if ax.axison]
  # The test accuracy shown is that of the parameters drawn (raw here, not the EMA's 62.5).
  assert titles == ["raw pixels", "first\nprobe 81.2, kNN 75.0, test (raw) 50.0",
                    "second\nprobe 81.2, kNN 75.0, test (raw) 50.0"]
  assert "each run's raw parameters" in fig._suptitle.get_text()
  assert len(fig.axes) == 4 and not fig.axes[3].axison  # 2 x 2 grid, the spare panel off
  # the same run twice: the same points
  a, b = (np.asarray(ax.collections[0].get_offsets()) for ax in fig.axes[1:3])
  np.testing.assert_allclose(a, b)
  plot_run.plt.close(fig)
  with pytest.raises(ValueError, match="runs is empty"):
    plot_run.plot_feature_grid([], path)


def _figures_of(monkeypatch, fn):
  """Runs `fn`, returning the figures it closes (already drawn to PNG); the caller
  closes them."""
  figs = []
  with monkeypatch.context() as m:
    m.setattr(plot_run.plt, "close", figs.append)
    fn()
  return figs


def test_single_panel_titles_fit_inside_the_figure(tmp_path, monkeypatch):
  # A run title as long as a real one: before wrapping, a 5-inch single-panel figure cut
  # it off ("...test_accura").
  title = ("fixmatch+da+graph+nt_xent on digits (20 labels), cnn | after 3000 steps: "
           "test_accuracy 0.9722, test_accuracy_ema 0.9722, linear_probe_accuracy 0.9611")
  figs = _figures_of(monkeypatch, lambda: plot_run.plot_curves(
      _rows(fixmatch=False, nt_xent=False), str(tmp_path), title=title))
  assert figs
  for fig in figs:
    fig.canvas.draw()
    box = fig.bbox
    texts = [fig._suptitle] + [ax.title for ax in fig.axes] + [ax.xaxis.label for ax in fig.axes]
    for text in texts:
      if text is None or not text.get_text():
        continue
      ext = text.get_window_extent()
      assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, (text.get_text(), ext, box)
    plot_run.plt.close(fig)


@pytest.mark.parametrize("low, high", [(1.5, 2.5), (0.3, 20.0), (1e-4, 10.0)])
def test_gradient_norm_axis_has_plain_tick_labels(tmp_path, monkeypatch, low, high):
  rows = [{"step": 10 * i, "loss": 1.0, "grad_norm": low * (high / low) ** (i / 9)}
          for i in range(10)]
  figs = _figures_of(monkeypatch, lambda: plot_run.plot_curves(rows, str(tmp_path)))
  axes = [ax for fig in figs for ax in fig.axes if ax.get_title() == "gradient norm"]
  assert axes
  for ax in axes:
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if t.get_text()]
    assert labels, "no labelled tick at all"
    assert not any("times" in l or "^" in l or "$" in l for l in labels), labels
    assert "mean over the log window" in ax.get_xlabel()
  for fig in figs:
    plot_run.plt.close(fig)


def test_load_config_of_an_older_run_gets_new_fields_defaults(tmp_path):
  """A workdir written before a field existed (here: the multi-crop settings and a
  method option) still loads, with the defaults the older code behaved as."""
  from sslx.config import config_errors
  config = load_experiment("fixmatch_digits", "smoke").to_dict()
  del config["augment"]["multicrop_local_scale"]
  del config["fixmatch"]["threshold"]
  with open(tmp_path / "config.json", "w") as f:
    json.dump(config, f)
  loaded = plot_run.load_config(str(tmp_path))
  assert tuple(loaded.augment.multicrop_local_scale) == (0.05, 0.4)
  from sslx.methods import method_option_configs
  assert loaded.fixmatch.threshold == method_option_configs()["fixmatch"].threshold
  assert config_errors(loaded) == []
