"""sslx's full training step against a PyTorch reference step, side by side in one run.

  pip install -r requirements-bench.txt          # torch (CPU), benchmark only
  python scripts/bench_step.py --workloads=fixmatch --unchunked_too   # ~10-15 min, 2 busy cores
  python scripts/bench_step.py --workloads=simclr
  python scripts/bench_step.py --workloads=fixmatch --batch=16 --rounds=5   # smaller, quicker
  python scripts/bench_step.py --workloads=conv --batch=512 --threads=1    # where the time goes

Workloads (each: the sslx side against ``scripts/torch_reference.py``):

* ``fixmatch``: ``experiments/fixmatch_cifar10.py`` as the trainer builds it: WRN-28-2,
  64 labeled + 448 unlabeled images per step (labeled weak, unlabeled weak + strong:
  960 images through the network), 4000 labels, a 50,000-image unlabeled pool of
  CIFAR-shaped uint8 images. sslx: ONE jitted call per step (sample indices, gather from
  the device-resident uint8 pools, weak + RandAugment + Cutout on device, forward,
  backward, SGD, EMA). PyTorch: two DataLoaders whose worker processes do the same
  augmentations with PIL, then forward, backward, SGD, LR schedule, EMA in the main
  process (the USB/TorchSSL structure).
* ``simclr``: ``experiments/simclr_cifar10.py:model=resnet18,images=256`` with only the
  NT-Xent term (no online probe): ResNet-18 (CIFAR stem) + projection head, 256 images
  x 2 SimCLR views = 512 images per step, LARS. PyTorch: one DataLoader producing two
  PIL SimCLR views per image (solo-learn/lightly structure), LARS.
* ``wrn_bare``: forward + backward + SGD of WRN-28-2 on one fixed, already-normalised
  float batch (no sampling, no augmentation, no EMA): the network alone.
* ``conv``: the three convolutions of each WRN-28-2 3x3 layer shape at batch 64 --
  forward, input gradient, weight gradient -- in XLA:CPU and in PyTorch (oneDNN).

Protocol. Each side of a workload lives in its own child process for the whole run
(its compile or warm-up paid once, reported separately). Rounds alternate the sides
(A B, B A, ...), so drift in the load of a shared machine hits both alike. In a round
a side runs ``--warmup`` untimed steps then ``--steps`` timed steps. After its round
the PyTorch child waits until its loader workers are idle again, so they never run
during another side's round; its next round then starts with full prefetch queues,
as every step of a steady-state run does (on CPU a batch's augmentation takes far
less time than its step, so the queues stay full and a timed step pays for the
augmentation of the batch that replaces it). ``--unchunked_too`` adds a third side,
sslx with ``sslx.models.conv.CPU_BATCH_CHUNK = 0`` (the model before batch-chunked
convolutions), for a before/after in the same run; ``--one_device_too`` likewise adds sslx
on one XLA:CPU device (the sslx side otherwise splits its batch across one XLA:CPU device
per core, as ``python -m sslx.main`` does: ``sslx/devices.py``). Reported per side, median
over rounds:

* steps/s and images/s (images through the network per step / wall time per step);
* CPU-s per step: CPU time of the side's processes (the PyTorch main process and its
  loader workers) per step. On a machine shared with other jobs, wall time includes
  time spent descheduled; CPU time mostly does not, so it is the steadier of the two;
* compile: sslx's ``lower().compile()`` time; PyTorch's first step (loader start-up,
  first batch); and peak RSS of each process (VmHWM; PyTorch: main process and the
  largest worker) and, for sslx, XLA's temp + argument bytes for the step.

Both sides get the same cores: XLA:CPU's intra-op pool has one thread per core (its
default) and PyTorch runs ``torch.set_num_threads(--threads)`` plus its loader workers
(``--torch_workers`` per loader; 1 per loader by default, so FixMatch's two loaders use
2 worker processes and SimCLR's one loader uses 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = ("fixmatch", "simclr", "wrn_bare", "conv")
DEFAULT_BATCH = {"fixmatch": 64, "simclr": 256, "wrn_bare": 64, "conv": 64}
# WRN-28-2's 3x3 conv shapes (H = W, C_in, C_out, stride) at 32x32 inputs.
CONV_SHAPES = ((32, 16, 32, 1), (32, 32, 32, 1), (32, 32, 64, 2), (16, 64, 64, 1),
               (16, 64, 128, 2), (8, 128, 128, 1))


# ---------------------------------------------------------------------------
# Process measurements
# ---------------------------------------------------------------------------


def _status_kb(pid, field: str) -> int:
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except FileNotFoundError:
    pass
  return 0


def _child_pids(pid: int) -> list[int]:
  out = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          fields = f.read().rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
          out.append(int(entry))
      except (FileNotFoundError, ProcessLookupError, IndexError):
        pass
  return out


def _cpu_seconds(pid) -> float:
  """utime + stime of one process (all its threads)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  except (FileNotFoundError, ProcessLookupError):
    return 0.0


def _tree_cpu_seconds() -> float:
  """CPU time of this process and its direct children (PyTorch loader workers)."""
  return time.process_time() + sum(_cpu_seconds(p) for p in _child_pids(os.getpid()))


# ---------------------------------------------------------------------------
# sslx side
# ---------------------------------------------------------------------------


def _load_experiment(name: str, arg: str):
  from sslx.config import load_config_file
  return load_config_file(os.path.join(ROOT, "experiments", f"{name}.py"), arg)


def _synthetic_dataset(num_labeled: int, num_unlabeled: int, seed: int = 0):
  import numpy as np
  from sslx.data import SSLDataset
  rng = np.random.default_rng(seed)
  images = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = lambda n: rng.integers(0, 10, n).astype(np.int32)
  return SSLDataset(
      name="synthetic_cifar", labeled_images=images(num_labeled),
      labeled_labels=labels(num_labeled), unlabeled_images=images(num_unlabeled),
      unlabeled_labels=labels(num_unlabeled), test_images=images(10), test_labels=labels(10),
      num_classes=10, image_shape=(32, 32, 3),
      mean=np.asarray((0.4914, 0.4822, 0.4465), np.float32),
      std=np.asarray((0.2471, 0.2435, 0.2616), np.float32),
      labeled_indices=np.arange(num_labeled))


def sslx_config(workload: str, batch: int, width: int = 2, compute_dtype: str = "float32"):
  """The experiment config of a workload, with the benchmark's batch and width."""
  if workload == "fixmatch":
    config = _load_experiment("fixmatch_cifar10", "labels=4000")
    config.batch_size = batch
    if width != 2:
      config.model = dict(name="wide_resnet", depth=28, width=width)
  elif workload == "simclr":
    config = _load_experiment("simclr_cifar10", "model=resnet18,images=256")
    config.loss.terms = {"nt_xent": 1.0}  # the contrastive step alone, as the reference
    config.batch_size = 64  # unused: no term reads labeled images
    config.unlabeled_ratio = batch // 64
  else:
    raise ValueError(workload)
  if compute_dtype != "float32":
    config.model.dtype = compute_dtype
  return config


def build_sslx_step(workload: str, batch: int, width: int = 2, compute_dtype: str = "float32"):
  """The trainer's jitted step for a workload, built from the library pieces as
  ``sslx.train.train_and_evaluate`` builds it. Returns (run(n), info)."""
  import jax
  import jax.numpy as jnp
  from sslx import dispatch, experiment, methods

  config = sslx_config(workload, batch, width, compute_dtype)
  exp = experiment.setup(config, dataset=_synthetic_dataset(4000, 50_000))
  state, arrays = exp.state, exp.input.arrays
  t0 = time.perf_counter()
  compiled = exp.train_step.jitted.lower(state, arrays).compile()
  compile_s = time.perf_counter() - t0
  # Images through the network per step: every view any active method reads.
  per_pool = {"labeled": config.batch_size, "unlabeled": config.batch_size * config.unlabeled_ratio}
  images_per_step = sum(per_pool[v.pool] for v in methods.merged_views(exp.active).values())
  mem = compiled.memory_analysis()
  holder = [state]

  def run(n: int) -> None:
    if n <= 0:
      return
    s = holder[0]
    pacer = dispatch.Pacer()  # a bounded queue: the multi-device CPU deadlock (sslx/dispatch.py)
    for _ in range(n):
      s, metrics = compiled(s, arrays)
      pacer.admit(metrics)
    pacer.drain()
    if not bool(jnp.isfinite(metrics["loss"])):
      raise FloatingPointError(f"sslx {workload}: non-finite loss")
    holder[0] = s

  info = dict(compile_s=compile_s, images_per_step=images_per_step,
              xla_temp_mib=getattr(mem, "temp_size_in_bytes", 0) / 2**20,
              xla_argument_mib=getattr(mem, "argument_size_in_bytes", 0) / 2**20)
  return run, info


def build_sslx_bare(batch: int, width: int = 2):
  """WRN forward + backward + SGD on a fixed normalised float batch, jitted (the batch
  sharded over the XLA:CPU devices, parameters replicated, as the trainer does)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from sslx import dispatch, models, train

  model = models.create_model("wide_resnet", num_classes=10, depth=28, width=width)
  mesh = train.make_mesh()
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.standard_normal((batch, 32, 32, 3), np.float32),
                     train.batch_sharded(mesh))
  y = jax.device_put(rng.integers(0, 10, batch).astype(np.int32), train.batch_sharded(mesh))
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False),
                      out_shardings=train.replicated(mesh))(jax.random.key(0))
  params, batch_stats = variables["params"], variables["batch_stats"]
  tx = optax.sgd(0.03, momentum=0.9, nesterov=True)
  opt_state = jax.device_put(tx.init(params), train.replicated(mesh))

  def loss_fn(params, batch_stats, x, y):
    out, new = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                           mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(out["logits"], y).mean()
    return loss, new["batch_stats"]

  def step(params, batch_stats, opt_state, x, y):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  t0 = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1, 2),
                     out_shardings=train.replicated(mesh)).lower(
                         params, batch_stats, opt_state, x, y).compile()
  compile_s = time.perf_counter() - t0
  holder = [(params, batch_stats, opt_state)]

  def run(n: int) -> None:
    if n <= 0:
      return
    p, b, o = holder[0]
    pacer = dispatch.Pacer()  # a bounded queue: the multi-device CPU deadlock (sslx/dispatch.py)
    for _ in range(n):
      p, b, o, loss = compiled(p, b, o, x, y)
      pacer.admit(loss)
    pacer.drain()
    holder[0] = (p, b, o)

  return run, dict(compile_s=compile_s, images_per_step=batch)


def _conv_cases_sslx(batch: int):
  import jax
  import numpy as np
  rng = np.random.default_rng(0)
  cases = {}
  for h, cin, cout, stride in CONV_SHAPES:
    x = jax.numpy.asarray(rng.standard_normal((batch, h, h, cin), np.float32))
    k = jax.numpy.asarray(rng.standard_normal((3, 3, cin, cout), np.float32))
    conv = lambda x, k, s=stride: jax.lax.conv_general_dilated(
        x, k, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    g = jax.numpy.ones_like(conv(x, k))
    fns = {"fwd": jax.jit(conv),
           "dgrad": jax.jit(lambda x, k, g, c=conv: jax.vjp(c, x, k)[1](g)[0]),
           "wgrad": jax.jit(lambda x, k, g, c=conv: jax.vjp(c, x, k)[1](g)[1])}
    for name, fn in fns.items():
      args = (x, k) if name == "fwd" else (x, k, g)
      compiled = fn.lower(*args).compile()
      cases[f"{h}x{h} {cin}->{cout} s{stride} {name}"] = (
          lambda c=compiled, a=args: jax.block_until_ready(c(*a)))
  return cases


def _conv_cases_torch(batch: int, threads: int):
  import torch
  torch.set_num_threads(threads)
  cases = {}
  for h, cin, cout, stride in CONV_SHAPES:
    x = torch.randn(batch, cin, h, h)
    k = torch.randn(cout, cin, 3, 3)
    out = torch.nn.functional.conv2d(x, k, stride=stride, padding=1)
    g = torch.ones_like(out)
    grad = torch.ops.aten.convolution_backward

    def fwd(x=x, k=k, s=stride):
      with torch.no_grad():
        torch.nn.functional.conv2d(x, k, stride=s, padding=1)

    def dgrad(x=x, k=k, g=g, s=stride):
      grad(g, x, k, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False])

    def wgrad(x=x, k=k, g=g, s=stride):
      grad(g, x, k, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])

    for name, fn in (("fwd", fwd), ("dgrad", dgrad), ("wgrad", wgrad)):
      cases[f"{h}x{h} {cin}->{cout} s{stride} {name}"] = fn
  return cases


# ---------------------------------------------------------------------------
# PyTorch side
# ---------------------------------------------------------------------------


def build_torch_step(workload: str, batch: int, width: int, threads: int, workers: int):
  sys.path.insert(0, HERE)
  import torch_reference as ref
  images, labels = ref.synthetic_cifar()
  t0 = time.perf_counter()
  runner = ref.build(workload, images, labels, batch=batch, workers=workers, width=width,
                     threads=threads)
  runner.step()  # loader start-up and the first batch
  first_s = time.perf_counter() - t0

  def run(n: int) -> None:
    losses = [runner.step() for _ in range(n)]
    if any(loss != loss for loss in losses):
      raise FloatingPointError(f"torch {workload}: non-finite loss")

  return run, dict(compile_s=first_s, images_per_step=runner.images_per_step)


def build_torch_bare(batch: int, width: int, threads: int):
  sys.path.insert(0, HERE)
  import torch
  import torch.nn.functional as F
  import torch_reference as ref
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = ref.WideResNet(num_classes=10, depth=28, width=width).train()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True)
  x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

  def one():
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

  t0 = time.perf_counter()
  one()
  first_s = time.perf_counter() - t0
  return (lambda n: [one() for _ in range(n)]), dict(compile_s=first_s, images_per_step=batch)


# ---------------------------------------------------------------------------
# Child: one side of one workload, driven over stdin/stdout.
# ---------------------------------------------------------------------------


def _wait_workers_idle(timeout: float = 60.0) -> None:
  """Returns once the loader workers have used no CPU for 0.3 s (prefetch done)."""
  deadline = time.time() + timeout
  previous = sum(_cpu_seconds(p) for p in _child_pids(os.getpid()))
  while time.time() < deadline:
    time.sleep(0.3)
    now = sum(_cpu_seconds(p) for p in _child_pids(os.getpid()))
    if now == previous:
      return
    previous = now


def child_main(args) -> None:
  reply = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())
  if args.workload == "conv":
    cases = (_conv_cases_sslx(args.batch) if args.child == "sslx"
             else _conv_cases_torch(args.batch, args.threads))
    for fn in cases.values():
      fn()
    reply(dict(ready=True, compile_s=0.0, images_per_step=0))
    for line in sys.stdin:
      if line.strip() == "quit":
        break
      _, warmup, steps = line.split()
      out = {}
      for name, fn in cases.items():
        times = []
        for _ in range(int(steps)):
          c0 = time.process_time()
          fn()
          times.append(time.process_time() - c0)
        out[name] = statistics.median(times)
      reply(dict(cpu_s=out))
    return

  if args.child == "sslx":
    from sslx import devices  # before JAX's first operation, as sslx.main does
    batch = args.batch or DEFAULT_BATCH[args.workload]
    sizes = ([batch] if args.workload == "wrn_bare" else devices.config_batch_sizes(
        sslx_config(args.workload, batch, args.width, args.compute_dtype)))
    devices.use_cpu_devices(args.cpu_devices or devices.auto_cpu_devices(sizes))
    if args.conv_chunk >= 0:  # before any model is traced
      from sslx.models import conv as conv_lib
      conv_lib.CPU_BATCH_CHUNK = args.conv_chunk
    if args.workload == "wrn_bare":
      run, info = build_sslx_bare(args.batch, args.width)
    else:
      run, info = build_sslx_step(args.workload, args.batch, args.width, args.compute_dtype)
    run(1)
  else:
    if args.workload == "wrn_bare":
      run, info = build_torch_bare(args.batch, args.width, args.threads)
    else:
      run, info = build_torch_step(args.workload, args.batch, args.width, args.threads,
                                   args.torch_workers)
      _wait_workers_idle()
  reply(dict(ready=True, **info))
  for line in sys.stdin:
    if line.strip() == "quit":
      break
    _, warmup, steps = line.split()
    run(int(warmup))
    c0, t0 = _tree_cpu_seconds(), time.perf_counter()
    run(int(steps))
    wall, cpu = time.perf_counter() - t0, _tree_cpu_seconds() - c0
    if args.child == "torch":
      _wait_workers_idle()
    reply(dict(wall_s=wall / int(steps), cpu_s=cpu / int(steps)))
  workers = [_status_kb(p, "VmHWM") for p in _child_pids(os.getpid())]
  reply(dict(peak_rss_mib=_status_kb("self", "VmHWM") / 1024,
             worker_peak_rss_mib=max(workers, default=0) / 1024, num_workers=len(workers)))


# ---------------------------------------------------------------------------
# Parent: interleave the two sides, summarise.
# ---------------------------------------------------------------------------


class Side:

  def __init__(self, side: str, workload: str, args, extra_env: dict[str, str],
               conv_chunk: int | None = None, name: str = "", cpu_devices: int | None = None):
    conv_chunk = args.conv_chunk if conv_chunk is None else conv_chunk
    cpu_devices = args.cpu_devices if cpu_devices is None else cpu_devices
    cmd = [sys.executable, os.path.abspath(__file__), f"--child={side}",
           f"--workload={workload}", f"--batch={args.batch or DEFAULT_BATCH[workload]}",
           f"--width={args.width}", f"--threads={args.threads}",
           f"--torch_workers={args.torch_workers}", f"--compute_dtype={args.compute_dtype}",
           f"--conv_chunk={conv_chunk}", f"--cpu_devices={cpu_devices}"]
    env = dict(os.environ, **extra_env)
    self.name = name or side
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env, cwd=ROOT)
    self.info = self._read()
    self.rounds: list[dict] = []

  def _read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"{self.name} child exited with code {self.proc.wait()}")
    return json.loads(line)

  def round(self, warmup: int, steps: int) -> dict:
    self.proc.stdin.write(f"run {warmup} {steps}\n")
    self.proc.stdin.flush()
    result = self._read()
    self.rounds.append(result)
    return result

  def close(self) -> dict:
    self.proc.stdin.write("quit\n")
    self.proc.stdin.flush()
    out = self._read() if self.info.get("images_per_step") else {}
    self.proc.wait(timeout=120)
    return out


def _sslx_env(args) -> dict[str, str]:
  flags = os.environ.get("XLA_FLAGS", "")
  if args.threads == 1:
    flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  if args.xla_flags:
    flags += " " + args.xla_flags
  return {"XLA_FLAGS": flags.strip()} if flags.strip() else {}


def run_workload(workload: str, args) -> dict:
  started = time.time()
  sides = {}
  try:
    sides["sslx"] = Side("sslx", workload, args, _sslx_env(args))
    sides["torch"] = Side("torch", workload, args, {})
    if args.unchunked_too and workload in ("fixmatch", "simclr", "wrn_bare"):
      sides["sslx_unchunked"] = Side("sslx", workload, args, _sslx_env(args), conv_chunk=0,
                                     name="sslx_unchunked")
    if args.one_device_too and workload in ("fixmatch", "simclr", "wrn_bare"):
      sides["sslx_1dev"] = Side("sslx", workload, args, _sslx_env(args), cpu_devices=1,
                                name="sslx_1dev")
    return _interleave(workload, sides, args, started)
  finally:
    for side in sides.values():
      if side.proc.poll() is None:
        side.proc.kill()
        side.proc.wait()


def _interleave(workload: str, sides: dict, args, started: float) -> dict:
  print(f"[{workload}] ready in {time.time() - started:.0f}s: "
        + ", ".join(f"{k} {v.info}" for k, v in sides.items()), flush=True)
  order = list(sides)
  for r in range(args.rounds):
    for name in order:
      result = sides[name].round(args.warmup, args.steps)
      print(f"[{workload}] round {r} {name}: {json.dumps(result)}", flush=True)
    order.reverse()
  peaks = {name: side.close() for name, side in sides.items()}
  summary = dict(workload=workload, batch=args.batch or DEFAULT_BATCH[workload],
                 seconds=round(time.time() - started))
  if workload == "conv":
    for name, side in sides.items():
      keys = side.rounds[0]["cpu_s"].keys()
      summary[name] = {k: statistics.median(r["cpu_s"][k] for r in side.rounds) for k in keys}
    return summary
  for name, side in sides.items():
    wall = statistics.median(r["wall_s"] for r in side.rounds)
    cpu = statistics.median(r["cpu_s"] for r in side.rounds)
    summary[name] = dict(
        steps_per_s=1 / wall, images_per_s=side.info["images_per_step"] / wall,
        wall_s_per_step=wall, min_wall_s_per_step=min(r["wall_s"] for r in side.rounds),
        cpu_s_per_step=cpu, compile_or_first_step_s=side.info["compile_s"],
        images_per_step=side.info["images_per_step"], **peaks[name],
        **{k: v for k, v in side.info.items() if k.startswith("xla_")})
  for name in sides:
    if name != "torch":
      summary[name]["ratio_steps_per_s"] = (summary[name]["steps_per_s"]
                                            / summary["torch"]["steps_per_s"])
      summary[name]["ratio_cpu"] = (summary["torch"]["cpu_s_per_step"]
                                    / summary[name]["cpu_s_per_step"])
  return summary


def print_table(results: list[dict]) -> None:
  print("\n| workload | side | steps/s | images/s | wall s/step (min) | CPU-s/step "
        "| compile / 1st step s | peak RSS MiB |")
  print("|---|---|---|---|---|---|---|---|")
  for s in results:
    if s["workload"] == "conv":
      continue
    names = [n for n in ("sslx", "sslx_1dev", "sslx_unchunked", "torch") if n in s]
    for name in names:
      d = s[name]
      rss = f"{d.get('peak_rss_mib', 0):.0f}"
      if d.get("num_workers"):
        rss += f" + {d['num_workers']} x {d['worker_peak_rss_mib']:.0f}"
      print(f"| {s['workload']} (batch {s['batch']}) | {name} | {d['steps_per_s']:.3f} | "
            f"{d['images_per_s']:.0f} | {d['wall_s_per_step']:.2f} ({d['min_wall_s_per_step']:.2f})"
            f" | {d['cpu_s_per_step']:.2f} | {d['compile_or_first_step_s']:.1f} | {rss} |")
    for name in names[:-1]:
      print(f"| | **{name} / torch** | **{s[name]['ratio_steps_per_s']:.2f}x** | | | "
            f"**{s[name]['ratio_cpu']:.2f}x** (torch CPU / {name} CPU) | | |")
  for s in results:
    if s["workload"] != "conv":
      continue
    print(f"\n| conv (batch {s['batch']}), CPU ms | sslx (XLA:CPU) | torch | torch / sslx |")
    print("|---|---|---|---|")
    totals = {"sslx": 0.0, "torch": 0.0}
    for k in s["sslx"]:
      a, b = s["sslx"][k], s["torch"][k]
      totals["sslx"] += a
      totals["torch"] += b
      print(f"| {k} | {1e3 * a:.1f} | {1e3 * b:.1f} | {b / a:.2f} |")
    for kind in ("fwd", "dgrad", "wgrad"):
      a = sum(v for k, v in s["sslx"].items() if k.endswith(kind))
      b = sum(v for k, v in s["torch"].items() if k.endswith(kind))
      print(f"| all shapes, {kind} | {1e3 * a:.1f} | {1e3 * b:.1f} | {b / a:.2f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workloads", default="fixmatch,simclr",
                      help=f"comma-separated, from {WORKLOADS}")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=1, help="timed steps per side per round")
  parser.add_argument("--warmup", type=int, default=0,
                      help="untimed steps per side at the start of each round")
  parser.add_argument("--batch", type=int, default=0,
                      help="labeled batch (fixmatch, 64; unlabeled = 7x), images (simclr, "
                           "256), batch (wrn_bare, conv: 64)")
  parser.add_argument("--width", type=int, default=2, help="WRN-28-k width (fixmatch, wrn_bare)")
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="compute threads per side (XLA intra-op / torch.set_num_threads)")
  parser.add_argument("--torch_workers", type=int, default=0,
                      help="DataLoader workers per loader (0: cores / loaders)")
  parser.add_argument("--compute_dtype", default="float32", help="sslx model.dtype")
  parser.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS for the sslx side")
  parser.add_argument("--unchunked_too", action="store_true",
                      help="also run sslx with --conv_chunk=0 as a third side (before/after)")
  parser.add_argument("--conv_chunk", type=int, default=-1,
                      help="sslx.models.conv.CPU_BATCH_CHUNK for the sslx side (0: no batch "
                           "chunking, i.e. sslx before that change; -1: the library's default)")
  parser.add_argument("--cpu_devices", type=int, default=0,
                      help="XLA:CPU devices for the sslx side (0: as python -m sslx.main "
                      "picks, one per core that the batch divides across)")
  parser.add_argument("--one_device_too", action="store_true",
                      help="add a side: sslx on one XLA:CPU device (the step before "
                      "sslx.devices), for a before/after in the same run")
  parser.add_argument("--json", default="", help="write the results here")
  parser.add_argument("--child", choices=("sslx", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--workload", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    if args.torch_workers == 0:
      args.torch_workers = max(1, os.cpu_count() // (2 if args.workload == "fixmatch" else 1))
    child_main(args)
    return
  workloads = [w for w in args.workloads.split(",") if w]
  unknown = sorted(set(workloads) - set(WORKLOADS))
  if unknown:
    raise SystemExit(f"--workloads: unknown {unknown}; choose from {WORKLOADS}")
  with open("/proc/loadavg") as f:
    load_before = f.read().split()[:3]
  results = [run_workload(w, args) for w in workloads]
  with open("/proc/loadavg") as f:
    load_after = f.read().split()[:3]
  meta = dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
              threads=args.threads, conv_chunk=args.conv_chunk, cpu_devices=args.cpu_devices,
              rounds=args.rounds, steps=args.steps, warmup=args.warmup,
              xla_flags=_sslx_env(args).get("XLA_FLAGS", ""),
              loadavg_before=load_before, loadavg_after=load_after)
  print("\n" + json.dumps(dict(meta=meta, results=results), indent=1))
  print_table(results)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(meta=meta, results=results), f, indent=1)


if __name__ == "__main__":
  main()
