"""Config -> everything a run needs, in ONE function used by the trainer, scripts and tests.

``setup(config)`` validates the config, loads the data, builds the model, the optimizer,
the active methods (with their extra modules, target trees and state), a fresh
replicated :class:`~sslx.step.TrainState`, the jitted step, the evaluation and the
refresh, and the input: device-resident pools sampled inside the step, or a streaming
host pipeline. It writes nothing: the trainer (``sslx/train.py``) adds the workdir,
checkpoints and the loop; ``scripts/bench_step.py`` times ``exp.train_step``;
``scripts/plot_run.py`` rebuilds a run's model from its config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections

from sslx import config as config_lib
from sslx import data as data_lib
from sslx import methods, models, optim, seeds, step as step_lib


class DeviceResidentInput:
  """The dataset lives on the devices; the step samples its own batch by (seed, step)."""

  streaming = False

  def __init__(self, dataset, mesh, config):
    self.arrays = data_lib.to_device(
        dataset, mesh, max_replicated_bytes=config.data.max_replicated_mib * 2**20)

  def iterate(self, start_step: int) -> Iterator[Any]:
    del start_step  # the step derives its batch from state.step
    while True:
      yield self.arrays


class StreamingInput:
  """Batches come from a host pipeline (grain over tfds), a pure function of (seed, step)."""

  streaming = True
  arrays = None  # nothing on the devices to refresh from

  def __init__(self, dataset, mesh, config):
    self._dataset, self._mesh, self._config = dataset, mesh, config

  def iterate(self, start_step: int) -> Iterator[Any]:
    c = self._config
    batches = self._dataset.train_iterator(
        labeled_batch_size=c.batch_size, unlabeled_batch_size=c.batch_size * c.unlabeled_ratio,
        seed=seeds.numpy_seed(c.seed), start_step=start_step)
    for batch in batches:
      yield step_lib.global_batch(self._mesh, batch)


@dataclasses.dataclass
class Experiment:
  """What ``setup(config)`` assembles (see the module docstring)."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  dataset: Any  # SSLDataset (in memory) or StreamingDataset
  pool_sizes: dict[str, int]
  model: Any
  normalize: Callable
  optimizer: Any
  schedule: Callable
  active: dict[str, methods.Active]
  info: methods.ModelInfo
  state: step_lib.TrainState  # fresh, replicated over the mesh
  train_step: Callable
  evaluate: Callable
  refresh: Callable | None
  input: DeviceResidentInput | StreamingInput

  @property
  def num_devices(self) -> int:
    return self.mesh.devices.size


def build_model(config, num_classes: int):
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  try:
    return models.create_model(config.model.name, num_classes=num_classes, **kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f"config.model: {e}") from e


def make_normalize(mean, std):
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)

  def normalize(images):
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0
    return (x - mean) / std
  return normalize


def setup(config: ml_collections.ConfigDict, *, devices=None, dataset=None) -> Experiment:
  """Assembles a run of `config` (module docstring). Raises ValueError for a bad config/data.

  Args:
    config: a full config (``sslx.config.base_config()`` plus an experiment's overrides).
    devices: the devices of the data-parallel mesh (default: all).
    dataset: an already loaded dataset to use instead of ``config.data`` (tests, scripts).
  """
  config_lib.validate_config(config)
  mesh = step_lib.make_mesh(devices)
  errors = config_lib.device_errors(config, mesh.devices.size)
  if errors:
    raise ValueError("Invalid config for this device count:\n  - " + "\n  - ".join(errors))
  streaming = bool(config.data.streaming)
  if dataset is None:
    dataset = (data_lib.load_streaming_dataset(config.data) if streaming
               else data_lib.load_dataset(config.data))
  if streaming:
    pool_sizes = {"labeled": dataset.num_labeled, "unlabeled": dataset.num_unlabeled}
  else:
    pool_sizes = {"labeled": len(dataset.labeled_labels),
                  "unlabeled": len(dataset.unlabeled_labels)}
  if config.unlabeled_ratio and not pool_sizes["unlabeled"]:
    raise ValueError(
        f"unlabeled_ratio={config.unlabeled_ratio} asks for unlabeled batches, but the "
        f"unlabeled pool is empty (data.unlabeled_pool={config.data.unlabeled_pool!r}, "
        f"data.extra_unlabeled={config.data.extra_unlabeled}, data.num_labels="
        f"{config.data.num_labels}); use data.unlabeled_pool='all' or unlabeled_ratio=0.")
  model = build_model(config, dataset.num_classes)
  optimizer, schedule = optim.create_optimizer(config.optimizer, config.num_steps)
  normalize = make_normalize(dataset.mean, dataset.std)
  active = methods.active_methods(config)
  info = methods.model_info(model, dataset.image_shape, dataset.num_classes, pool_sizes,
                            config.num_steps, labeled_labels=dataset.labeled_labels)
  extras = methods.extra_modules(active, info)
  state = step_lib.create_train_state(
      model, optimizer, dataset.image_shape, jax.random.fold_in(seeds.seed_key(config.seed), 2),
      active=active, extras=extras, info=info)
  state = jax.device_put(state, step_lib.replicated(mesh))
  loss_fn = methods.make_loss_fn(
      active, model=model, normalize=normalize,
      augmenters=methods.make_augmenters(config.augment, active),
      extra_modules={m: {n: e.module for n, e in mods.items()} for m, mods in extras.items()},
      num_classes=dataset.num_classes, num_steps=config.num_steps,
      nan_at_step=config.debug.nan_at_step)
  train_step = step_lib.make_train_step(
      loss_fn=loss_fn, optimizer=optimizer, schedule=schedule, mesh=mesh, seed=config.seed,
      labeled_batch_size=config.batch_size,
      unlabeled_batch_size=config.batch_size * config.unlabeled_ratio,
      ema_decay=config.ema_decay, skip_nonfinite_updates=config.skip_nonfinite_updates,
      streaming=streaming, stall_at_step=config.debug.stall_at_step,
      update_targets=lambda mp, params, step: methods.update_targets(
          active, mp, params, step, config.num_steps))
  evaluate = step_lib.make_eval_fn(model, normalize, mesh, config.eval_batch_size)
  refresh = step_lib.make_refresh_fn(active, model=model, normalize=normalize,
                                     num_classes=dataset.num_classes, mesh=mesh)
  source = StreamingInput if streaming else DeviceResidentInput
  return Experiment(config=config, mesh=mesh, dataset=dataset, pool_sizes=pool_sizes,
                    model=model, normalize=normalize, optimizer=optimizer, schedule=schedule,
                    active=active, info=info, state=state, train_step=train_step,
                    evaluate=evaluate, refresh=refresh, input=source(dataset, mesh, config))
