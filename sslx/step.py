"""The functional core: the train state, the jitted data-parallel step, refresh and eval.

1. ``TrainState``: one immutable dataclass with everything a step changes.
2. Devices: a 1-D ``Mesh`` over all devices with a ``"data"`` axis; the state is
   replicated, batches are sharded on their first axis, and ``jax.jit`` (SPMD) makes
   BatchNorm statistics and NT-Xent negatives global with no extra code.
3. The step: sample indices, gather, augment, forward, losses, update, EMA and the
   methods' target trees, all in one jitted function of ``(state, device_arrays)``; the
   RNG is derived from ``(seed, step)``, so a resumed run draws exactly what an
   uninterrupted run would.
4. Evaluation over the whole test set, the last batch padded and masked.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sslx import data as data_lib
from sslx import dispatch, methods, seeds

# ---------------------------------------------------------------------------
# 1. State
# ---------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  """Everything a step changes. Each field is a dict keyed by owner ('model', method names)."""
  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # optimized: {'model': ..., <method>: {<extra module>: ...}}
  model_state: Any  # collections: {'model': {'batch_stats': ...}, <method>: {<extra>: ...}}
  opt_state: Any
  ema_params: Any  # EMA of params['model'] for evaluation (a copy when ema_decay == 0)
  method_params: Any = flax.struct.field(default_factory=dict)  # {<method>: {<target>: tree}}
  method_state: Any = flax.struct.field(default_factory=dict)  # {<method>: its state}


def create_train_state(model, optimizer, image_shape, rng, *, active=None, extras=None,
                       info=None) -> TrainState:
  """A fresh state: the model's variables, then the active methods' extras, targets, state."""
  # One jitted init: op-by-op init compiles every initializer separately (~10x slower).
  init = jax.jit(functools.partial(model.init, train=False))
  variables = dict(init(rng, jnp.zeros((1, *image_shape), jnp.float32)))
  model_params = variables.pop("params")
  params, extra_state, method_params, method_state = methods.init_method_parts(
      active or {}, extras or {}, info, model_params, methods.stream_key(rng, "methods"))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state={"model": variables, **extra_state},
                    opt_state=optimizer.init(params),
                    ema_params=jax.tree.map(jnp.copy, model_params),  # own buffers: donated
                    method_params=method_params, method_state=method_state)


# ---------------------------------------------------------------------------
# 2. Devices
# ---------------------------------------------------------------------------


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ("data",),
              axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharded(mesh):
  return NamedSharding(mesh, P("data"))


def to_host(tree):
  """Fetches replicated arrays (also works when other processes hold replicas)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array)
                      else np.asarray(x), tree)


# ---------------------------------------------------------------------------
# 3. The step
# ---------------------------------------------------------------------------


def make_train_step(*, loss_fn, optimizer, schedule, mesh, seed: int, labeled_batch_size: int,
                    unlabeled_batch_size: int, ema_decay: float,
                    skip_nonfinite_updates: bool = False, streaming: bool = False,
                    stall_at_step: int = -1, update_targets=None):
  """Returns ``train_step(state, arrays) -> (state, metrics)``, jitted, state donated.

  At most ``dispatch.DEFAULT_DEPTH`` calls are in flight: a call waits for the step two
  calls back to finish (the multi-device XLA:CPU deadlock, see ``sslx/dispatch.py``), so
  any loop over ``train_step`` is safe on any device count.

  ``loss_fn(params, state, batch, rng) -> (loss, (model_state, method_state, metrics))``
  (:func:`sslx.methods.make_loss_fn`); ``update_targets(method_params, params, step)``
  moves the methods' target trees after the update.
  ``arrays`` are the device-resident dataset (``sslx.data.to_device``); the step draws
  its batch from them by ``(seed, step)``. With ``streaming=True`` the second argument is
  the batch itself (global arrays from the host pipeline, :func:`global_batch`).
  ``train_step.num_traces`` counts how many times it was traced (1 per run: a retrace
  would mean a recompile).
  """
  base = seeds.seed_key(seed)  # every int64 seed its own key
  data_key = jax.random.fold_in(base, 0)  # fixed per run: epoch permutations derive from it
  step_root = jax.random.fold_in(base, 1)
  traces = [0]

  def update(state: TrainState, batch, rng):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (model_state, method_state, metrics)), grads = grad_fn(state.params, state, batch, rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    method_params = (update_targets(state.method_params, params, state.step)
                     if update_targets is not None else state.method_params)
    if skip_nonfinite_updates:
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      params = keep(params, state.params)
      opt_state = keep(opt_state, state.opt_state)
      model_state = keep(model_state, state.model_state)
      method_params = keep(method_params, state.method_params)
      method_state = keep(method_state, state.method_state)
    ema = (ema_update(state.ema_params, params["model"], ema_decay) if ema_decay > 0
           else params["model"])
    metrics = dict(metrics, grad_norm=grad_norm, learning_rate=schedule(state.step),
                   nonfinite=(~finite).astype(jnp.int32))
    return state.replace(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state, ema_params=ema, method_params=method_params,
                         method_state=method_state), metrics

  def step_fn(state: TrainState, arrays):
    traces[0] += 1
    if streaming:
      batch = arrays
    else:
      batch = data_lib.sample_batch(arrays, data_key, state.step,
                                    labeled_batch_size=labeled_batch_size,
                                    unlabeled_batch_size=unlabeled_batch_size)
    batch = jax.lax.with_sharding_constraint(batch, batch_sharded(mesh))
    if stall_at_step >= 0:  # debug: this step blocks on the host (tests of the watchdog)
      jax.debug.callback(_stall_if, state.step, stall_at_step)
    return update(state, batch, jax.random.fold_in(step_root, state.step))

  jitted = jax.jit(step_fn, out_shardings=(replicated(mesh), replicated(mesh)),
                   donate_argnums=(0,))
  pacer = dispatch.Pacer()

  @functools.wraps(step_fn)
  def train_step(state, arrays):
    state, metrics = jitted(state, arrays)
    pacer.admit(metrics)  # metrics, not state: the state is donated to the next call
    return state, metrics

  train_step.num_traces = lambda: traces[0]
  train_step.jitted = jitted
  return train_step


def _stall_if(step, stall_at_step):
  if int(step) == int(stall_at_step):
    time.sleep(3600)


def make_refresh_fn(active, *, model, normalize, num_classes: int, mesh):
  """For methods with a `refresh` (deep LP): ``refresh(state, arrays) -> state`` and
  ``refresh.due(step)``, or None when no active method has one.

  A refresh reads the current params and the device-resident pools and rewrites the
  method's state (e.g. pseudo-labels of the whole unlabeled pool) in one jitted call.
  """
  refreshing = {name: (a.method, a.options) for name, a in active.items()
                if a.method.refresh is not None}
  if not refreshing:
    return None

  def refresh(state: TrainState, arrays):
    variables = methods.model_variables(state.params["model"], state.model_state)
    embed = lambda x: model.apply(variables, normalize(x), train=False)["features"]
    method_state = dict(state.method_state)
    for name, (method, options) in refreshing.items():
      method_state[name] = method.refresh(options, embed, arrays, method_state[name], num_classes)
    return state.replace(method_state=method_state)

  jitted = jax.jit(refresh, out_shardings=replicated(mesh))

  def due(step: int) -> bool:
    return any(step >= o.start_step and (step - o.start_step) % o.refresh_every == 0
               for _, o in refreshing.values())

  jitted_refresh = lambda state, arrays: jitted(state, arrays)
  jitted_refresh.due = due
  return jitted_refresh


def ema_update(ema, params, decay: float):
  """One EMA step, ``decay * ema + (1 - decay) * params`` (used by the step; exposed for tests)."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


# ---------------------------------------------------------------------------
# 4. Evaluation
# ---------------------------------------------------------------------------


def make_eval_fn(model, normalize, mesh, batch_size: int):
  """Returns ``evaluate(params, model_state, images, labels) -> accuracy`` (host numpy in).

  The test set is cut into batches of ``batch_size``; the last one is padded and masked,
  so each example counts exactly once whatever the device count.
  """

  @jax.jit
  def eval_batch(params, model_state, images, labels, mask):
    out = model.apply(methods.model_variables(params, model_state), normalize(images),
                      train=False)
    correct = (jnp.argmax(out["logits"], -1) == labels) & mask
    return jnp.sum(correct), jnp.sum(mask)

  sharding = batch_sharded(mesh)

  def put(x):
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  def evaluate(params, model_state, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the model with `params` (a model params tree) on host arrays."""
    correct = total = 0
    for start in range(0, len(images), batch_size):
      x, y = images[start:start + batch_size], labels[start:start + batch_size]
      n = len(x)
      mask = np.arange(batch_size) < n
      if n < batch_size:
        x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
        y = np.concatenate([y, np.zeros((batch_size - n,), y.dtype)])
      c, t = eval_batch(params, model_state, put(x), put(y), put(mask))
      correct, total = correct + int(to_host(c)), total + int(to_host(t))
    assert total == len(images), (total, len(images))
    return correct / max(total, 1)

  def evaluate_stream(params, model_state, batches) -> float:
    """Accuracy over this process's share of padded batches (``images, labels, mask``)."""
    correct = total = 0
    for b in batches:
      g = global_batch(mesh, b)
      c, t = eval_batch(params, model_state, g["images"], g["labels"], g["mask"])
      correct, total = correct + int(to_host(c)), total + int(to_host(t))
    return correct / max(total, 1)

  evaluate.stream = evaluate_stream
  return evaluate


def global_batch(mesh, local: dict) -> dict:
  """This process's share of a batch -> global arrays sharded on the "data" axis."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


