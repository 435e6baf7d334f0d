"""Rotation prediction: the four rotations and their targets, the loss through the
method's own augmentation and head, and a training step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment, methods
from sslx.losses import cross_entropy
from sslx.methods.rotation import RotationHead, rotate4
from sslx.step import TrainState


def test_rotate4_gives_all_four_rotations_with_their_index():
  x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)
  images, labels = rotate4(jnp.asarray(x))
  assert images.shape == (8, 3, 3, 1)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3, 3])
  for k in range(4):
    for b in range(2):
      np.testing.assert_array_equal(images[2 * k + b, ..., 0], np.rot90(x[b, ..., 0], k))
  with pytest.raises(ValueError, match="square images"):
    rotate4(jnp.zeros((2, 3, 4, 1)))


class _Pixels:
  """The model contract with features = the flattened pixels (no parameters used)."""

  def apply(self, variables, x, train=False, rngs=None, mutable=False):
    f = x.reshape(x.shape[0], -1)
    return {"logits": f[:, :3], "features": f}


def test_loss_is_cross_entropy_of_the_head_on_the_rotated_features():
  method = methods.REGISTRY["rotation"]
  options = methods.method_option_configs()["rotation"]
  active = {"rotation": methods.Active(method, 1.0, options, method.views_for(options))}
  head = RotationHead(0)
  head_params = head.init(jax.random.key(0), jnp.zeros((1, 4)), train=False)["params"]
  fn = methods.make_loss_fn(active, model=_Pixels(), normalize=lambda x: x,
                            augmenters={"rotate4": lambda key, x: rotate4(x)},
                            extra_modules={"rotation": {"head": head}}, num_classes=3,
                            num_steps=10)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2, 2, 1)), jnp.float32)
  params = {"model": {}, "rotation": {"head": head_params}}
  state = TrainState(step=jnp.int32(0), params=params, model_state={}, opt_state=(),
                     ema_params={})
  loss, (_, _, metrics) = fn(params, state, {"unlabeled_images": x}, jax.random.key(1))
  images, labels = rotate4(x)
  logits = head.apply({"params": head_params}, images.reshape(20, -1), train=False)
  np.testing.assert_allclose(loss, cross_entropy(logits, labels), rtol=1e-6)
  np.testing.assert_allclose(metrics["rotation/accuracy"],
                             np.mean(np.argmax(logits, -1) == labels), rtol=1e-6)


def test_a_training_step_trains_the_head_and_reports_rotation_accuracy():
  exp = experiment.setup(load_experiment("rotation_digits", "smoke"), devices=jax.devices()[:1])
  before = jax.tree.map(np.asarray, exp.state.params["rotation"]["head"])
  state = exp.state
  for _ in range(3):  # the first step's learning rate is ~0 (warm-up)
    state, metrics = exp.train_step(state, exp.input.arrays)
  after = jax.tree.map(np.asarray, state.params["rotation"]["head"])
  # Every kernel moves (a bias in front of BatchNorm gets no gradient, as in any BN net).
  kernels = [(before[m]["kernel"], after[m]["kernel"]) for m in before if "kernel" in before[m]]
  assert len(kernels) == 2 and all(not np.allclose(a, b) for a, b in kernels)
  assert 0.0 <= float(metrics["rotation/accuracy"]) <= 1.0
  assert np.isfinite(float(metrics["loss/rotation"]))
