"""Where a FixMatch+graph step's time goes on 28x28 images (CPU): each piece jitted and
timed on its own, in one process, so the ratios hold on a loaded machine.

  python scripts/profile_step_28x28.py [--data=data/notmnist10k.npz] [--reps=3]

Prints: the weak and strong (RandAugment) augmentations, the graph term's in-batch
label propagation, and the forward + backward of ``cnn`` (chunked and unchunked CPU
convolution) and ``convnet`` at the supervised batch (64) and FixMatch batches
(224: mu = 3, 480: mu = 7). Timings are interleaved over ``--reps`` rounds; the median
is reported.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from sslx import methods, models
from sslx.config import load_config_file
from sslx.graph import batch_label_propagation
from sslx.models import conv as conv_lib


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="data/notmnist10k.npz")
  parser.add_argument("--reps", type=int, default=3)
  args = parser.parse_args()
  raw = np.load(args.data)["x_train"][:480, ..., None]
  images = jnp.asarray(raw)
  x = images.astype(jnp.float32)
  aug = methods.make_augmenters(load_config_file("experiments/notmnist.py").augment)
  key = jax.random.key(0)
  feats = jax.random.normal(key, (256, 128))
  labels = jnp.concatenate([jnp.arange(32) % 10, -jnp.ones(224, jnp.int32)])

  pieces = {
      "weak shift, 256 images": (jax.jit(aug["weak"]), (key, images[:256])),
      "RandAugment + cutout, 224 images": (jax.jit(aug["strong"]), (key, images[:224])),
      "graph term LP (k=10, 20 CG iters), 256 points": (jax.jit(
          lambda f: batch_label_propagation(f, labels, num_classes=10, k=10, alpha=0.99,
                                            gamma=3.0, num_iters=20).pseudo_labels),
                                                         (feats,)),
  }
  for name, kwargs, chunks in (("cnn", {}, (0, 64)),
                               ("convnet", {"widths": (32, 64, 128)}, (64,))):
    model = models.create_model(name, num_classes=10, **kwargs)
    variables = model.init(jax.random.key(0), x[:2], train=False)
    params, stats = variables["params"], variables["batch_stats"]

    def loss(p, im, model=model, stats=stats):  # train mode: batch statistics, as a step
      out, _ = model.apply({"params": p, "batch_stats": stats}, im, train=True,
                           mutable=["batch_stats"])
      return jnp.mean(out["logits"] ** 2)

    for chunk in chunks:
      conv_lib.CPU_BATCH_CHUNK = chunk  # read at trace time: compile now
      for batch in (64, 224, 480):
        fn = jax.jit(jax.grad(loss)).lower(params, x[:batch]).compile()
        pieces[f"{name} fwd+bwd, batch {batch}, conv chunk {chunk}"] = (fn, (params, x[:batch]))
  conv_lib.CPU_BATCH_CHUNK = 64

  times = {k: [] for k in pieces}
  for _ in range(args.reps):
    for k, (fn, fargs) in pieces.items():
      jax.block_until_ready(fn(*fargs))
      start = time.perf_counter()
      jax.block_until_ready(fn(*fargs))
      times[k].append(time.perf_counter() - start)
  for k, v in times.items():
    print(f"{k:52s} {1000 * sorted(v)[len(v) // 2]:9.1f} ms")


if __name__ == "__main__":
  main()
