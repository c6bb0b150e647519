# Copyright 2026 The richhf_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Vision Transformer image encoder with big_vision's parameter layout.

The module and parameter names are those of big_vision `models/vit.py` (the
linen layout it loads after `fix_old_checkpoints`), so a big_vision `.npz`
checkpoint maps onto the `img` subtree of RAHF by name:

  embedding/{kernel [p, p, 3, width], bias [width]}
  cls [1, 1, width]                           (only with class_token)
  pos_embedding [1, h * w, width]             (only with posemb='learn')
  Transformer/encoderblock_{i}/LayerNorm_0/{scale, bias}
  Transformer/encoderblock_{i}/MultiHeadDotProductAttention_0/
      {query, key, value}/{kernel [width, heads, head_dim], bias [heads, hd]}
      out/{kernel [heads, head_dim, width], bias [width]}
  Transformer/encoderblock_{i}/LayerNorm_1/{scale, bias}
  Transformer/encoderblock_{i}/MlpBlock_0/Dense_{0,1}/{kernel, bias}
  Transformer/encoder_norm/{scale, bias}

With `scan=True` the blocks are stacked under `Transformer/encoderblock` with a
leading 'layers' axis (big_vision's scan layout).

Pre-2022 checkpoints (the AugReg `.npz` files) number the block's modules with
one global counter (`MultiHeadDotProductAttention_1`, `LayerNorm_2`,
`MlpBlock_3`); `flax.training.checkpoints.convert_pre_linen` renames them to
the layout above, as big_vision's own loader does.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax.models import config as config_lib

Array = jax.Array

_BIAS_INIT = nn.initializers.normal(stddev=1e-6)


def _part(init, names):
  return nn.with_logical_partitioning(init, names)


def _layer_norm(cfg: config_lib.ViTConfig, name: str | None = None):
  # Layer norm statistics in float32 (dtype policy); cast back by the caller.
  return nn.LayerNorm(
      epsilon=cfg.layernorm_epsilon, dtype=jnp.float32,
      scale_init=_part(nn.initializers.ones_init(), ('embed',)),
      bias_init=_part(nn.initializers.zeros_init(), ('embed',)),
      name=name)


def posemb_sincos_2d(h: int, w: int, width: int,
                     temperature: float = 10_000.) -> Array:
  """Fixed 2-D sine-cosine position embedding (MoCo v3), [1, h * w, width].

  Args:
    h: grid rows.
    w: grid columns.
    width: embedding width, a multiple of 4.
    temperature: the frequency base.

  Returns:
    float32 array [1, h * w, width]: sin(x), cos(x), sin(y), cos(y) blocks.

  Raises:
    ValueError: if width is not a multiple of 4.
  """
  if width % 4:
    raise ValueError(f'sincos2d position embedding needs width % 4 == 0, '
                     f'got width={width}')
  y, x = np.mgrid[:h, :w]
  quarter = width // 4
  omega = np.arange(quarter) / max(quarter - 1, 1)
  omega = 1. / (temperature**omega)
  y = np.einsum('m,d->md', y.reshape(-1), omega)
  x = np.einsum('m,d->md', x.reshape(-1), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(pe, jnp.float32)[None]


def resample_posemb(posemb: Any, new_grid: tuple[int, int]) -> np.ndarray:
  """Bilinearly resizes a learned position embedding to a new patch grid.

  Used when loading a checkpoint trained at another resolution (e.g. 224 px
  weights for a 384 px model: 14x14 -> 24x24). A leading class-token entry
  (old big_vision layouts with N = h * w + 1) is kept as is.

  Args:
    posemb: array [1, N, width] with N = h * w (square grid) or h * w + 1.
    new_grid: target (rows, columns).

  Returns:
    float32 numpy array [1, new_h * new_w (+1), width].

  Raises:
    ValueError: if posemb is not [1, N, width] with a square grid part.
  """
  posemb = np.asarray(posemb, np.float32)
  if posemb.ndim != 3 or posemb.shape[0] != 1:
    raise ValueError(
        f'posemb must have shape [1, N, width], got {posemb.shape}')
  n = posemb.shape[1]
  extra = 0 if int(np.sqrt(n))**2 == n else 1
  side = int(np.sqrt(n - extra))
  if side * side != n - extra:
    raise ValueError(
        f'posemb has {n} positions; expected a square grid (optionally + 1 '
        'class token)')
  new_h, new_w = new_grid
  head, grid = posemb[:, :extra], posemb[0, extra:].reshape(side, side, -1)
  if (side, side) != (new_h, new_w):
    # align_corners=False bilinear resize (half-pixel centres).
    grid = np.asarray(jax.image.resize(
        grid, (new_h, new_w, grid.shape[-1]), method='bilinear',
        antialias=False))
  grid = grid.reshape(1, new_h * new_w, -1)
  return np.concatenate([head, grid], axis=1)


class MlpBlock(nn.Module):
  """Transformer feed-forward block: Dense -> GELU -> Dropout -> Dense.

  Attributes:
    config: the ViT configuration.
  """
  config: config_lib.ViTConfig

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    dense = lambda feats, names: nn.Dense(  # pylint: disable=g-long-lambda
        feats, dtype=cfg.jnp_dtype, param_dtype=jnp.float32,
        kernel_init=_part(nn.initializers.xavier_uniform(), names),
        bias_init=_part(_BIAS_INIT, names[1:]))
    d = x.shape[-1]
    x = dense(cfg.mlp_dim, ('embed', 'mlp'))(x)  # [B, N, mlp]
    x = nn.gelu(x, approximate=cfg.gelu_approximate)
    x = nn.Dropout(rate=cfg.dropout)(x, deterministic)
    return dense(d, ('mlp', 'embed'))(x)  # [B, N, width]


def _flat_fan_init(init: nn.initializers.Initializer, fan_in_dims: int
                   ) -> nn.initializers.Initializer:
  """Initialises an N-d kernel as its 2-D (fan_in, fan_out) flattening.

  Keeps the fan-in/fan-out of the equivalent dense layer (what flax's
  DenseGeneral does), while the parameter itself stays N-d so its logical
  axis constraint sees the real rank.
  """
  def wrapped(key, shape, dtype=jnp.float32):
    flat = (int(np.prod(shape[:fan_in_dims])),
            int(np.prod(shape[fan_in_dims:])))
    return init(key, flat, dtype).reshape(shape)
  return wrapped


class _Projection(nn.Module):
  """Einsum projection with an N-d kernel and bias (flax MHA's layout)."""
  kernel_shape: tuple[int, ...]
  kernel_axes: tuple[str, ...]
  bias_shape: tuple[int, ...]
  bias_axes: tuple[str, ...]
  equation: str
  fan_in_dims: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param(
        'kernel', _part(_flat_fan_init(nn.initializers.xavier_uniform(),
                                       self.fan_in_dims), self.kernel_axes),
        self.kernel_shape, jnp.float32)
    bias = self.param('bias', _part(nn.initializers.zeros_init(),
                                    self.bias_axes),
                      self.bias_shape, jnp.float32)
    y = jnp.einsum(self.equation, x.astype(self.dtype),
                   kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention with big_vision's (flax MHA's) parameter names and shapes.

  `query`/`key`/`value` kernels [width, heads, head_dim] with biases
  [heads, head_dim]; `out` kernel [heads, head_dim, width] with bias [width].
  Logits scaled by head_dim**-0.5; softmax in float32.
  """
  config: config_lib.ViTConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    dtype = cfg.jnp_dtype
    h, d = cfg.num_heads, cfg.width // cfg.num_heads

    def proj(name):
      return _Projection((cfg.width, h, d), ('embed', 'heads', 'kv'), (h, d),
                         ('heads', 'kv'), '...w,whd->...hd', 1, dtype,
                         name=name)

    q, k, v = proj('query')(x), proj('key')(x), proj('value')(x)  # [B,N,H,D]
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32)
    weights = jax.nn.softmax(logits * (d ** -0.5), axis=-1).astype(dtype)
    y = jnp.einsum('bhqk,bkhd->bqhd', weights, v)  # [B, N, H, D]
    return _Projection((h, d, cfg.width), ('heads', 'kv', 'embed'),
                       (cfg.width,), ('embed',), '...hd,hdw->...w', 2, dtype,
                       name='out')(y)


class Encoder1DBlock(nn.Module):
  """Pre-LN transformer block (self-attention + MLP), big_vision names.

  Attributes:
    config: the ViT configuration.
  """
  config: config_lib.ViTConfig

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True
               ) -> tuple[Array, None]:
    cfg = self.config
    dtype = cfg.jnp_dtype
    # Every activation's layout is pinned. On a mesh with data, fsdp and
    # model axes all > 1, XLA's propagated layouts (jax 0.10.2, Shardy and
    # GSPMD alike) gave the attention output with its batch shards permuted
    # and wrong gradients upstream of it (tests/sharding_test.py).
    c = lambda t: nn.with_logical_constraint(t, ('batch', 'length', 'embed'))
    y = c(_layer_norm(cfg)(x).astype(dtype))
    y = c(MultiHeadDotProductAttention(cfg)(y))
    y = nn.Dropout(rate=cfg.dropout)(y, deterministic)
    x = c(x + y)
    y = c(_layer_norm(cfg)(x).astype(dtype))
    y = MlpBlock(cfg)(y, deterministic)
    y = nn.Dropout(rate=cfg.dropout)(y, deterministic)
    x = x + y
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    # The second output lets the block be used directly as an nn.scan body.
    return x, None


class Encoder(nn.Module):
  """The block stack plus final LayerNorm (big_vision's `Transformer`).

  Attributes:
    config: the ViT configuration.
  """
  config: config_lib.ViTConfig

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    block_cls = Encoder1DBlock
    if cfg.remat:
      # Argument 2 (deterministic) is a python bool: static for remat.
      block_cls = nn.remat(block_cls, static_argnums=(2,))
    if cfg.scan:
      stack = nn.scan(
          block_cls, variable_axes={'params': 0},
          split_rngs={'params': True, 'dropout': True},
          in_axes=nn.broadcast, length=cfg.depth,
          metadata_params={nn.PARTITION_NAME: 'layers'})
      x, _ = stack(cfg, name='encoderblock')(x, deterministic)
    else:
      for i in range(cfg.depth):
        x, _ = block_cls(cfg, name=f'encoderblock_{i}')(x, deterministic)
    return _layer_norm(cfg, name='encoder_norm')(x).astype(cfg.jnp_dtype)


class ViT(nn.Module):
  """ViT image encoder returning the patch-token grid.

  Attributes:
    config: the ViT configuration.
  """
  config: config_lib.ViTConfig

  @nn.compact
  def __call__(self, images: Array, *, train: bool = False
               ) -> tuple[Array, dict[str, Any]]:
    """Encodes images.

    Args:
      images: [B, S, S, 3] in [-1, 1], S = config.image_size.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      (tokens, aux): tokens [B, h * w, width] in config.dtype, the encoder
      output at the patch positions only (no class token); aux has 'grid'
      (h, w), 'encoded' (the full encoder output, class token first when
      present) and 'cls' (the class token output, only with class_token).

    Raises:
      ValueError: if images do not have shape [B, S, S, 3].
    """
    cfg = self.config
    s = cfg.image_size
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
      raise ValueError(
          f'ViT expects images [B, {s}, {s}, 3], got {images.shape}')
    dtype = cfg.jnp_dtype
    p = cfg.patch_size
    x = nn.Conv(
        cfg.width, (p, p), strides=(p, p), padding='VALID',
        dtype=dtype, param_dtype=jnp.float32,
        kernel_init=_part(nn.initializers.lecun_normal(),
                          ('conv_height', 'conv_width', 'conv_in',
                           'conv_out')),
        bias_init=_part(nn.initializers.zeros_init(), ('conv_out',)),
        name='embedding')(images.astype(dtype))  # [B, h, w, width]
    b, h, w, c = x.shape
    x = jnp.reshape(x, (b, h * w, c))  # [B, N, width]

    # As in big_vision, the position embedding is added before the class
    # token is prepended, so the class token carries none.
    if cfg.posemb == 'learn':
      pos = self.param(
          'pos_embedding',
          _part(nn.initializers.normal(stddev=1 / np.sqrt(c)),
                ('unmodeled', 'length', 'embed')),
          (1, h * w, c), jnp.float32)
    else:
      pos = posemb_sincos_2d(h, w, c)
    x = x + pos.astype(dtype)

    extra = 0
    if cfg.class_token:
      cls = self.param('cls', _part(nn.initializers.zeros_init(),
                                    ('unmodeled', 'unmodeled', 'embed')),
                       (1, 1, c), jnp.float32)
      x = jnp.concatenate([jnp.tile(cls.astype(dtype), (b, 1, 1)), x], axis=1)
      extra = 1

    x = nn.Dropout(rate=cfg.dropout)(x, not train)
    encoded = Encoder(cfg, name='Transformer')(x, deterministic=not train)
    aux = {'grid': (h, w), 'encoded': encoded}
    if extra:
      aux['cls'] = encoded[:, 0]
    tokens = encoded[:, extra:]  # [B, h * w, width]
    return tokens, aux
