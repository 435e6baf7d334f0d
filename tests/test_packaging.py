"""pyproject.toml and the command line a user meets: the plain install is the losses, the
shipped experiments are found by name, and config mistakes get one line and exit 2.

The wheel itself (built, installed into a fresh venv, `sslx-train` run from another
directory) needs PyPI for the build backend: `bash scripts/check_install.sh`.
"""

import ast
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from helpers import REPO, experiment_names

with open(os.path.join(REPO, "pyproject.toml"), "rb") as _f:
  PYPROJECT = tomllib.load(_f)

# import name -> distribution name, for what sslx/losses imports
_DISTRIBUTIONS = {"jax": "jax", "chex": "chex", "numpy": "numpy"}


def _requirement_names(reqs):
  import re
  return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in reqs}


def _third_party_imports(folder):
  names = set()
  for file in os.listdir(folder):
    if file.endswith(".py"):
      with open(os.path.join(folder, file)) as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
          names.add(node.module.split(".")[0])
  return {n for n in names if n not in sys.stdlib_module_names and n != "sslx"}


def _sslx_imports(folder):
  """The sslx packages the modules in `folder` import (``sslx.graph``, ...)."""
  out = set()
  for file in os.listdir(folder):
    if file.endswith(".py"):
      with open(os.path.join(folder, file)) as f:
        for node in ast.walk(ast.parse(f.read())):
          mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                  [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
          out |= {".".join(m.split(".")[:2]) for m in mods if m.startswith("sslx.")}
  return out


def test_plain_install_is_exactly_what_the_losses_import():
  # sslx.losses and the sslx packages it imports (sslx.graph), transitively.
  todo, seen = ["sslx.losses"], set()
  while todo:
    package = todo.pop()
    if package not in seen:
      seen.add(package)
      todo += sorted(_sslx_imports(os.path.join(REPO, *package.split("."))))
  assert "sslx.graph" in seen  # the graph engines, at the time of writing
  imported = set().union(*(_third_party_imports(os.path.join(REPO, *p.split(".")))
                           for p in seen))
  assert imported <= set(_DISTRIBUTIONS), f"sslx/losses imports {imported - set(_DISTRIBUTIONS)}"
  plain = _requirement_names(PYPROJECT["project"]["dependencies"])
  assert plain == {_DISTRIBUTIONS[n] for n in imported}


def test_train_extra_covers_what_the_rest_of_sslx_imports():
  aliases = {"sklearn": "scikit-learn", "tensorflow_datasets": "tensorflow-datasets",
             "orbax": "orbax-checkpoint", "ml_collections": "ml-collections",
             "absl": "absl-py", "tensorboardX": "tensorboardx", "pix": "dm-pix",
             "dm_pix": "dm-pix", "PIL": "pillow"}
  extras = PYPROJECT["project"]["optional-dependencies"]
  available = (_requirement_names(PYPROJECT["project"]["dependencies"])
               | _requirement_names(extras["train"]))
  for root, _, _ in os.walk(os.path.join(REPO, "sslx")):
    if "__pycache__" in root:
      continue
    for name in _third_party_imports(root):
      dist = aliases.get(name, name).lower()
      assert dist in available, f"{root} imports {name}, in no dependency list"
  assert "pytest" in _requirement_names(extras["test"])


def test_requirements_txt_installs_the_package_with_every_extra():
  with open(os.path.join(REPO, "requirements.txt")) as f:
    lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
  assert "-e .[train,test]" in lines


def test_every_package_and_the_experiments_are_in_the_wheel_list():
  tool = PYPROJECT["tool"]["setuptools"]
  found = sorted(os.path.relpath(root, REPO).replace(os.sep, ".")
                 for root, _, files in os.walk(os.path.join(REPO, "sslx"))
                 if "__init__.py" in files)
  assert sorted(p for p in tool["packages"] if p != "sslx.experiments") == found
  assert "sslx.experiments" in tool["packages"]
  assert tool["package-dir"] == {"sslx.experiments": "experiments"}
  assert PYPROJECT["project"]["scripts"] == {"sslx-train": "sslx.main:run",
                                             "sslx-plot": "sslx.plot:cli"}


def test_resolve_config_path_finds_shipped_experiments_from_anywhere(tmp_path, monkeypatch):
  from sslx import config
  monkeypatch.chdir(tmp_path)
  want = os.path.join(REPO, "experiments", "fixmatch_digits.py")
  for spec in ("fixmatch_digits", "fixmatch_digits.py", "experiments/fixmatch_digits.py"):
    assert config.resolve_config_path(spec) == want
  (tmp_path / "mine.py").write_text("def get_config(arg=None):\n  return None\n")
  assert config.resolve_config_path("mine.py") == str(tmp_path / "mine.py")
  with pytest.raises(ValueError, match="config file 'forks/x.py' does not exist .*fixmatch_digits"):
    config.resolve_config_path("forks/x.py")  # a path that is not there is not looked up
  with pytest.raises(ValueError, match="does not exist, and no shipped experiment has that name"):
    config.resolve_config_path("fixmatch_digit")
  assert [n for n, _ in config.list_experiments()] == experiment_names()


def test_the_wheel_layout_finds_experiments_inside_the_package(tmp_path):
  # What a wheel install looks like: experiments/ at sslx/experiments, no repository.
  site = tmp_path / "site"
  shutil.copytree(os.path.join(REPO, "sslx"), site / "sslx",
                  ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copytree(os.path.join(REPO, "experiments"), site / "sslx" / "experiments",
                  ignore=shutil.ignore_patterns("__pycache__"))
  code = ("from sslx import config; "
          "print(config.resolve_config_path('fixmatch_graph_digits')); "
          "print(config.load_config_file(config.resolve_config_path('fixmatch_graph_digits'),"
          " 'smoke').num_steps)")
  r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                     text=True, env=dict(os.environ, PYTHONPATH=str(site)), timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  path, steps = r.stdout.split()
  assert path == str(site / "sslx" / "experiments" / "fixmatch_graph_digits.py")
  assert int(steps) > 0  # it loaded fixmatch_digits.py next to it


def _exit_of(argv, capsys):
  from sslx import main
  with pytest.raises(SystemExit) as e:
    main.check_config_args(["sslx-train"] + argv)
  return e.value.code, capsys.readouterr().err.strip().split("\n")


@pytest.mark.parametrize("argv, message", [
    (["--config=fixmatch_digits:smoke", "--config.num_step=5"],
     "error: --config.num_step: the config has no field 'num_step'; "
     "did you mean --config.num_steps?"),
    (["--config=fixmatch_digits:smoke", "--config.fixmatch.treshold=0.5"],
     "error: --config.fixmatch.treshold: fixmatch has no field 'treshold'; "
     "did you mean --config.fixmatch.threshold?"),
    (["--config", "no_such_experiment"],
     "error: --config: config file 'no_such_experiment' does not exist, and no shipped "
     "experiment has that name; shipped: "),
])
def test_config_mistakes_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  code, err = _exit_of(argv, capsys)
  assert code == 2 and len(err) == 1 and err[0].startswith(message), err


def test_a_config_that_refuses_its_arg_is_one_line_and_exit_2(capsys, tmp_path):
  fork = tmp_path / "fork.py"
  fork.write_text("def get_config(arg=None):\n"
                  "  raise ValueError(f'fork.py: unknown arg(s) {arg!r}')\n")
  code, err = _exit_of([f"--config={fork}:bogus=1"], capsys)
  assert code == 2 and err == [f"error: --config={fork}:bogus=1: fork.py: unknown arg(s) 'bogus=1'"]


def test_good_config_args_are_made_absolute_and_kept(tmp_path, monkeypatch):
  from sslx import main
  monkeypatch.chdir(tmp_path)
  want = os.path.join(REPO, "experiments", "fixmatch_digits.py")
  assert main.check_config_args(["x", "--config", "fixmatch_digits:smoke",
                                 "--config.num_steps=2"]) == [
      "x", "--config", want + ":smoke", "--config.num_steps=2"]
  assert main.check_config_args(["x", "--config=experiments/fixmatch_digits.py"]) == [
      "x", "--config=" + want]


def test_print_config_and_list_experiments(tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  r = subprocess.run([sys.executable, "-m", "sslx.main", "--config=fixmatch_digits:smoke",
                      "--config.model.width=4", "--print_config", "--list_experiments=false"],
                     cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.splitlines()
  assert lines[0] == "# " + os.path.join(REPO, "experiments", "fixmatch_digits.py")
  assert any(l.startswith("# Args:") for l in lines)  # the experiment's docstring
  assert "num_steps = 6" in lines and "model.width = 4" in lines  # smoke + the override
  assert "fixmatch.threshold = 0.95" in lines
  assert not os.listdir(tmp_path)  # printed, nothing run or written
  r = subprocess.run([sys.executable, "-m", "sslx.main", "--list_experiments"],
                     cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0
  assert [l.split()[0] for l in r.stdout.splitlines()] == experiment_names()
