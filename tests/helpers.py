"""Shared test utilities."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, "experiments")


def load_experiment(name: str, arg: str | None = None):
  """``experiments/<name>.py``'s ``get_config(arg)``."""
  path = os.path.join(EXPERIMENTS, f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"experiments_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def experiment_names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(EXPERIMENTS)
                if f.endswith(".py") and not f.startswith("_"))


def read_jsonl(path: str) -> list[dict]:
  import json
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
