"""MAE as a method: the decoder's un-shuffling against models_mae.forward_decoder in numpy,
the encoder running on the visible patches only (attention shapes of the traced step), a
smoke step through the trainer that trains encoder and decoder, and errors (patchify,
masking and the loss are in tests/losses/test_masked_image.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import random_masking
from sslx.methods import mae
from sslx.models.vit import sincos_pos_embed_2d


def test_decoder_unshuffles_like_forward_decoder():
  """depth 0: decoder_embed, mask tokens appended, gather by ids_restore, cls first, + sin-cos
  positions, LayerNorm(eps 1e-6), decoder_pred, cls dropped; rewritten in numpy."""
  b, grid, dim, enc = 3, (2, 3), 8, 6
  l = grid[0] * grid[1]
  ids_keep, _, ids_restore = random_masking(jax.random.key(0), b, l, mask_ratio=0.5)
  k = ids_keep.shape[1]
  latent = np.asarray(jax.random.normal(jax.random.key(1), (b, 1 + k, enc)))
  decoder = mae.Decoder(grid, patch_dim=5, dim=dim, depth=0, num_heads=2)
  params = decoder.init(jax.random.key(2), jnp.zeros((1, 1 + k, enc)))["params"]
  params = jax.tree.map(  # non-trivial LayerNorm affine
      lambda x: x + 0.1 * np.asarray(jax.random.normal(jax.random.key(3), x.shape)), params)
  out = decoder.apply({"params": params}, (jnp.asarray(latent), ids_restore))
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  x = latent @ p["decoder_embed"]["kernel"] + p["decoder_embed"]["bias"]
  tokens = np.concatenate([x[:, 1:], np.broadcast_to(p["mask_token"], (b, l - k, dim))], 1)
  tokens = np.take_along_axis(tokens, np.asarray(ids_restore)[:, :, None], axis=1)
  x = np.concatenate([x[:, :1], tokens], 1) + sincos_pos_embed_2d(dim, *grid, cls_token=True)
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  x = (x - mu) / np.sqrt(var + 1e-6) * p["decoder_norm"]["scale"] + p["decoder_norm"]["bias"]
  expected = (x @ p["decoder_pred"]["kernel"] + p["decoder_pred"]["bias"])[:, 1:]
  assert out.shape == (b, l, 5)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  # Kept patch j of example i sits at its own position ids_keep[i, j], masked ones share
  # the mask token: their outputs differ only through the positional embedding.
  moved = decoder.apply({"params": params}, (jnp.asarray(latent) * 2.0, ids_restore))
  changed = ~np.all(np.isclose(np.asarray(moved), np.asarray(out)), axis=-1)
  kept = np.zeros((b, l), bool)
  for i in range(b):
    kept[i, np.asarray(ids_keep[i])] = True
  np.testing.assert_array_equal(changed, kept)


def _shapes(jaxpr, out):
  for eqn in jaxpr.eqns:
    out.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (list, tuple)) else [param]):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          _shapes(inner, out)
  return out


@pytest.fixture(scope="module")
def smoke():
  config = load_experiment("mae_digits", "smoke")
  config.mae.decoder_num_heads = 4  # tells decoder attention (4 heads) from encoder (2)
  return config, experiment.setup(config, devices=jax.devices()[:1])


def test_encoder_attends_over_visible_patches_only(smoke):
  config, exp = smoke
  n = config.batch_size * config.unlabeled_ratio  # 16 unlabeled images
  shapes = _shapes(jax.make_jaxpr(exp.train_step)(exp.state, exp.input.arrays).jaxpr, set())
  # 8x8 digits in 2x2 patches: 16 patches, 4 visible, + the class token.
  assert (n, 2, 5, 5) in shapes  # encoder: [batch, heads, 1 + 4, 1 + 4]
  assert (n, 4, 17, 17) in shapes  # decoder: every patch
  assert (n, 2, 17, 17) not in shapes  # the encoder never sees all patches of the batch
  assert (config.batch_size, 2, 17, 17) in shapes  # the online probe's whole images


def test_smoke_steps_train_encoder_and_decoder(smoke):
  config, exp = smoke
  state = exp.state
  host = lambda t: jax.tree.map(np.asarray, t)
  before = host(state.params)
  assert before["mae"]["decoder"]["mask_token"].shape == (1, 1, config.mae.decoder_dim)
  for _ in range(2):  # the first step's learning rate is 0 (warm-up)
    state, metrics = exp.train_step(state, exp.input.arrays)
  after = host(state.params)
  # The probe is a stop-gradient classifier and tokens are not decayed: only MAE moves them.
  assert not np.allclose(after["model"]["encoder"]["cls_token"],
                         before["model"]["encoder"]["cls_token"])
  assert not np.allclose(after["mae"]["decoder"]["mask_token"],
                         before["mae"]["decoder"]["mask_token"])
  loss = float(metrics["loss/mae"])
  assert np.isfinite(loss) and loss > 0
  assert np.isfinite(float(metrics["mae/visible_loss"]))
  assert 0 < float(metrics["mae/target_std"]) < 1.5


def test_patch_size_and_model_mismatches_name_the_fields():
  config = load_experiment("mae_digits", "smoke")
  config.mae.patch_size = 4
  exp = experiment.setup(config, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=r"mae.patch_size \(4\) must equal model.patch_size \(2\)"):
    exp.train_step(exp.state, exp.input.arrays)
  config = load_experiment("mae_digits", "smoke")
  config.model = dict(name="cnn", width=8, stop_gradient_classifier=True)
  exp = experiment.setup(config, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=r"mae needs model.name='vit'.*SmallCNN"):
    exp.train_step(exp.state, exp.input.arrays)


def test_option_errors_name_the_field():
  options = mae.OPTIONS.copy_and_resolve_references()
  assert mae.option_errors(options) == []
  options.mask_ratio, options.decoder_depth, options.crop_scale = 1.0, 0, (0.5, 0.2)
  errors = mae.option_errors(options)
  assert any("mae.mask_ratio" in e and "1.0" in e for e in errors)
  assert any("mae.decoder_depth" in e and "0" in e for e in errors)
  assert any("mae.crop_scale" in e for e in errors)
  options = mae.OPTIONS.copy_and_resolve_references()
  options.decoder_dim, options.decoder_num_heads = 24, 16
  assert any("mae.decoder_dim (24)" in e for e in mae.option_errors(options))
