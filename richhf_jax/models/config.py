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
"""Frozen configuration dataclasses and size presets for the ViT and T5 stacks.

Configs are plain data: one frozen dataclass per model, passed whole to the
module (t5x `network.T5Config` style). Size presets are dictionaries of field
values (big_vision `vit.decode_variant`, flaxformer `t5_1_1.SMALL_CONFIG`);
`vit_config(name, **overrides)` and `t5_config(name, **overrides)` build a
validated config from a preset. Every preset family has a `tiny` entry for
tests.
"""

import dataclasses
from typing import Any

import jax.numpy as jnp

_DTYPES = ('float32', 'bfloat16')
_POSEMB = ('learn', 'sincos2d')
_ACTIVATIONS = ('relu', 'gelu', 'gelu_new', 'silu', 'swish', 'linear')


def _check_positive(cls_name: str, obj: Any, names: tuple[str, ...]) -> None:
  for name in names:
    value = getattr(obj, name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(
          f'{cls_name}.{name} must be a positive int, got {value!r}')


def _check_rate(cls_name: str, name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f'{cls_name}.{name} must be in [0, 1), got {value!r}')


def _check_dtype(cls_name: str, value: str) -> None:
  if value not in _DTYPES:
    raise ValueError(
        f'{cls_name}.dtype must be one of {_DTYPES}, got {value!r}')


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """Vision Transformer hyperparameters (big_vision `vit.py` semantics).

  Attributes:
    image_size: input side length S; images are [B, S, S, 3].
    patch_size: patch side; S must be a multiple of it.
    width: token width (d_model).
    depth: number of encoder blocks.
    mlp_dim: hidden units of each block's MLP.
    num_heads: attention heads; must divide `width`.
    class_token: if True a learned `cls` token is prepended (after the
      position embedding is added, as in big_vision).
    posemb: 'learn' (a `pos_embedding` parameter) or 'sincos2d' (fixed).
    layernorm_epsilon: epsilon of every LayerNorm.
    gelu_approximate: tanh approximation of GELU in the MLP (flax's `nn.gelu`
      default, which big_vision uses) or the exact erf form.
    dropout: dropout rate after the embedding, attention and MLP.
    dtype: activation dtype, 'float32' or 'bfloat16'; params stay float32.
    remat: rematerialize each block in the backward pass.
    scan: stack the blocks with `nn.scan` (changes the param tree).
  """
  image_size: int = 224
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  mlp_dim: int = 3072
  num_heads: int = 12
  class_token: bool = False
  posemb: str = 'learn'
  layernorm_epsilon: float = 1e-6
  gelu_approximate: bool = True
  dropout: float = 0.0
  dtype: str = 'float32'
  remat: bool = False
  scan: bool = False

  def __post_init__(self):
    _check_positive('ViTConfig', self, ('image_size', 'patch_size', 'width',
                                        'depth', 'mlp_dim', 'num_heads'))
    if self.image_size % self.patch_size:
      raise ValueError(
          f'ViTConfig.image_size={self.image_size} must be a multiple of '
          f'patch_size={self.patch_size}')
    if self.width % self.num_heads:
      raise ValueError(
          f'ViTConfig.width={self.width} must be divisible by '
          f'num_heads={self.num_heads}')
    if self.posemb not in _POSEMB:
      raise ValueError(
          f'ViTConfig.posemb must be one of {_POSEMB}, got {self.posemb!r}')
    if self.posemb == 'sincos2d' and self.width % 4:
      raise ValueError(
          f'ViTConfig.posemb=sincos2d needs width % 4 == 0, got '
          f'width={self.width}')
    if self.layernorm_epsilon <= 0:
      raise ValueError('ViTConfig.layernorm_epsilon must be > 0, got '
                       f'{self.layernorm_epsilon!r}')
    _check_rate('ViTConfig', 'dropout', self.dropout)
    _check_dtype('ViTConfig', self.dtype)

  @property
  def grid(self) -> tuple[int, int]:
    """The patch grid (rows, columns)."""
    side = self.image_size // self.patch_size
    return side, side

  @property
  def num_patches(self) -> int:
    return self.grid[0] * self.grid[1]

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads

  @property
  def jnp_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)


@dataclasses.dataclass(frozen=True)
class T5Config:
  """T5 encoder-decoder hyperparameters (T5X `examples/t5/network.py`).

  Attributes:
    vocab_size: token vocabulary (T5 uses 32128: 32000 SentencePiece pieces
      plus 100 sentinels, padded to a multiple of 128 for TPU layout).
    emb_dim: model width d_model.
    num_heads: attention heads.
    head_dim: features per head (not necessarily emb_dim / num_heads).
    mlp_dim: hidden units of the feed-forward block.
    num_encoder_layers: encoder depth.
    num_decoder_layers: decoder depth.
    mlp_activations: one activation per input branch of the MLP; two branches
      are multiplied (gated GELU of T5.1.1), one branch is plain (ReLU of
      T5.1.0).
    logits_via_embedding: tie the output layer to the token embedding (and
      scale the decoder output by emb_dim**-0.5 first, as T5.1.0 does).
    relative_attention_num_buckets: relative-position buckets.
    relative_attention_max_distance: distance mapped to the last bucket.
    layer_norm_epsilon: epsilon of the RMS layer norms.
    dropout_rate: dropout everywhere dropout applies.
    dtype: activation dtype, 'float32' or 'bfloat16'; params stay float32.
    float32_attention_logits: compute q.k in float32 even in bfloat16.
    remat: rematerialize each layer in the backward pass.
    scan: stack the layers with `nn.scan` (changes the param tree).
  """
  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 6
  head_dim: int = 64
  mlp_dim: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  mlp_activations: tuple[str, ...] = ('gelu', 'linear')
  logits_via_embedding: bool = False
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dropout_rate: float = 0.0
  dtype: str = 'float32'
  float32_attention_logits: bool = False
  remat: bool = False
  scan: bool = False

  def __post_init__(self):
    _check_positive('T5Config', self, (
        'vocab_size', 'emb_dim', 'num_heads', 'head_dim', 'mlp_dim',
        'num_encoder_layers', 'num_decoder_layers',
        'relative_attention_num_buckets', 'relative_attention_max_distance'))
    # Lists from gin or JSON are accepted and frozen into a tuple.
    acts = tuple(self.mlp_activations)
    object.__setattr__(self, 'mlp_activations', acts)
    if not acts or any(a not in _ACTIVATIONS for a in acts):
      raise ValueError(
          f'T5Config.mlp_activations must be a non-empty sequence of '
          f'{_ACTIVATIONS}, got {self.mlp_activations!r}')
    if self.relative_attention_num_buckets < 4:
      raise ValueError(
          'T5Config.relative_attention_num_buckets must be >= 4 (half are '
          'exact, half logarithmic, per direction), got '
          f'{self.relative_attention_num_buckets}')
    if self.layer_norm_epsilon <= 0:
      raise ValueError('T5Config.layer_norm_epsilon must be > 0, got '
                       f'{self.layer_norm_epsilon!r}')
    _check_rate('T5Config', 'dropout_rate', self.dropout_rate)
    _check_dtype('T5Config', self.dtype)

  @property
  def jnp_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)


# ViT sizes from big_vision `decode_variant` (Table 2 of arXiv:2106.04560 and
# the SigLIP shape-optimized So400m). `image_size` is a default; RAHF
# fine-tunes at 384 px, so pass `image_size=384` as an override.
VIT_PRESETS: dict[str, dict[str, Any]] = {
    'tiny': dict(image_size=32, patch_size=8, width=64, depth=2, mlp_dim=128,
                 num_heads=4),
    'B/16': dict(image_size=224, patch_size=16, width=768, depth=12,
                 mlp_dim=3072, num_heads=12),
    'L/16': dict(image_size=224, patch_size=16, width=1024, depth=24,
                 mlp_dim=4096, num_heads=16),
    'So400m/14': dict(image_size=224, patch_size=14, width=1152, depth=27,
                      mlp_dim=4304, num_heads=16),
}

# T5 sizes from the T5X gin files (`examples/t5/t5_1_1/*.gin`,
# `examples/t5/t5_1_0/base.gin`).
T5_PRESETS: dict[str, dict[str, Any]] = {
    'tiny': dict(vocab_size=128, emb_dim=64, num_heads=4, head_dim=16,
                 mlp_dim=128, num_encoder_layers=2, num_decoder_layers=2),
    't5_1_1_small': dict(vocab_size=32128, emb_dim=512, num_heads=6,
                         head_dim=64, mlp_dim=1024, num_encoder_layers=8,
                         num_decoder_layers=8),
    't5_1_1_base': dict(vocab_size=32128, emb_dim=768, num_heads=12,
                        head_dim=64, mlp_dim=2048, num_encoder_layers=12,
                        num_decoder_layers=12),
    't5_1_1_large': dict(vocab_size=32128, emb_dim=1024, num_heads=16,
                         head_dim=64, mlp_dim=2816, num_encoder_layers=24,
                         num_decoder_layers=24),
    # The original T5 base (HF `t5-base`): ReLU MLP with a single `wi`, output
    # layer tied to the embedding.
    't5_1_0_base': dict(vocab_size=32128, emb_dim=768, num_heads=12,
                        head_dim=64, mlp_dim=3072, num_encoder_layers=12,
                        num_decoder_layers=12, mlp_activations=('relu',),
                        logits_via_embedding=True),
}


def _lookup(kind: str, presets: dict[str, dict[str, Any]], name: str,
            fields: tuple[str, ...], overrides: dict[str, Any]
            ) -> dict[str, Any]:
  if name not in presets:
    raise ValueError(
        f'unknown {kind} preset {name!r}; valid names: {sorted(presets)}')
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise ValueError(
        f'unknown {kind} fields {unknown} in overrides; valid fields: '
        f'{sorted(fields)}')
  return {**presets[name], **overrides}


def vit_config(name: str, **overrides: Any) -> ViTConfig:
  """Returns the ViT preset `name` with `overrides` applied.

  Args:
    name: one of `VIT_PRESETS` ('tiny', 'B/16', 'L/16', 'So400m/14').
    **overrides: `ViTConfig` fields to change, e.g. `image_size=384`.

  Returns:
    A validated `ViTConfig`.

  Raises:
    ValueError: for an unknown preset or field, or an invalid value.
  """
  fields = tuple(f.name for f in dataclasses.fields(ViTConfig))
  return ViTConfig(**_lookup('ViT', VIT_PRESETS, name, fields, overrides))


def t5_config(name: str, **overrides: Any) -> T5Config:
  """Returns the T5 preset `name` with `overrides` applied.

  Args:
    name: one of `T5_PRESETS` ('tiny', 't5_1_1_small', 't5_1_1_base',
      't5_1_1_large', 't5_1_0_base').
    **overrides: `T5Config` fields to change, e.g. `dtype='bfloat16'`.

  Returns:
    A validated `T5Config`.

  Raises:
    ValueError: for an unknown preset or field, or an invalid value.
  """
  fields = tuple(f.name for f in dataclasses.fields(T5Config))
  return T5Config(**_lookup('T5', T5_PRESETS, name, fields, overrides))
