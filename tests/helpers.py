"""Shared test utilities."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, "experiments")


def load_experiment(name: str, arg: str | None = None):
  """``experiments/<name>.py``'s ``get_config(arg)``."""
  from sslx.config import load_config_file
  return load_config_file(os.path.join(EXPERIMENTS, f"{name}.py"), arg)


def experiment_names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(EXPERIMENTS)
                if f.endswith(".py") and not f.startswith("_"))


def read_jsonl(path: str) -> list[dict]:
  import json
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def load_script(name: str):
  """``scripts/<name>.py`` as a module (scripts are not a package)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
