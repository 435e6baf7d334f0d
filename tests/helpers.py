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
