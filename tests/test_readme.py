"""Every ```python block of README.md runs, each in a fresh interpreter as a reader would
paste it (so a block must import what it uses: the augmentation snippet once did not)."""

import os
import re
import subprocess
import sys

import pytest

from helpers import REPO


def python_blocks(markdown: str) -> list[tuple[int, str]]:
  """``(line number, code)`` of each fenced ```python block."""
  blocks = []
  for m in re.finditer(r"^```python[ \t]*\n(.*?)^```", markdown, re.S | re.M):
    blocks.append((markdown.count("\n", 0, m.start()) + 1, m.group(1)))
  return blocks


with open(os.path.join(REPO, "README.md")) as _f:
  _BLOCKS = python_blocks(_f.read())


def test_the_readme_has_python_blocks_and_the_extractor_finds_them():
  assert len(_BLOCKS) >= 3  # augmentations, losses, shard_map at the time of writing
  assert python_blocks("x\n```python\na = 1\n```\n```bash\nls\n```\n") == [(2, "a = 1\n")]


@pytest.mark.parametrize("line, code", _BLOCKS, ids=[f"README.md:{n}" for n, _ in _BLOCKS])
def test_readme_python_block_runs(line, code, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)  # as a fresh shell has it; a block may set its own
  r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, f"README.md:{line} failed:\n{r.stderr[-3000:]}"
