"""The config schema: every field the trainer reads, its default, and its validation.

Experiment files (``experiments/*.py``) start from :func:`base_config` and override
fields, so a typo in an experiment file (a key the schema does not have) is caught by
:func:`validate_config` before anything is compiled or written, and a typo in a
``--config.x.y=...`` override is caught by ``ml_collections`` itself.

Fields scripts and users rely on: ``seed``, ``num_steps``, ``batch_size`` (the global
labeled batch), ``data.name``, ``data.num_labels``, ``model.name``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import ml_collections

from sslx import optim, seeds

# Free-form blocks: their keys are checked by whoever consumes them (the model
# constructor for `model`, the method registry for `loss.terms`), not by the schema.
_FREE_FORM = ("model", "loss.terms")

# Fields that change how a run is observed, not what it computes: a resumed run may
# change them without being treated as a different experiment.
OBSERVATION_ONLY_FIELDS = (
    "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "eval_batch_size",
    "stall_timeout_s", "debug.stall_at_step",
)


def base_config() -> ml_collections.ConfigDict:
  """Defaults for every field; experiment configs override these."""
  from sslx import data  # local import: the data layer pulls in tfds
  from sslx import methods
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "supervised"  # a label for logs; the loss is defined by `loss.terms`
  c.num_steps = 1000
  c.batch_size = 64  # global labeled batch, split across all devices
  c.unlabeled_ratio = 0  # mu: the unlabeled batch is mu * batch_size
  c.ema_decay = 0.999  # 0 turns the EMA of parameters off
  c.skip_nonfinite_updates = False  # True: drop updates whose loss/grads are NaN/inf and count them
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.eval_batch_size = 512
  # Stop the run (exit 43, checkpoints kept) when one step, evaluation, refresh or checkpoint
  # save makes no progress for this long; 0 = never (sslx/dispatch.py).
  c.stall_timeout_s = 1200.0
  c.data = data.default_data_config()
  c.model = ml_collections.ConfigDict(dict(name="cnn"))
  c.optimizer = optim.default_optimizer_config()
  c.augment = methods.default_augment_config()
  c.loss = ml_collections.ConfigDict(dict(
      terms=ml_collections.ConfigDict({"supervised": 1.0}),  # method name -> weight
      imports=(),  # modules to import first: a method file of your own registers itself
  ))
  for block, defaults in methods.method_option_configs().items():
    c[block] = defaults
  c.feature_eval = ml_collections.ConfigDict(dict(
      # At the end of a run, evaluate frozen features (params, not EMA) on the test set:
      linear_probe=False,  # logistic regression fit to convergence on the labeled subset
      knn=False,  # weighted kNN (InstDisc/solo-learn) over the labeled subset
      knn_k=200,
      knn_temperature=0.07,
      probe_l2=1e-4,
      pixel_baseline=False,  # also fit the probe on raw pixels, the bar to beat
  ))
  c.debug = ml_collections.ConfigDict(dict(
      nan_at_step=-1,  # >= 0: inject a NaN into the loss at this step (tests of the guard)
      stall_at_step=-1,  # >= 0: the step to this step+1 blocks on the host (watchdog tests)
  ))
  return c


def load_config_module(path: str):
  """The Python module of a config file (to reach helpers it defines besides
  ``get_config``, e.g. each semi-supervised ``*_digits.py``'s ``set_method``).

  Raises:
    ValueError: naming the file: it does not exist or cannot be imported.
  """
  import importlib.util
  import os
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} does not exist" +
                     (" (it is a directory)" if os.path.isdir(path) else ""))
  name = "sslx_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"config file {path!r} is not a Python file (want a .py file with "
                     "get_config(arg))")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ValueError(f"config file {path!r} line {e.lineno}: {e.msg}") from e
  return module


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of a config file, e.g. ``experiments/fixmatch_digits.py``.

  Lets one experiment build on another (``fixmatch_graph_digits.py`` starts from
  ``fixmatch_digits.py``) and scripts/tests load configs by path.

  Raises:
    ValueError: naming the file: it does not exist, cannot be imported, has no
      ``get_config``, or ``get_config`` raised a ValueError or returned something other
      than a ``ConfigDict``.
  """
  module = load_config_module(path)
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ValueError(f"config file {path!r} has no get_config(arg) function")
  config = get_config(arg)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"config file {path!r}: get_config({arg!r}) returned a "
                     f"{type(config).__name__}, not an ml_collections.ConfigDict (start from "
                     "sslx.config.base_config())")
  return config


def parse_config_arg(arg: str | None, known: Iterable[str] | None = None,
                     source: str = "config") -> dict[str, Any]:
  """Parses the ``:arg`` of ``--config=file.py:arg``: ``"smoke,labels=40"``.

  A bare word is a flag set to True; ``key=value`` values are parsed as int, float or str.
  With ``known``, an arg not in it raises ``ValueError`` naming ``source`` (the config file).
  """
  out = _parse_config_arg(arg)
  if known is not None:
    known = tuple(known)
    unknown = sorted(set(out) - set(known))
    if unknown:
      raise ValueError(f"{source}: unknown arg(s) {unknown}; known: {list(known)}")
  return out


def number_arg(args: dict[str, Any], key: str, default, *, source: str, low: float = -math.inf,
               high: float = math.inf, integer: bool = False):
  """``args[key]`` (or ``default``), checked to be a finite number (an int if `integer`) in
  ``[low, high]``; otherwise ``ValueError`` naming ``source`` and ``key``."""
  value = args.get(key, default)
  ok = _is_int(value) if integer else _is_number(value)
  if not ok or not low <= value <= high:
    kind = "an int" if integer else "a number"
    bounds = ("" if low == -math.inf and high == math.inf else
              f" in [{low:g}, {high:g}]" if high != math.inf else f" >= {low:g}")
    raise ValueError(f"{source}: {key} must be {kind}{bounds}, got {value!r}")
  return value


def positive_int_arg(args: dict[str, Any], key: str, default: int, *, source: str,
                     multiple_of: int = 1, hint: str = "") -> int:
  """``args[key]`` (or ``default``), checked to be a positive int multiple of
  ``multiple_of``; otherwise ``ValueError`` naming ``source`` and ``key``."""
  value = args.get(key, default)
  if not _is_int(value) or value <= 0 or value % multiple_of:
    what = "a positive int" if multiple_of == 1 else f"a positive multiple of {multiple_of}"
    raise ValueError(f"{source}: {key} must be {what}{hint}, got {value!r}")
  return value


def _parse_config_arg(arg: str | None) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    if "=" in part:
      key, value = part.split("=", 1)
      key, value = key.strip(), _parse_scalar(value.strip())
    else:
      key, value = part, True
    if key in out and out[key] != value:
      raise ValueError(f"config arg {key!r} given twice ({out[key]!r} and {value!r})")
    out[key] = value
  return out


def _parse_scalar(value: str):
  for cast in (int, float):
    try:
      return cast(value)
    except ValueError:
      pass
  return value


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _walk(cfg, prefix=""):
  for key in cfg.keys():
    value = cfg[key]
    path = f"{prefix}{key}"
    yield path, value
    if isinstance(value, ml_collections.ConfigDict) and path not in _FREE_FORM:
      yield from _walk(value, path + ".")


def unknown_keys(config, reference=None) -> list[str]:
  """Dotted paths present in `config` but not in the schema."""
  reference = base_config() if reference is None else reference
  known = {path for path, _ in _walk(reference)}
  return [path for path, _ in _walk(config)
          if path not in known and not any(path.startswith(f + ".") for f in _FREE_FORM)]


def config_errors(config) -> list[str]:
  """All problems with `config` that can be found without data or devices."""
  from sslx import data, methods, models
  errors = [f"config has an unknown field '{p}' (not in sslx.config.base_config(); a typo?)"
            for p in unknown_keys(config)]
  if errors:
    return errors  # a misspelt block makes the value checks below misleading

  def need(cond, msg):
    if not cond:
      errors.append(msg)

  errors.extend(seeds.seed_errors(config.seed))
  need(_is_int(config.num_steps) and config.num_steps > 0,
       f"num_steps must be an int > 0, got {config.num_steps!r}")
  need(_is_int(config.batch_size) and config.batch_size > 0,
       f"batch_size must be an int > 0, got {config.batch_size!r}")
  need(_is_int(config.unlabeled_ratio) and config.unlabeled_ratio >= 0,
       f"unlabeled_ratio must be an int >= 0, got {config.unlabeled_ratio!r}")
  need(_is_number(config.ema_decay) and 0 <= config.ema_decay < 1,
       f"ema_decay must be in [0, 1) (0 turns EMA off), got {config.ema_decay!r}")
  for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
               "eval_batch_size"):
    value = config[name]
    need(_is_int(value) and value > 0, f"{name} must be an int > 0, got {value!r}")
  need(isinstance(config.skip_nonfinite_updates, bool),
       f"skip_nonfinite_updates must be a bool, got {config.skip_nonfinite_updates!r}")
  need(_is_number(config.stall_timeout_s) and config.stall_timeout_s >= 0,
       f"stall_timeout_s must be a number of seconds >= 0 (0 = no watchdog), "
       f"got {config.stall_timeout_s!r}")
  need(_is_int(config.debug.stall_at_step),
       f"debug.stall_at_step must be an int (-1 = off), got {config.debug.stall_at_step!r}")
  need(_is_int(config.debug.nan_at_step),
       f"debug.nan_at_step must be an int (-1 = off), got {config.debug.nan_at_step!r}")
  model_name = config.model.get("name")
  need(model_name in models.MODEL_NAMES,
       f"model.name={model_name!r} is unknown; choose one of {tuple(models.MODEL_NAMES)}")
  errors.extend(optim.validate_optimizer_config(config.optimizer))
  errors.extend(augment_errors(config.augment))
  fe = config.feature_eval
  need(_is_int(fe.knn_k) and fe.knn_k >= 1, f"feature_eval.knn_k must be an int >= 1, got {fe.knn_k!r}")
  need(_is_number(fe.knn_temperature) and fe.knn_temperature > 0,
       f"feature_eval.knn_temperature must be a finite number > 0, got {fe.knn_temperature!r}")
  need(_is_number(fe.probe_l2) and fe.probe_l2 >= 0,
       f"feature_eval.probe_l2 must be a finite number >= 0, got {fe.probe_l2!r}")
  if config.data.streaming and (fe.linear_probe or fe.knn or fe.pixel_baseline):
    errors.append("feature_eval needs the dataset in memory; it is not available with "
                  "data.streaming=True (evaluate a checkpoint on a subset instead)")
  errors.extend(methods.config_errors(config))
  try:
    data.validate_data_config(config.data)
  except ValueError as e:
    errors.append(str(e))
  return errors


def augment_errors(aug) -> list[str]:
  """``config.augment`` checks (the augmentations would only fail once traced)."""
  errors = []

  def fraction(name, high=1.0, high_inclusive=True):
    v = aug[name]
    ok = _is_number(v) and 0 <= v and (v <= high if high_inclusive else v < high)
    if not ok:
      errors.append(f"augment.{name} must be a number in [0, {high}{']' if high_inclusive else ')'}"
                    f", got {v!r}")

  for name in ("flip", "simclr_blur"):
    if not isinstance(aug[name], bool):
      errors.append(f"augment.{name} must be a bool, got {aug[name]!r}")
  fraction("translate", 0.5, high_inclusive=False)
  fraction("op_prob")
  fraction("cutout")
  if not (_is_int(aug.num_ops) and aug.num_ops >= 0):
    errors.append(f"augment.num_ops must be an int >= 0, got {aug.num_ops!r}")
  if not (_is_number(aug.simclr_strength) and aug.simclr_strength >= 0):
    errors.append(f"augment.simclr_strength must be a number >= 0, got {aug.simclr_strength!r}")
  for kind in ("global", "local"):
    size = aug[f"multicrop_{kind}_size"]
    if not (_is_int(size) and size >= 0 and size != 1):
      errors.append(f"augment.multicrop_{kind}_size must be an int >= 2 (0: default), got {size!r}")
  from sslx.methods.checks import area_range  # local import, as validate_config's
  scale = area_range()
  for name in ("simclr_crop_scale", "multicrop_global_scale", "multicrop_local_scale"):
    if not scale.ok(aug[name]):
      errors.append(scale.message(f"augment.{name}", aug[name]))
  return errors


def validate_config(config) -> None:
  """Raises one ValueError listing every problem found in `config`."""
  errors = config_errors(config)
  if errors:
    raise ValueError("Invalid config:\n  - " + "\n  - ".join(errors))


def device_errors(config, num_devices: int) -> list[str]:
  """Batch sizes must split evenly across the data-parallel devices."""
  errors = []
  unlabeled = config.batch_size * config.unlabeled_ratio
  for name, value in (("batch_size", config.batch_size),
                      ("batch_size * unlabeled_ratio", unlabeled),
                      ("eval_batch_size", config.eval_batch_size)):
    if value % num_devices:
      errors.append(f"{name}={value} does not divide across {num_devices} devices "
                    f"(make it a multiple of {num_devices})")
  return errors


def differing_fields(old: dict, new: dict, ignore: Iterable[str] = OBSERVATION_ONLY_FIELDS,
                     *, defaults: dict | None = None) -> list[str]:
  """Dotted paths whose values differ between two config dicts (``to_dict()`` form).

  With `defaults` (the :func:`base_config` of the code now running, in the same form), a
  field `old` lacks and `new` holds at its default is no difference: `old` was written by
  code from before the field existed, and a new field's default keeps the old behaviour
  (every option sslx adds is off by default), so resuming such a run computes the same.
  """
  out = []
  missing = object()

  def rec(a, b, d, prefix):
    for key in sorted(set(a) | set(b)):
      path = f"{prefix}{key}"
      if path in ignore:
        continue
      va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
      vd = d.get(key, missing) if isinstance(d, dict) else missing
      if isinstance(va, dict) and isinstance(vb, dict):
        rec(va, vb, vd, path + ".")
      elif key not in a and vd is not missing and _normalise(vd) == _normalise(vb):
        continue  # added since `old` was written, and left at its default
      elif _normalise(va) != _normalise(vb):
        out.append(f"{path}: {va!r} -> {vb!r}")
  rec(old, new, defaults, "")
  return out


def _normalise(v):
  if isinstance(v, (list, tuple)):
    return [_normalise(x) for x in v]
  return v


# ---------------------------------------------------------------------------
# Finding experiment files: by path, or a shipped experiment by name
# ---------------------------------------------------------------------------


def experiments_dir() -> str:
  """The folder of the shipped experiment configs.

  ``<site-packages>/sslx/experiments`` after a wheel install (pyproject.toml maps the
  top-level ``experiments/`` there); the repository's ``experiments/`` in a checkout or
  an editable install.
  """
  import os
  package = os.path.dirname(os.path.abspath(__file__))
  for candidate in (os.path.join(package, "experiments"),
                    os.path.join(os.path.dirname(package), "experiments")):
    if os.path.isdir(candidate):
      return candidate
  raise FileNotFoundError(f"no experiments folder next to the sslx package at {package!r}")


def list_experiments() -> list[tuple[str, str]]:
  """``(name, first docstring line)`` of every shipped experiment, by name."""
  import ast
  import os
  folder = experiments_dir()
  out = []
  for file in sorted(os.listdir(folder)):
    if file.endswith(".py") and not file.startswith("_"):
      with open(os.path.join(folder, file)) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
      out.append((file[:-3], doc.strip().split("\n")[0]))
  return out


def resolve_config_path(path: str) -> str:
  """The config file `path` names: an existing file, else a shipped experiment.

  ``fixmatch_digits``, ``fixmatch_digits.py`` and ``experiments/fixmatch_digits.py``
  all name the shipped experiment when no such file exists relative to the current
  directory, so the README's commands work from anywhere after ``pip install``; any
  other path (a fork's ``my_configs/x.py``) must exist.

  Raises:
    ValueError: no such file and no shipped experiment of that name; the message
      lists the shipped ones.
  """
  import os
  if os.path.isfile(path):
    return os.path.abspath(path)
  head, base = os.path.split(path)
  by_name = head in ("", "experiments") or head == os.path.join(".", "experiments")
  if by_name:
    name = base[:-3] if base.endswith(".py") else base
    try:
      shipped = os.path.join(experiments_dir(), name + ".py")
    except FileNotFoundError:
      shipped = None
    if shipped and os.path.isfile(shipped) and name and not name.startswith("_"):
      return shipped
  try:
    names = ", ".join(name for name, _ in list_experiments())
  except FileNotFoundError:
    names = "(none found)"
  if by_name:
    raise ValueError(f"--config: config file {path!r} does not exist, and no shipped "
                     f"experiment has that name; shipped: {names}")
  raise ValueError(f"--config: config file {path!r} does not exist (a shipped experiment "
                   f"is named without a folder: {names})")
