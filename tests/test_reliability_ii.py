"""Reliability II: what a hostile user can do to a run that must not go silently wrong.

Each case either must not happen (two runs in one workdir, aliased seeds, wrapped labels,
an empty test split scored 0, a resume on other data, a typo in a config arg, a NaN
weight, `--overwrite` deleting a run that cannot be replaced, Ctrl-C losing work, a
rerun rewriting results.json) or must end in one clear line (exit 2) naming the file or
field: corrupt npz files, bad config files, unusable workdirs.

Most checks run in-process through `train_and_evaluate` on the tiny MLP config of
tests/test_bad_inputs.py (nothing compiles before they fail); one scenario of real
`python -m sslx.main` processes covers the lock, Ctrl-C and the rerun of a finished run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from helpers import REPO, experiment_names, load_experiment
from sslx import config as config_lib
from sslx import methods, seeds, train
from sslx import workdir as workdir_lib
from test_bad_inputs import _config, _expect_refusal, _set, _snapshot
from test_reliability import finish, log_text, subprocess_env


def _error_line(proc: subprocess.CompletedProcess) -> str:
  """The one `error: ...` line of a refused run (and no traceback)."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, proc.stderr[-3000:]
  return lines[0]


# ---------------------------------------------------------------------------------------
# The workdir lock (unit level: the holder is another live process, a dead one, a host
# that stopped its heartbeat)
# ---------------------------------------------------------------------------------------


def _write_lock(workdir, *, host, pid, age_s=0.0):
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, workdir_lib.LOCK_FILENAME)
  with open(path, "w") as f:
    json.dump({"host": host, "pid": pid, "since": time.time() - age_s, "token": "theirs"}, f)
  if age_s:
    os.utime(path, (time.time() - age_s, time.time() - age_s))
  return path


@pytest.fixture
def live_pid():
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
  yield proc.pid
  proc.kill()
  proc.wait()


def test_lock_held_by_a_live_process_refuses_and_names_it(tmp_path, live_pid):
  workdir = str(tmp_path / "w")
  _write_lock(workdir, host=socket.gethostname(), pid=live_pid)
  message = _expect_refusal(_config(), workdir, "is in use by another run",
                            f"host {socket.gethostname()!r}, pid {live_pid}, since ")
  assert "another --workdir" in message
  assert os.listdir(workdir) == [workdir_lib.LOCK_FILENAME]


def test_lock_of_another_host_with_a_fresh_heartbeat_is_respected(tmp_path):
  workdir = str(tmp_path / "w")
  _write_lock(workdir, host="some-other-host", pid=1, age_s=5)
  with pytest.raises(ValueError, match="'some-other-host', pid 1"):
    workdir_lib.WorkdirLock(workdir).acquire()


@pytest.mark.parametrize("holder", ["dead pid on this host", "other host, old heartbeat",
                                    "unreadable and old"])
def test_stale_lock_is_taken_over_and_released(tmp_path, holder):
  workdir = str(tmp_path / "w")
  if holder == "dead pid on this host":
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = _write_lock(workdir, host=socket.gethostname(), pid=dead.pid)
  elif holder == "other host, old heartbeat":
    path = _write_lock(workdir, host="some-other-host", pid=1,
                       age_s=workdir_lib.STALE_AFTER_S + 60)
  else:
    path = _write_lock(workdir, host="x", pid=1, age_s=workdir_lib.STALE_AFTER_S + 60)
    with open(path, "w") as f:
      f.write("{garb")
    os.utime(path, (time.time() - 10**4, time.time() - 10**4))
  with workdir_lib.WorkdirLock(workdir) as lock:
    lock.acquire()
    with open(path) as f:
      assert json.load(f)["pid"] == os.getpid()
    with pytest.raises(ValueError, match=f"pid {os.getpid()}"):  # and now it is ours
      workdir_lib.WorkdirLock(workdir).acquire()
  assert os.listdir(workdir) == []  # released, and no '.stale' file left behind


def test_lock_heartbeat_refreshes_it(tmp_path):
  lock = workdir_lib.WorkdirLock(str(tmp_path / "w"), heartbeat_s=0.05)
  lock.acquire()
  try:
    os.utime(lock.path, (0, 0))
    deadline = time.time() + 10
    while os.stat(lock.path).st_mtime < 1 and time.time() < deadline:
      time.sleep(0.05)
    assert os.stat(lock.path).st_mtime > time.time() - 60
  finally:
    lock.release()
  assert not os.path.exists(lock.path)


# ---------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------


def test_seed_keys_are_unchanged_for_32_bit_seeds():
  """Published results (seeds 0, 1, 2) stay reproducible: the same key as before."""
  for seed in (0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1):
    np.testing.assert_array_equal(jax.random.key_data(seeds.seed_key(seed)),
                                  jax.random.key_data(jax.random.key(seed)))


def test_seed_keys_do_not_alias_over_int64():
  edge = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, 2**40, -1, -2, -2**31, -2**32, 2**63 - 1, -2**63]
  keys = {tuple(np.asarray(jax.random.key_data(seeds.seed_key(s))).tolist()) for s in edge}
  assert len(keys) == len(edge)
  assert len({seeds.numpy_seed(s) for s in edge}) == len(edge)


@pytest.mark.parametrize("seed", [2**63, -2**63 - 1, 2**70])
def test_seed_outside_int64_is_refused(seed, tmp_path):
  workdir = str(tmp_path / "w")
  _expect_refusal(_config(_set("seed", seed)), workdir, "seed must be in [-2**63, 2**63)")
  assert not os.path.exists(workdir)


# ---------------------------------------------------------------------------------------
# Data: labels, shapes, empty splits, corrupt files (all refused before anything is built)
# ---------------------------------------------------------------------------------------


def _npz(tmp_path, name="data.npz", **changes) -> str:
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8),
                y_train=np.arange(20) % 2,
                x_test=rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8),
                y_test=np.arange(6) % 2)
  arrays.update(changes)
  path = str(tmp_path / name)
  np.savez(path, **arrays)
  return path


def _npz_config(path, num_classes=-1, **top):
  def mutate(d):
    d["data"].update(name=f"npz:{path}", num_labels=-1, num_classes=num_classes,
                     normalization="none")
    d.update(eval_batch_size=8, **top)
  return _config(mutate)


def _y(*values, n=20, dtype=np.int64):
  y = np.arange(n) % 2
  y = y.astype(dtype)
  y[-len(values):] = values
  return y


LABEL_CASES = {
    # label, dtype, expected text: the stored value, not a wrapped int32
    "2**32 + 1 does not wrap to class 1": (dict(y_train=_y(2**32 + 1)), 2,
                                           "y_train has labels outside [0, 2)", "[4294967297]"),
    "2**31 + 5 is shown as itself": (dict(y_train=_y(2**31 + 5)), 2, "[2147483653]"),
    "uint64 label": (dict(y_test=_y(2**63 + 3, n=6, dtype=np.uint64)), 2,
                     "y_test has labels outside [0, 2)", "[9223372036854775811]"),
    "a stray test label does not build a huge head": (
        dict(y_test=_y(999999, n=6)), -1, "cannot infer the number of classes",
        "y_test has 1 label(s) outside them, e.g. [999999]", "--config.data.num_classes=K"),
    "a class missing from training": (
        dict(y_train=np.array([0, 2] * 10)), -1, "cannot infer the number of classes",
        "y_train has 2 distinct labels in [0, 2] (1 of 0..2 absent, e.g. [1])"),
    "huge train label": (dict(y_train=_y(2**40)), -1, "cannot infer the number of classes",
                         "in [0, 1099511627776]"),
    "negative train label": (dict(y_train=_y(-3)), -1, "y_train has labels outside [0, 2)",
                             "e.g. [-3]"),
    "explicit class count still checks test labels": (
        dict(y_test=_y(7, n=6)), 2, "y_test has labels outside [0, 2) (data.num_classes=2), "
        "e.g. [7]"),
    "empty test split": (dict(x_test=np.zeros((0, 8, 8, 1), np.uint8),
                              y_test=np.zeros((0,), np.int64)), 2, "x_test is empty"),
    "RGBA images": (dict(x_train=np.zeros((20, 8, 8, 4), np.uint8),
                         x_test=np.zeros((6, 8, 8, 4), np.uint8)), 2,
                    "train images have shape [20, 8, 8, 4]", "C = 1 (grayscale) or 3 (RGB)"),
    "2-channel images": (dict(x_train=np.zeros((20, 8, 8, 2), np.uint8),
                              x_test=np.zeros((6, 8, 8, 2), np.uint8)), 2,
                         "train images have shape [20, 8, 8, 2]"),
    "1x1 images": (dict(x_train=np.zeros((20, 1, 1, 1), np.uint8),
                        x_test=np.zeros((6, 1, 1, 1), np.uint8)), 2,
                   "train images have shape [20, 1, 1, 1]", "at least 2x2"),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_bad_npz_data(case, tmp_path):
  changes, num_classes, *needles = LABEL_CASES[case]
  path = _npz(tmp_path, **changes)
  workdir = str(tmp_path / "w")
  _expect_refusal(_npz_config(path, num_classes), workdir, f"data.name='npz:{path}'", *needles)
  assert not os.path.exists(workdir)


def test_num_classes_inferred_when_unambiguous(tmp_path):
  from sslx import data as data_lib
  path = _npz(tmp_path, y_train=np.arange(20) % 4, y_test=np.array([0, 1, 2, 3, 3, 0]))
  assert data_lib.load_dataset(_npz_config(path).data).num_classes == 4
  # explicit: a class absent from the data is allowed when the count is given
  path = _npz(tmp_path, "b.npz", y_train=np.array([0, 2] * 10), y_test=np.arange(6) % 3)
  assert data_lib.load_dataset(_npz_config(path, num_classes=3).data).num_classes == 3


def _corrupt_npz(tmp_path, kind: str) -> str:
  import zipfile
  good = _npz(tmp_path, "good.npz")
  path = str(tmp_path / f"{kind}.npz")
  raw = bytearray(open(good, "rb").read())
  if kind == "bad_crc":  # one flipped byte inside x_train's data
    raw[raw.find(b"x_train.npy") + 300] ^= 0xFF
  elif kind == "truncated_file":
    raw = raw[:len(raw) // 2]
  elif kind in ("corrupt_member", "corrupt_header"):
    arrays = dict(np.load(good))
    if kind == "corrupt_member":  # compressed, a stretch of the deflate stream zeroed
      np.savez_compressed(path, **arrays)
      raw = bytearray(open(path, "rb").read())
      at = raw.find(b"x_train.npy") + 60
      raw[at:at + 30] = b"\x00" * 30
    else:  # a valid zip (CRCs right) whose x_train.npy header is not a dict
      with zipfile.ZipFile(good) as z, zipfile.ZipFile(path, "w") as out:
        for name in z.namelist():
          data = z.read(name)
          if name == "x_train.npy":
            data = data[:10] + b"{'descr': '|u1', 'fortran_order': False, 'shape': (#" + data[62:]
          out.writestr(name, data)
      return path
  elif kind == "npy_renamed":
    np.save(str(tmp_path / "x.npy"), np.zeros((3, 8, 8, 1), np.uint8))
    os.rename(str(tmp_path / "x.npy"), path)
    return path
  with open(path, "wb") as f:
    f.write(raw)
  return path


CORRUPT_CASES = {
    "bad_crc": "x_train: the file is corrupt or truncated (BadZipFile: Bad CRC-32",
    "truncated_file": "cannot read it as an .npz file",
    "corrupt_member": "x_train: the file is corrupt or truncated (error: Error -3 while "
                      "decompressing",
    "corrupt_header": "x_train: the file is corrupt or truncated",
    "npy_renamed": "this is a single .npy array ((3, 8, 8, 1)), not an .npz archive",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_CASES))
def test_corrupt_npz(kind, tmp_path):
  path = _corrupt_npz(tmp_path, kind)
  workdir = str(tmp_path / "w")
  _expect_refusal(_npz_config(path, 2), workdir, f"data.name='npz:{path}'", CORRUPT_CASES[kind])
  assert not os.path.exists(workdir)


# ---------------------------------------------------------------------------------------
# Config: args of every experiment file, non-finite weights
# ---------------------------------------------------------------------------------------

ARG_CASES = {
    ("supervised_digits", "smok"): "supervised_digits.py: unknown arg(s) ['smok']",
    ("fixmatch_digits", "smoke,threshhold=0.5"): "fixmatch_digits.py: unknown arg(s) "
                                                 "['threshhold']",
    ("fixmatch_graph_digits", "threshold=0.5"): "fixmatch_graph_digits.py: unknown arg(s) "
                                                "['threshold']",
    ("fixmatch_simclr_digits", "labels=40"): "fixmatch_simclr_digits.py: unknown arg(s)",
    ("lp_digits", "smoke,labelz=3"): "lp_digits.py: unknown arg(s) ['labelz']",
    ("simclr_digits", "smoek"): "simclr_digits.py: unknown arg(s) ['smoek']",
    ("supervised_digits", "labels_per_class=abc"): "labels_per_class must be a positive int "
                                                   "or -1 (all labeled), got 'abc'",
    ("fixmatch_digits", "labels_per_class=abc"): "labels_per_class must be a positive int, "
                                                 "got 'abc'",
    ("lp_digits", "labels_per_class=0"): "labels_per_class must be a positive int, got 0",
    ("simclr_digits", "labels_per_class=2.5"): "labels_per_class must be a positive int",
    ("fixmatch_digits", "threshold=nan"): "threshold must be a number in [0, 1], got nan",
    ("fixmatch_digits", "threshold=high"): "threshold must be a number in [0, 1], got 'high'",
    ("fixmatch_digits", "graph=inf"): "graph must be a number >= 0, got inf",
    ("fixmatch_digits", "da=2"): "da must be an int in [0, 1], got 2",
    ("fixmatch_graph_digits", "nt_xent=abc"): "nt_xent must be a number >= 0, got 'abc'",
    ("fixmatch_cifar10", "split_seed=x"): "split_seed must be an int >= 0, got 'x'",
    ("fixmatch_digits", "labels_per_class=2,labels_per_class=5"): "'labels_per_class' given "
                                                                  "twice (2 and 5)",
}


@pytest.mark.parametrize("case", sorted(ARG_CASES), ids=lambda c: f"{c[0]}:{c[1]}")
def test_experiment_args_are_checked(case):
  name, arg = case
  with pytest.raises(ValueError) as info:
    load_experiment(name, arg)
  assert ARG_CASES[case] in str(info.value)


@pytest.mark.parametrize("name", experiment_names())
def test_every_experiment_file_refuses_an_unknown_arg(name):
  with pytest.raises(ValueError, match=rf"{name}\.py: unknown arg\(s\) \['smok'\]"):
    load_experiment(name, "smok")


def test_known_args_still_work():
  c = load_experiment("fixmatch_graph_digits", "smoke,labels_per_class=3,nt_xent=0.5")
  assert c.data.num_labels == 30 and c.loss.terms.nt_xent == 0.5 and c.num_steps == 6
  assert c.fixmatch.threshold == 0.9 and c.loss.terms.graph == 1.0
  assert load_experiment("supervised_digits", "labels_per_class=-1").data.num_labels == -1


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("term", ["supervised", "fixmatch"])
def test_non_finite_loss_weight_is_refused(weight, term, tmp_path):
  def mutate(d):
    d["loss"]["terms"] = {"supervised": 1.0, "fixmatch": 1.0, term: weight}
    d["unlabeled_ratio"] = 1
  workdir = str(tmp_path / "w")
  _expect_refusal(_config(mutate), workdir,
                  f"loss.terms.{term} must be a finite weight >= 0, got {weight!r}")
  assert not os.path.exists(workdir)


def _float_fields(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _float_fields(v, f"{prefix}{k}.")
    elif isinstance(v, float):
      yield f"{prefix}{k}"


@pytest.mark.parametrize("name,arg", [("fixmatch_graph_digits", "smoke,nt_xent=0.5"),
                                      ("lp_digits", "smoke"), ("simclr_digits", "smoke"),
                                      ("mean_teacher_digits", "smoke"),
                                      ("byol_digits", "smoke")])
def test_every_float_field_refuses_nan_and_inf(name, arg):
  """Every float a run reads (options of inactive terms are not read) is checked finite."""
  import ml_collections
  base = load_experiment(name, arg).to_dict()
  base["fixmatch"]["soft_targets"] = True  # so fixmatch.sharpen_temperature is read
  active = set(base["loss"]["terms"])
  checked = 0
  for field in _float_fields(base):
    block = field.split(".")[0]
    if block in methods.REGISTRY and block not in active:
      continue
    for bad in (math.nan, math.inf):
      d = ml_collections.ConfigDict(base).to_dict()
      *parents, last = field.split(".")
      node = d
      for p in parents:
        node = node[p]
      node[last] = bad
      errors = config_lib.config_errors(ml_collections.ConfigDict(d))
      assert any(field.split(".")[-1] in e for e in errors), (field, bad, errors)
      checked += 1
  assert checked >= 20


# ---------------------------------------------------------------------------------------
# Workdirs that cannot be used (a file, a read-only filesystem, a full disk)
# ---------------------------------------------------------------------------------------


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "w"
  path.write_text("not a directory")
  _expect_refusal(_config(), str(path), f"workdir {str(path)!r} is a file, not a directory")
  _expect_refusal(_config(), str(path / "sub"), "is a file, not a directory")


@pytest.fixture
def tmpfs(tmp_path):
  """Mounts small tmpfs filesystems (needs root and CAP_SYS_ADMIN; skipped otherwise)."""
  mounted = []

  def mount(name: str, options: str) -> str:
    target = tmp_path / name
    target.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True)
    if proc.returncode:
      pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    mounted.append(str(target))
    return str(target)

  yield mount
  for target in mounted:
    subprocess.run(["umount", "-l", target], check=False)


def test_read_only_filesystem(tmpfs):
  root = tmpfs("ro", "ro,size=1m")
  for workdir in (root, os.path.join(root, "run")):  # existing, and to be created
    _expect_refusal(_config(), workdir, "Read-only file system")
  assert os.listdir(root) == []


def test_disk_full_at_start_leaves_nothing_behind(tmpfs):
  root = tmpfs("full", "size=64k")
  workdir = os.path.join(root, "run")
  os.mkdir(workdir)  # before filling: a tmpfs directory itself needs space
  fd = os.open(os.path.join(root, "filler"), os.O_WRONLY | os.O_CREAT)
  try:
    while os.write(fd, b"\0" * 4096):
      pass
  except OSError:  # ENOSPC: the disk is full
    pass
  finally:
    os.close(fd)
  _expect_refusal(_config(), workdir, "No space left on device")
  assert os.listdir(workdir) == []
  # the atomic writer itself: no `<name>.tmp.<pid>` after a failed write
  with pytest.raises(ValueError, match="cannot write .*config.json.*No space left"):
    workdir_lib._atomic_write_text(os.path.join(workdir, "config.json"), "x" * 100000)
  assert os.listdir(workdir) == []


# ---------------------------------------------------------------------------------------
# A finished run: resume on changed data, rerun, --overwrite with data that cannot run
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
  """A finished 4-step run on an npz file (its workdir and the file)."""
  root = tmp_path_factory.mktemp("npz_run")
  path = _npz(root)
  workdir = str(root / "w")
  results = train.train_and_evaluate(_npz_config(path), workdir)
  assert results["steps"] == 4 and not os.path.exists(
      os.path.join(workdir, workdir_lib.LOCK_FILENAME))
  return workdir, path


@pytest.fixture
def npz_copy(npz_run, tmp_path):
  workdir, path = npz_run
  shutil.copytree(workdir, str(tmp_path / "w"))
  shutil.copy(path, str(tmp_path / "data.npz"))
  return str(tmp_path / "w"), str(tmp_path / "data.npz")


def _point_at(workdir: str, path: str):
  """The workdir copy's config and fingerprint name the npz at `path` (a copy of the
  fixture's file); returns that config."""
  config = _npz_config(path)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))
  fp_path = os.path.join(workdir, workdir_lib.FINGERPRINT_FILENAME)
  with open(fp_path) as f:
    fp = json.load(f)
  fp["source"] = f"npz:{path}"
  with open(fp_path, "w") as f:
    json.dump(fp, f)
  return config


def _edit_npz(path, **changes):
  arrays = dict(np.load(path))
  arrays.update(changes)
  np.savez(path, **arrays)


@pytest.mark.parametrize("change,needle", [
    ("labels", "train_labels_sha256: '"),
    ("pixels", "train_images_sample_sha256: '"),
    ("shape", "train_images: 'uint8[20, 8, 8, 1]' -> 'uint8[24, 8, 8, 1]'"),
])
def test_resume_on_changed_data_is_refused(npz_copy, change, needle, tmp_path):
  workdir, _ = npz_copy
  path = _npz(tmp_path, "data.npz")  # same arrays: the fingerprint matches ...
  os.remove(os.path.join(workdir, "results.json"))  # ... of an unfinished run
  arrays = dict(np.load(path))
  if change == "labels":
    _edit_npz(path, y_train=arrays["y_train"][::-1].copy())
  elif change == "pixels":
    x = arrays["x_train"].copy()
    x[0, 0, 0, 0] ^= 1
    _edit_npz(path, x_train=x)
  else:
    _edit_npz(path, x_train=np.concatenate([arrays["x_train"], arrays["x_train"][:4]]),
              y_train=np.concatenate([arrays["y_train"], arrays["y_train"][:4]]))
  config = _point_at(workdir, path)
  split_before = open(os.path.join(workdir, "labeled_indices.json")).read()
  _expect_refusal(config, workdir, "holds a run started on different data", needle,
                  "--overwrite")
  assert open(os.path.join(workdir, "labeled_indices.json")).read() == split_before


def test_rerun_of_a_finished_run_rewrites_nothing(npz_copy):
  workdir, path = npz_copy
  config = _point_at(workdir, path)
  before = _snapshot(workdir)
  results = train.train_and_evaluate(config, workdir)
  assert _snapshot(workdir) == before
  assert results == json.load(open(os.path.join(workdir, "results.json")))


def test_overwrite_with_data_that_cannot_run_deletes_nothing(npz_copy, tmp_path):
  workdir, _ = npz_copy
  rgba = _npz(tmp_path, "rgba.npz", x_train=np.zeros((20, 8, 8, 4), np.uint8),
              x_test=np.zeros((6, 8, 8, 4), np.uint8))
  before = _snapshot(workdir)
  with pytest.raises(ValueError, match=r"train images have shape \[20, 8, 8, 4\]"):
    train.train_and_evaluate(_npz_config(rgba), workdir, overwrite=True)
  assert _snapshot(workdir) == before


def test_seed_above_32_bits_trains_differently(npz_run, tmp_path):
  """2**40 used to be seed 0 (only the low 32 bits reached the key)."""
  workdir, path = npz_run
  other = str(tmp_path / "w")
  train.train_and_evaluate(_npz_config(path, seed=2**40), other)

  def params(w):
    from test_reliability import read_checkpoint
    return read_checkpoint(w, 4)
  a, b = params(workdir), params(other)
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b) > 4
  assert any(not np.array_equal(x, y) for x, y in zip(flat_a, flat_b))


# ---------------------------------------------------------------------------------------
# Real processes: config files, a second run in a busy workdir, Ctrl-C, a finished rerun
# ---------------------------------------------------------------------------------------


def test_config_file_problems_exit_2_with_one_line(tmp_path):
  (tmp_path / "noget.py").write_text("x = 1\n")
  (tmp_path / "dict.py").write_text("def get_config(arg=None):\n  return {'seed': 0}\n")
  cases = {
      str(tmp_path / "missing.py"): "does not exist",
      str(tmp_path / "noget.py"): "has no get_config(arg) function",
      str(tmp_path / "dict.py"): "get_config(None) returned a dict, not an "
                                 "ml_collections.ConfigDict",
      os.path.join(REPO, "experiments", "supervised_digits.py") + ":smok":
          "unknown arg(s) ['smok']",
      os.path.join(REPO, "experiments", "supervised_digits.py") + ":labels_per_class=abc":
          "labels_per_class must be a positive int or -1 (all labeled), got 'abc'",
  }
  env = subprocess_env(tmp_path, num_devices=None)
  procs = {c: subprocess.Popen([sys.executable, "-m", "sslx.main", f"--config={c}",
                                f"--workdir={tmp_path / 'w'}"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for c in cases}
  for c, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    line = _error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert cases[c] in line and c.split(":")[0] in line, line
  assert not os.path.exists(tmp_path / "w")


def test_busy_workdir_and_ctrl_c(tmp_path):
  """A second process in a running workdir exits 2 naming the first; Ctrl-C (twice) makes
  the first checkpoint and exit 42 without a traceback, releasing the workdir."""
  from test_reliability import CONFIG, finalized_steps, wait_for_step
  env = subprocess_env(tmp_path)
  workdir = str(tmp_path / "w")
  # Long enough that it is still running when the second process gets to the lock.
  command = [sys.executable, "-m", "sslx.main", f"--config={CONFIG}", f"--workdir={workdir}",
             "--config.num_steps=100000", "--config.log_every=1",
             "--config.eval_every=100000", "--config.checkpoint_every=100000"]
  log = open(f"{workdir}.first.txt", "w")
  first = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  first.log_path = log.name
  log.close()
  try:
    wait_for_step(workdir, 2, [first])
    line = _error_line(subprocess.run(command, env=env, cwd=REPO, capture_output=True,
                                      text=True, timeout=300))
    assert f"pid {first.pid}" in line and socket.gethostname() in line, line
    assert "in use by another run" in line, line
    first.send_signal(signal.SIGINT)
    time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    assert finish(first) == train.PREEMPTED_EXIT_CODE, log_text(first)[-3000:]
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()
  text = log_text(first)
  assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
  assert "SIGINT: stopping after this step" in text, text[-3000:]
  match = re.search(r"preempted \(SIGINT\): checkpoint written at step (\d+)", text)
  assert match, text[-3000:]
  assert finalized_steps(workdir) == [int(match.group(1))]
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILENAME))
