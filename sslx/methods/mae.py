"""MAE (He et al., CVPR 2022): reconstruct the pixels of randomly masked patches.

Each unlabeled image is cropped (``RandomResizedCrop`` + flip, no colour augmentation),
cut into ``L`` patches and, per example, a random ``mask_ratio`` of them (0.75) is removed.
The ViT encoder (``model.name='vit'``, :class:`sslx.models.vit.ViT`) sees only the
visible patches (plus its class token); a light transformer decoder (this method's own
module :class:`Decoder`, trained with the model) gets the encoded visible tokens and a
shared learned mask token at every removed position, adds its own positional embedding,
and predicts every patch's pixels. The loss is the MSE on removed patches only, against
per-patch normalised pixels (:func:`sslx.losses.mae_loss`)::

  ids_keep, mask, ids_restore = random_masking(noise ~ U[0,1)^L, keep int(L (1 - r)))
  L = sum_i m_i * mean_j (dec(enc(x[ids_keep]), ids_restore)_ij - t_ij)^2 / sum_i m_i
  t_i = (patch_i - mean(patch_i)) / sqrt(var_unbiased(patch_i) + 1e-6)

Follows the official code (``facebookresearch/mae``: ``models_mae.py``,
``main_pretrain.py``): masking by ``argsort`` of uniform noise (small noise kept), the
encoder's positional embedding added before masking; the decoder is ``Dense(encoder dim
-> decoder_dim)``, mask tokens appended and un-shuffled with ``ids_restore``, the class
token put back first, fixed 2-D sin-cos positions, ``decoder_depth`` pre-norm blocks,
LayerNorm, ``Dense(p * p * C)``, class token dropped; ``norm_pix_loss`` with PyTorch's
unbiased variance; the defaults are ``mae_vit_base_patch16``'s decoder (512-d, 8 blocks,
16 heads) and ``--mask_ratio 0.75``, crops of scale (0.2, 1) and horizontal flips. The
paper's Sec. 3 describes the loss as the per-pixel MSE on masked patches; the code's
``norm_pix_loss`` variant (Table 1d, the released models) is the default here.

Where sslx differs: the crop is sslx's bilinear ``simclr_view`` with colour jitter and
grayscale off (the official transform is bicubic); the encoder runs inside the
trainer's step on ``config.model`` (so ``patch_size`` here must equal
``model.patch_size``, checked when the step is traced).

API note: sslx runs every *view* through the whole model in one shared pass, and
``ctx.forward`` takes whole images. MAE's encoder must run on the visible patches only,
so this method declares no view: it reads ``batch['unlabeled_images']``, crops and
normalises them itself, and applies the ViT's ``tokens(images, ids_keep=...)`` with the
online encoder parameters, through the context's ``ctx.model``, ``ctx.params('online')``
and ``ctx.normalize`` (the objects ``ctx.forward`` uses; gradients flow as through
``ctx.forward(params='online')``). The decoder is a regular extra module (``ctx.extra``).

Diagnostics: ``visible_loss`` (the same per-patch error on the visible patches, which
the loss ignores) and ``target_std`` (the spread of the normalised targets; 0 for
uniform patches, as digits' background).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sslx.augment.simclr import simclr_view
from sslx.losses.masked_image import mae_loss, patchify, random_masking
from sslx.methods.base import Context, Extra, Method, register
from sslx.methods.checks import area_range, boolean, check, integer, number
from sslx.models.vit import Block, ViT, sincos_pos_embed_2d

OPTIONS = ml_collections.ConfigDict(dict(
    mask_ratio=0.75,  # --mask_ratio
    norm_pix_loss=True,  # --norm_pix_loss (the released models)
    patch_size=16,  # must equal model.patch_size (mae_vit_*_patch16)
    decoder_dim=512,  # decoder_embed_dim
    decoder_depth=8,
    decoder_num_heads=16,
    mlp_ratio=4.0,
    crop_scale=(0.2, 1.0),  # RandomResizedCrop(scale=(0.2, 1.0))
    flip=True,  # RandomHorizontalFlip
))


class Decoder(nn.Module):
  """MAE's decoder: ``(encoded visible tokens [B, 1 + K, D], ids_restore [B, L])`` ->
  pixel predictions ``[B, L, patch_dim]``.

  Called with the tokens alone (as at initialisation), ``ids_restore`` is the identity:
  the ``K`` tokens are patches ``0 .. K-1`` and the rest are masked.
  """
  grid: tuple[int, int]  # patches (rows, cols)
  patch_dim: int  # p * p * C
  dim: int = 512
  depth: int = 8
  num_heads: int = 16
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(self, inputs, *, train: bool = True):
    del train  # no BatchNorm or dropout
    latent, ids_restore = inputs if isinstance(inputs, (tuple, list)) else (inputs, None)
    num_patches = self.grid[0] * self.grid[1]
    b = latent.shape[0]
    if ids_restore is None:
      ids_restore = jnp.broadcast_to(jnp.arange(num_patches), (b, num_patches))
    dense_init = nn.initializers.xavier_uniform()
    x = nn.Dense(self.dim, kernel_init=dense_init, name="decoder_embed")(latent)
    mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.dim))
    masked = jnp.broadcast_to(mask_token, (b, num_patches + 1 - x.shape[1], self.dim))
    patches = jnp.concatenate([x[:, 1:], masked], axis=1)  # shuffled order: kept, removed
    patches = jnp.take_along_axis(patches, ids_restore[:, :, None], axis=1)  # patch order
    x = jnp.concatenate([x[:, :1], patches], axis=1)
    x = x + jnp.asarray(sincos_pos_embed_2d(self.dim, *self.grid, cls_token=True),
                        jnp.float32)[None]
    for i in range(self.depth):
      x = Block(self.num_heads, self.mlp_ratio, name=f"decoder_blocks_{i}")(x)
    x = nn.LayerNorm(epsilon=1e-6, name="decoder_norm")(x)
    x = nn.Dense(self.patch_dim, kernel_init=dense_init, name="decoder_pred")(x)
    return x[:, 1:]


def _geometry(options, image_shape):
  """``(grid, patch_dim, len_keep)`` of `image_shape` ``[H, W, C]`` cut into patches."""
  h, w, c = image_shape
  p = options.patch_size
  if h % p or w % p:
    raise ValueError(f"mae.patch_size={p} must divide the image sides {h}x{w}")
  grid = (h // p, w // p)
  return grid, p * p * c, int(grid[0] * grid[1] * (1 - options.mask_ratio))


def _extras(options, info):
  grid, patch_dim, len_keep = _geometry(options, info.image_shape)
  decoder = Decoder(grid, patch_dim, options.decoder_dim, options.decoder_depth,
                    options.decoder_num_heads, options.mlp_ratio)
  return {"decoder": Extra(decoder, input=(1 + len_keep, info.feature_dim))}


def _online_encoder(ctx: Context):
  """The trainer's ViT, its online (differentiated) parameters and the normalisation
  (module docstring, API note: ``ctx.forward`` cannot pass ``ids_keep``)."""
  encoder = getattr(ctx.model, "encoder", None)
  if not isinstance(encoder, ViT):
    raise ValueError(f"mae needs model.name='vit' (a ViT encoder), got "
                     f"{type(encoder).__name__}")
  if encoder.patch_size != ctx.options.patch_size:
    raise ValueError(f"mae.patch_size ({ctx.options.patch_size}) must equal model.patch_size "
                     f"({encoder.patch_size})")
  return encoder, ctx.params("online")["model"]["encoder"], ctx.normalize


def mae_method_loss(ctx: Context):
  o = ctx.options
  encoder, encoder_params, normalize = _online_encoder(ctx)
  raw = ctx.batch["unlabeled_images"]
  crops = simclr_view(ctx.rng("crop"), raw, strength=0.0, jitter_prob=0.0, grayscale_prob=0.0,
                      blur=False, flip=bool(o.flip), crop_scale=tuple(o.crop_scale))
  images = normalize(crops)
  target = patchify(images, o.patch_size)
  b, num_patches = target.shape[:2]
  ids_keep, mask, ids_restore = random_masking(ctx.rng("mask"), b, num_patches,
                                               mask_ratio=o.mask_ratio)
  latent = encoder.apply({"params": encoder_params}, images, ids_keep=ids_keep,
                         method=ViT.tokens)
  pred = ctx.extra("decoder", (latent.astype(jnp.float32), ids_restore))
  loss = mae_loss(pred, target, mask, norm_pix_loss=o.norm_pix_loss)
  visible = jax.lax.stop_gradient(mae_loss(pred, target, 1.0 - mask,
                                           norm_pix_loss=o.norm_pix_loss))
  t = target
  if o.norm_pix_loss:
    t = (t - t.mean(-1, keepdims=True)) / jnp.sqrt(t.var(-1, keepdims=True, ddof=1) + 1e-6)
  return loss, {"visible_loss": visible, "target_std": jnp.std(t)}


def option_errors(options) -> list[str]:
  errors = check("mae", options, {
      "mask_ratio": number(0, 1, high_open=True),
      "norm_pix_loss": boolean(),
      "flip": boolean(),
      "patch_size": integer(1),
      "decoder_dim": integer(1),
      "decoder_depth": integer(1),
      "decoder_num_heads": integer(1),
      "mlp_ratio": number(0, low_open=True),
      "crop_scale": area_range(),
  })
  d, h = options.decoder_dim, options.decoder_num_heads
  if not errors and (d % h or d % 4):
    errors.append(f"mae.decoder_dim ({d}) must be a multiple of mae.decoder_num_heads ({h}) and "
                  f"of 4 (its 2-D sin-cos embedding)")
  return errors


METHOD = register(Method(
    name="mae", loss=mae_method_loss, options=OPTIONS, option_errors=option_errors,
    views={}, extras=_extras))
