"""A small Vision Transformer (Dosovitskiy et al., ICLR 2021), as MAE's encoder.

.. code-block:: text

    images [B, H, W, C] --patch embedding (Conv p x p, stride p)--> [B, L, D]  (L = HW / p^2)
        + positional embedding (2-D sin-cos, fixed; or learned)
        [-> keep the patches ids_keep, MAE's visible subset]
        prepend the class token --> depth x pre-norm block --> LayerNorm --> tokens [B, 1 + L', D]
    features [B, D] = tokens[:, 0] ('cls')  or  mean of tokens[:, 1:] ('gap')

Follows MAE's encoder (``facebookresearch/mae``, ``models_mae.py`` on timm's ``Block``):
pre-norm blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` with LayerNorm eps 1e-6, a GELU
(exact) MLP of ``mlp_ratio * D`` hidden units, biases on q/k/v; the fixed 2-D sin-cos
embedding of ``util/pos_embed.py`` (the class token's position is zeros); Dense and the
flattened patch projection initialised Xavier-uniform, class token N(0, 0.02). The
positional embedding is added before masking, so a kept patch keeps its position. No
dropout or drop-path (MAE pre-trains without them).

``pool='gap'`` differs from MAE's fine-tuning ViT (``models_vit.py``: the mean of the
patch tokens before the final norm, then its own ``fc_norm``): here the mean is of the
final-normed patch tokens, so pre-training and either pooling share one set of weights.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sslx.models.heads import require_image_batch

Dtype = Any

POS_EMBEDDINGS = ("sincos", "learned")
POOLS = ("cls", "gap")


def sincos_pos_embed_1d(dim: int, positions) -> np.ndarray:
  """``[len(positions), dim]``: ``[sin(pos * w_k), cos(pos * w_k)]`` with
  ``w_k = 10000^(-k / (dim / 2))``, ``k < dim / 2`` (MAE's
  ``get_1d_sincos_pos_embed_from_grid``)."""
  if dim % 2:
    raise ValueError(f"`dim` must be even, got {dim}.")
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
  out = np.asarray(positions, np.float64).reshape(-1)[:, None] * omega[None]
  return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int, *, cls_token: bool = False
                        ) -> np.ndarray:
  """``[(1 +) grid_h * grid_w, dim]`` fixed 2-D embedding, patches in row-major order.

  As MAE's ``get_2d_sincos_pos_embed``: the first ``dim / 2`` columns embed the column
  (x) coordinate, the last ``dim / 2`` the row (y) coordinate (its ``meshgrid(w, h)``
  order); with ``cls_token`` a row of zeros comes first. ``dim`` must be a multiple of 4.
  """
  if dim % 4:
    raise ValueError(f"`dim` must be a multiple of 4 for the 2-D sin-cos embedding, got {dim}.")
  cols, rows = np.meshgrid(np.arange(grid_w), np.arange(grid_h))  # each [grid_h, grid_w]
  emb = np.concatenate([sincos_pos_embed_1d(dim // 2, cols), sincos_pos_embed_1d(dim // 2, rows)],
                       axis=1)
  if cls_token:
    emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
  return emb


class PositionalEmbedding(nn.Module):
  """``[1, 1 + grid_h * grid_w, dim]`` for a grid known only at the first call."""
  dim: int
  kind: str = "sincos"

  @nn.compact
  def __call__(self, grid_h: int, grid_w: int) -> jax.Array:
    if self.kind == "learned":
      return self.param("pos_embed", nn.initializers.normal(0.02),
                        (1, 1 + grid_h * grid_w, self.dim), jnp.float32)
    return jnp.asarray(sincos_pos_embed_2d(self.dim, grid_h, grid_w, cls_token=True),
                       jnp.float32)[None]


class Block(nn.Module):
  """Pre-norm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""
  num_heads: int
  mlp_ratio: float = 4.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dim = x.shape[-1]
    dense_init = nn.initializers.xavier_uniform()
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm1")(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, kernel_init=dense_init,
        deterministic=True, name="attn")(y, y)
    x = x + y
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm2")(x)
    y = nn.Dense(int(dim * self.mlp_ratio), dtype=self.dtype, kernel_init=dense_init,
                 name="fc1")(y)
    y = nn.Dense(dim, dtype=self.dtype, kernel_init=dense_init,
                 name="fc2")(nn.gelu(y, approximate=False))
    return x + y


class ViT(nn.Module):
  """Vision Transformer encoder (module docstring); ``__call__`` returns ``[B, embed_dim]``.

  Attributes:
    patch_size: side ``p`` of the square patches; the image sides must be multiples.
    embed_dim: token width ``D`` (the feature dimension); a multiple of ``num_heads`` (and
      of 4 with the sin-cos embedding).
    depth: number of transformer blocks.
    num_heads: attention heads.
    mlp_ratio: MLP hidden width / ``D``.
    pos_embedding: ``'sincos'`` (fixed, MAE) or ``'learned'``.
    pool: ``'cls'`` (the class token, MAE's linear probe) or ``'gap'`` (mean patch token).
    dtype: compute dtype; parameters are float32.

  Example:
    >>> vit = ViT(patch_size=2, embed_dim=16, depth=1, num_heads=2)
    >>> x = jnp.ones((3, 8, 8, 1))
    >>> variables = vit.init(jax.random.key(0), x, train=False)
    >>> vit.apply(variables, x, train=False).shape
    (3, 16)
    >>> keep = jnp.array([[0, 5, 9, 15]] * 3)          # 4 of the 16 patches
    >>> vit.apply(variables, x, ids_keep=keep, method=ViT.tokens).shape
    (3, 5, 16)
  """

  patch_size: int = 4
  embed_dim: int = 192
  depth: int = 12
  num_heads: int = 3
  mlp_ratio: float = 4.0
  pos_embedding: str = "sincos"
  pool: str = "cls"
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    for name in ("patch_size", "embed_dim", "depth", "num_heads"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ViT: `{name}` must be an int >= 1, got {value!r}.")
    if self.embed_dim % self.num_heads:
      raise ValueError(f"ViT: `embed_dim` ({self.embed_dim}) must be a multiple of "
                       f"`num_heads` ({self.num_heads}).")
    if self.pos_embedding not in POS_EMBEDDINGS:
      raise ValueError(f"ViT: `pos_embedding` must be one of {POS_EMBEDDINGS}, got "
                       f"{self.pos_embedding!r}.")
    if self.pos_embedding == "sincos" and self.embed_dim % 4:
      raise ValueError(f"ViT: `embed_dim` ({self.embed_dim}) must be a multiple of 4 with "
                       f"pos_embedding='sincos'.")
    if self.pool not in POOLS:
      raise ValueError(f"ViT: `pool` must be one of {POOLS}, got {self.pool!r}.")
    if not self.mlp_ratio > 0:
      raise ValueError(f"ViT: `mlp_ratio` must be > 0, got {self.mlp_ratio!r}.")
    super().__post_init__()

  def setup(self):
    p = self.patch_size
    self.patch_embed = nn.Conv(
        self.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=-1))
    self.cls_token = self.param("cls_token", nn.initializers.normal(0.02),
                                (1, 1, self.embed_dim), jnp.float32)
    self.pos_embed = PositionalEmbedding(self.embed_dim, self.pos_embedding)
    self.blocks = [Block(self.num_heads, self.mlp_ratio, self.dtype) for _ in range(self.depth)]
    self.norm = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)

  def grid(self, image_shape) -> tuple[int, int]:
    """``(rows, cols)`` of patches of an ``[H, W, C]`` (or ``[B, H, W, C]``) image shape."""
    h, w = image_shape[-3], image_shape[-2]
    if h % self.patch_size or w % self.patch_size:
      raise ValueError(f"ViT: image sides {h}x{w} must be multiples of patch_size "
                       f"{self.patch_size}.")
    return h // self.patch_size, w // self.patch_size

  def tokens(self, images: jax.Array, *, ids_keep: jax.Array | None = None) -> jax.Array:
    """The final-normed token sequence ``[B, 1 + L', D]`` (class token first).

    ``ids_keep`` ``[B, L']`` (int) keeps those patches per example, in that order (MAE's
    visible patches); None keeps all ``L`` in row-major order.
    """
    require_image_batch(images, model="ViT")
    gh, gw = self.grid(images.shape)
    pos = self.pos_embed(gh, gw)  # [1, 1 + L, D]
    x = self.patch_embed(images.astype(self.dtype))
    x = x.reshape(x.shape[0], gh * gw, self.embed_dim) + pos[:, 1:].astype(self.dtype)
    if ids_keep is not None:
      if ids_keep.ndim != 2 or ids_keep.shape[0] != x.shape[0]:
        raise ValueError(f"ViT: `ids_keep` must be [batch = {x.shape[0]}, kept patches], got "
                         f"shape {tuple(ids_keep.shape)}.")
      x = jnp.take_along_axis(x, ids_keep[:, :, None], axis=1)
    cls = (self.cls_token + pos[:, :1]).astype(self.dtype)
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.embed_dim)), x], axis=1)
    for block in self.blocks:
      x = block(x)
    return self.norm(x)

  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    del train  # no BatchNorm or dropout
    x = self.tokens(images)
    return x[:, 0] if self.pool == "cls" else jnp.mean(x[:, 1:], axis=1)
