"""The ViT encoder (sslx.models.vit): output shapes through create_model, the sin-cos
embedding against MAE's util/pos_embed.py rewritten in numpy, encoding of a visible subset
(MAE), pooling, parameters, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslx.models import create_model
from sslx.models.vit import ViT, sincos_pos_embed_2d

KEY = jax.random.key(0)


def _official_1d(embed_dim, pos):
  omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
  omega = 1.0 / 10000 ** omega
  out = np.einsum("m,d->md", pos.reshape(-1), omega)
  return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _official_2d(embed_dim, grid_size, cls_token):
  """util/pos_embed.get_2d_sincos_pos_embed: meshgrid(w, h), first half from grid[0]."""
  grid = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
  grid = np.stack(grid, axis=0).reshape(2, 1, grid_size, grid_size)
  emb = np.concatenate([_official_1d(embed_dim // 2, grid[0]),
                        _official_1d(embed_dim // 2, grid[1])], axis=1)
  if cls_token:
    emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
  return emb


def test_sincos_matches_mae_pos_embed():
  for dim, grid in ((16, 4), (64, 4), (32, 7)):
    np.testing.assert_allclose(sincos_pos_embed_2d(dim, grid, grid, cls_token=True),
                               _official_2d(dim, grid, True), rtol=1e-12, atol=1e-12)
  emb = sincos_pos_embed_2d(8, 2, 3)
  assert emb.shape == (6, 8)
  # Patch 4 is row 1, column 1; patch 2 is row 0, column 2: x in the first half.
  np.testing.assert_allclose(emb[2, :2], [np.sin(2.0), np.sin(2.0 / 100)], rtol=1e-12)
  np.testing.assert_allclose(emb[2, 4:6], [0.0, 0.0], atol=1e-12)


def _vit(**kw):
  kw = {"patch_size": 2, "embed_dim": 16, "depth": 2, "num_heads": 2, **kw}
  return ViT(**kw)


@pytest.fixture(scope="module")
def setup():
  vit = _vit()
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  return vit, vit.init(KEY, x, train=False), x


def test_create_model_outputs(setup):
  model = create_model("vit", num_classes=10, projection_dim=8, patch_size=2, embed_dim=16,
                       depth=1, num_heads=2, pool="gap")
  x = jnp.ones((4, 8, 8, 1))
  variables = model.init(KEY, x, train=False)
  out = model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
  assert {k: v.shape for k, v in out.items()} == {"logits": (4, 10), "features": (4, 16),
                                                   "projection": (4, 8)}
  assert "batch_stats" not in variables or "encoder" not in variables["batch_stats"]
  enc = variables["params"]["encoder"]
  assert enc["patch_embed"]["kernel"].shape == (2, 2, 1, 16)
  assert "pos_embed" not in enc  # sin-cos: fixed, not a parameter
  learned = create_model("vit", num_classes=2, patch_size=4, embed_dim=8, depth=1, num_heads=1,
                         pos_embedding="learned")
  v = learned.init(KEY, jnp.ones((1, 8, 8, 3)), train=False)
  assert v["params"]["encoder"]["pos_embed"]["pos_embed"].shape == (1, 1 + 4, 8)


def test_pooling(setup):
  vit, variables, x = setup
  tokens = vit.apply(variables, x, method=ViT.tokens)
  assert tokens.shape == (3, 17, 16)
  np.testing.assert_allclose(vit.apply(variables, x, train=False), tokens[:, 0], rtol=1e-6)
  gap = _vit(pool="gap")
  np.testing.assert_allclose(gap.apply(variables, x, train=False),
                             tokens[:, 1:].mean(1), rtol=1e-5, atol=1e-6)


def test_visible_subset_sees_only_its_patches(setup):
  vit, variables, x = setup
  keep = jnp.array([[0, 5, 9, 15], [3, 2, 1, 0], [12, 7, 4, 10]])
  latent = vit.apply(variables, x, ids_keep=keep, method=ViT.tokens)
  assert latent.shape == (3, 5, 16)
  # All patches kept in row-major order == no masking.
  every = jnp.broadcast_to(jnp.arange(16), (3, 16))
  np.testing.assert_allclose(vit.apply(variables, x, ids_keep=every, method=ViT.tokens),
                             vit.apply(variables, x, method=ViT.tokens), rtol=1e-6)
  # Pixels of removed patches do not matter; a kept patch's pixels do.
  visible = np.zeros((3, 16), bool)
  for i, row in enumerate(np.asarray(keep)):
    visible[i, row] = True
  pixel_visible = np.repeat(np.repeat(visible.reshape(3, 4, 4), 2, 1), 2, 2)[..., None]
  noise = jax.random.normal(jax.random.key(2), x.shape)
  changed_hidden = jnp.where(pixel_visible, x, x + noise)
  np.testing.assert_allclose(vit.apply(variables, changed_hidden, ids_keep=keep,
                                       method=ViT.tokens), latent, rtol=1e-6)
  changed_visible = jnp.where(pixel_visible, x + noise, x)
  assert not np.allclose(vit.apply(variables, changed_visible, ids_keep=keep,
                                   method=ViT.tokens), latent, atol=1e-3)
  # Positions travel with the patches: permuting ids_keep permutes the patch tokens.
  perm = np.array([2, 0, 3, 1])
  permuted = vit.apply(variables, x, ids_keep=keep[:, perm], method=ViT.tokens)
  np.testing.assert_allclose(permuted[:, 1:], latent[:, 1:][:, perm], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(permuted[:, 0], latent[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"embed_dim": 10, "num_heads": 3}, r"`embed_dim` \(10\) must be a multiple of `num_heads`"),
    ({"embed_dim": 6, "num_heads": 2}, r"must be a multiple of 4 with pos_embedding='sincos'"),
    ({"pool": "max"}, r"`pool` must be one of \('cls', 'gap'\), got 'max'"),
    ({"pos_embedding": "rope"}, r"`pos_embedding` must be one of"),
    ({"depth": 0}, r"`depth` must be an int >= 1, got 0"),
])
def test_bad_attributes_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _vit(**kwargs)


def test_image_not_divisible_and_bad_ids_keep(setup):
  vit, variables, x = setup
  with pytest.raises(ValueError, match=r"image sides 7x7 must be multiples of patch_size 2"):
    vit.init(KEY, jnp.ones((1, 7, 7, 1)), train=False)
  with pytest.raises(ValueError, match=r"`ids_keep` must be \[batch = 3, kept patches\]"):
    vit.apply(variables, x, ids_keep=jnp.zeros((2, 4), jnp.int32), method=ViT.tokens)
