#!/usr/bin/env bash
# Checks the package as a user gets it, outside the repository (needs PyPI for the
# build backend; the rest is offline):
#   1. `pip wheel --no-deps .`, installed into a fresh venv that sees this machine's
#      packages (--system-site-packages, so jax & co. are not downloaded again), then,
#      from an empty directory: `sslx-train --config=fixmatch_digits:smoke` (a shipped
#      experiment by name), `--print_config`, `--list_experiments`, an unknown config
#      (exit 2), a typo in an override (exit 2), and `sslx-plot` on the smoke run.
#   2. `pip install -e .` into a second such venv: the editable install still finds
#      the repository's experiments/.
# With --plain, also 3.: the plain `pip install .` into a venv WITHOUT system packages
# (downloads jax, chex, numpy from PyPI): lists what it installed and imports every
# module of sslx.losses.
#
#   bash scripts/check_install.sh [--plain]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/sslx_install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
py=${PYTHON:-python3}
step() { echo; echo "### $*"; }

step "1. wheel -> fresh venv (--system-site-packages), commands run from $tmp/elsewhere"
"$py" -m pip wheel -q --no-deps -w "$tmp/dist" "$repo"
ls "$tmp/dist"
"$py" -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install -q --no-deps --no-index "$tmp"/dist/sslx-*.whl
mkdir "$tmp/elsewhere" && cd "$tmp/elsewhere"
"$tmp/venv/bin/python" -c "import sslx; print('sslx imported from', sslx.__file__)"
"$tmp/venv/bin/sslx-train" --list_experiments > "$tmp/list.txt"
echo "--list_experiments: $(wc -l < "$tmp/list.txt") experiments, first: $(head -1 "$tmp/list.txt")"
"$tmp/venv/bin/sslx-train" --config=fixmatch_digits:smoke --print_config > "$tmp/print.txt"
grep -E '^(# Args|num_steps =|batch_size =)' "$tmp/print.txt"
start=$(date +%s)
"$tmp/venv/bin/sslx-train" --config=fixmatch_digits:smoke --workdir=runs/x 2>&1 | tail -1
echo "smoke run: $(( $(date +%s) - start )) s; workdir: $(ls runs/x | tr '\n' ' ')"
"$tmp/venv/bin/sslx-plot" runs/x | tail -1
set +e
"$tmp/venv/bin/sslx-train" --config=no_such_experiment > "$tmp/err.txt" 2>&1; echo "exit $?"
cut -c1-120 "$tmp/err.txt"
"$tmp/venv/bin/sslx-train" --config=fixmatch_digits:smoke --config.num_step=5 2>&1; echo "exit $?"
set -e

step "2. editable install (pip install --no-deps -e .) into a second venv"
"$py" -m venv --system-site-packages "$tmp/venv_e"
cp -r "$repo" "$tmp/repo" && rm -rf "$tmp/repo/.git" "$tmp/repo"/*.egg-info
"$tmp/venv_e/bin/pip" install -q --no-deps -e "$tmp/repo"
"$tmp/venv_e/bin/python" -c "import sslx.config as c; print('experiments from', c.experiments_dir())"
"$tmp/venv_e/bin/sslx-train" --config=supervised_digits:smoke --print_config > "$tmp/print_e.txt"
grep -E '^num_steps ' "$tmp/print_e.txt"

if [[ "${1:-}" == "--plain" ]]; then
  step "3. plain pip install (no extras) into a venv without system packages"
  "$py" -m venv "$tmp/venv_plain"
  "$tmp/venv_plain/bin/pip" install -q "$tmp"/dist/sslx-*.whl
  "$tmp/venv_plain/bin/pip" list --format=freeze > "$tmp/plain.txt"
  tr '\n' ' ' < "$tmp/plain.txt"; echo
  echo "$(wc -l < "$tmp/plain.txt") distributions (pip and setuptools included)," \
    "$(du -sm "$tmp/venv_plain" | cut -f1) MB venv"
  "$tmp/venv_plain/bin/python" - <<'PY'
import importlib, pkgutil, sys, time
t = time.perf_counter()
import sslx.losses
for m in pkgutil.iter_modules(sslx.losses.__path__):
  importlib.import_module(f"sslx.losses.{m.name}")
import jax
print(f"imported sslx.losses and its {len(list(pkgutil.iter_modules(sslx.losses.__path__)))} modules"
      f" in {time.perf_counter() - t:.1f} s;",
      "loss:", float(sslx.losses.nt_xent(jax.numpy.eye(4), jax.numpy.eye(4))))
heavy = [m for m in ("tensorflow", "tensorflow_datasets", "orbax", "flax", "optax") if m in sys.modules]
print("heavy modules imported:", heavy)
PY
fi
echo; echo "all install checks passed"
