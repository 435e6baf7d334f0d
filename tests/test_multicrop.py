"""Multi-crop views (sslx.augment.multicrop): sizes, scales, the built-in 'global_crop' and
'local_crop' augmentations, their config checks, and the digits CNN on local crops."""

import jax
import jax.numpy as jnp
import numpy as np

from helpers import load_experiment
from sslx import config as config_lib
from sslx import methods, models
from sslx.augment import multicrop


def test_crop_sizes_and_view_names():
  assert multicrop.crop_size(0, 224, local=True) == 96
  assert multicrop.crop_size(0, 32, local=False) == 32
  assert multicrop.crop_size(6, 8, local=True) == 6
  assert multicrop.crop_size(0, 4, local=True) == 2  # never below 2 pixels
  assert multicrop.view_names(2, 3) == (
      ("unlabeled_global_1", "unlabeled_global_2"),
      ("unlabeled_local_1", "unlabeled_local_2", "unlabeled_local_3"))


def test_builtin_global_and_local_crops():
  cfg = methods.default_augment_config()
  cfg.multicrop_global_size, cfg.multicrop_local_size = 8, 4
  cfg.flip, cfg.simclr_strength = False, 0.0
  aug = methods.make_augmenters(cfg)
  images = jax.random.randint(jax.random.key(0), (16, 8, 8, 1), 0, 256).astype(jnp.uint8)
  g = aug["global_crop"](jax.random.key(1), images)
  local = aug["local_crop"](jax.random.key(1), images)
  assert g.shape == (16, 8, 8, 1) and g.dtype == jnp.uint8
  assert local.shape == (16, 4, 4, 1)
  # The whole image at its own size, no flip, no colour: the identity.
  cfg.multicrop_global_scale = (1.0, 1.0)
  cfg.multicrop_local_scale = (0.05, 0.06)  # ~2x2 source pixels upsampled to 4x4
  aug = methods.make_augmenters(cfg)
  np.testing.assert_array_equal(aug["global_crop"](jax.random.key(2), images), images)
  local = np.asarray(aug["local_crop"](jax.random.key(2), images), np.float32)
  # A 2x2 region bilinearly upsampled: every local crop stays within its source's range,
  # and few distinct source pixels means few distinct values relative to a whole image.
  assert np.mean([len(np.unique(x)) for x in local]) < np.mean(
      [len(np.unique(x)) for x in np.asarray(images)])


def test_multicrop_config_errors():
  c = load_experiment("simclr_digits", "smoke")
  c.augment.multicrop_local_size = 1
  c.augment.multicrop_global_scale = (0.9, 0.2)
  errors = config_lib.config_errors(c)
  assert any("augment.multicrop_local_size must be an int >= 2" in e for e in errors), errors
  assert any("augment.multicrop_global_scale must be (low, high)" in e for e in errors), errors


def test_digits_cnn_pools_globally_over_any_crop_size():
  model_cfg = load_experiment("dino_digits").model.to_dict()
  model = models.create_model(model_cfg.pop("name"), num_classes=10, **model_cfg)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  feats = [model.apply(variables, jnp.ones((2, side, side, 1)), train=False)["features"]
           for side in (8, 6, 4)]
  assert all(f.shape == feats[0].shape for f in feats)
