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
"""Score head of RAHF: fused image tokens -> one score in [0, 1].

Paper Sec. 4.1 / Fig. 3: feature map -> conv layers -> linear layers ->
sigmoid.

The `port` preset reproduces `ScorePredictor` of the public PyTorch port
(github.com/youweiliang/RichHF, `model.py`) op for op, for D = 768 (its
T5-base width) on a 24x24 grid (ViT /16 at 384 px):

  6 x [conv3x3 stride 1 padding 1 -> norm -> relu], channels
      D, D/2, D/4, D/8, D/16, D/64 = 768, 384, 192, 96, 48, 12
  flatten in NCHW order (channel-major): 12 * 24 * 24 = 6912
  linear 6912 -> 512, relu, linear 512 -> 128, relu, linear 128 -> 1, sigmoid

All convs and linears have biases; the norm is the channel RMS norm (learned
scale, epsilon 1e-8 inside the square root). The first dense layer's input
size comes from the feature map's grid at init time (it is not a config
field), so a head initialised on a 24x24 grid only runs on 24x24 grids.

Parameter names (the checkpoint format) and their port names:

  conv_{i}/{kernel,bias}   conv_layers.{3i}.{weight,bias}     i = 0..5
  norm_{i}/scale           conv_layers.{3i+1}.scale
  dense_{0,1}/{kernel,bias} linear_layers.{0,2}.{weight,bias}
  out_dense/{kernel,bias}  linear_layers.4.{weight,bias}

With `flatten_order='channels_first'` (the port preset) the flattened vector
has the port's order, so `dense_0/kernel` is the port's weight transposed,
with no row permutation. Layouts of the other weights are in `conv_layers`.

Dtype policy: params float32; convs and hidden dense layers run in
`config.dtype`; norms, `out_dense` (the logit) and the sigmoid run in float32.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from richhf_jax.models import conv_layers

Array = jax.Array

FLATTEN_ORDERS = ('channels_first', 'channels_last')


@dataclasses.dataclass(frozen=True)
class ScoreHeadConfig:
  """Architecture of a score head.

  Attributes:
    conv_channels: output channels of the conv layers (`conv_{i}`).
    conv_strides: stride of each conv layer; same length as `conv_channels`.
      Each conv pads `kernel_size // 2` on every side (PyTorch `padding=1`
      for 3x3), so a stride-s layer maps n to `(n - 1) // s + 1`.
    conv_order: ops after each conv, one of `conv_layers.POST_CONV_ORDERS`
      ('norm_act' in the port).
    mlp_dims: hidden widths of the dense layers (`dense_{i}`), each followed
      by the activation; a 1-unit `out_dense` and the sigmoid follow.
    flatten_order: 'channels_first' flattens [C, h, w] as PyTorch's
      `flatten(1)` on NCHW does (the port); 'channels_last' flattens
      [h, w, C].
    kernel_size: odd square kernel size of the convs.
    norm_type: 'channel_rms', 'layer' or 'none'.
    norm_epsilon: the norms' epsilon (inside the square root).
    activation: a name in `conv_layers.ACTIVATIONS`.
    use_bias: whether convs and dense layers have biases.
    dtype: activation dtype of the convs and dense layers.
  """
  conv_channels: tuple[int, ...] = (768, 384, 192, 96, 48, 12)
  conv_strides: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
  conv_order: str = 'norm_act'
  mlp_dims: tuple[int, ...] = (512, 128)
  flatten_order: str = 'channels_first'
  kernel_size: int = 3
  norm_type: str = 'channel_rms'
  norm_epsilon: float = 1e-8
  activation: str = 'relu'
  use_bias: bool = True
  dtype: Any = jnp.float32

  def __post_init__(self):
    conv_layers.check_channels(self.conv_channels, 'conv_channels')
    conv_layers.check_channels(self.conv_strides, 'conv_strides')
    if len(self.conv_strides) != len(self.conv_channels):
      raise ValueError(
          f'conv_strides must have one entry per conv layer '
          f'({len(self.conv_channels)} from conv_channels), got '
          f'{self.conv_strides!r}')
    conv_layers.check_channels(self.mlp_dims, 'mlp_dims')
    conv_layers.check_choice(self.conv_order, conv_layers.POST_CONV_ORDERS,
                             'conv_order')
    conv_layers.check_choice(self.flatten_order, FLATTEN_ORDERS,
                             'flatten_order')
    conv_layers.check_choice(self.norm_type, conv_layers.NORM_TYPES,
                             'norm_type')
    conv_layers.check_choice(self.activation,
                             tuple(conv_layers.ACTIVATIONS), 'activation')
    if (not isinstance(self.kernel_size, int) or self.kernel_size < 1
        or self.kernel_size % 2 == 0):
      raise ValueError(
          f'kernel_size must be a positive odd int, got {self.kernel_size!r}')
    if not self.norm_epsilon > 0:
      raise ValueError(
          f'norm_epsilon must be > 0, got {self.norm_epsilon!r}')
    if not jnp.issubdtype(jnp.dtype(self.dtype), jnp.floating):
      raise ValueError(f'dtype must be a floating dtype, got {self.dtype!r}')


def port_score_head_config(d_model: int = 768) -> ScoreHeadConfig:
  """The port's score head for a fusion width `d_model` (D ... D/64).

  Args:
    d_model: the feature map's channel count D; a multiple of 64.

  Returns:
    The config.

  Raises:
    ValueError: `d_model` is not a positive multiple of 64.
  """
  if d_model <= 0 or d_model % 64:
    raise ValueError(
        f'd_model must be a positive multiple of 64, got {d_model}')
  return ScoreHeadConfig(
      conv_channels=tuple(d_model // f for f in (1, 2, 4, 8, 16, 64)))


# Presets are data; `port` is the port's head at its default D = 768.
SCORE_HEAD_PRESETS: dict[str, ScoreHeadConfig] = {
    'port': ScoreHeadConfig(),
    'tiny': ScoreHeadConfig(
        conv_channels=(16, 8),
        conv_strides=(1, 2),
        mlp_dims=(32,)),
}


def get_score_head_config(name: str, **overrides) -> ScoreHeadConfig:
  """Returns the preset `name`, with fields replaced by `overrides`.

  Args:
    name: a key of `SCORE_HEAD_PRESETS`.
    **overrides: `ScoreHeadConfig` fields to replace.

  Returns:
    The (validated) config.

  Raises:
    ValueError: unknown preset name, or an invalid override.
  """
  return conv_layers.lookup_preset('score head', SCORE_HEAD_PRESETS, name, overrides)


class ScoreHead(nn.Module):
  """Feature map -> score in [0, 1] (see the module docstring).

  Attributes:
    config: the architecture.
  """
  config: ScoreHeadConfig

  @nn.compact
  def __call__(self, feature_map: Array, *, train: bool = False) -> Array:
    """Predicts one score per example.

    Args:
      feature_map: [B, h, w, D] image features.
      train: unused (the head has no dropout or batch statistics); kept for
        the common head interface.

    Returns:
      [B] float32 in [0, 1].

    Raises:
      ValueError: `feature_map` is not 4-D.
    """
    del train
    cfg = self.config
    conv_layers.check_feature_map(feature_map)
    act = conv_layers.activation_fn(cfg.activation)
    x = feature_map.astype(cfg.dtype)

    # [B, h, w, D] -> [B, h', w', conv_channels[-1]]
    for i, (features, stride) in enumerate(
        zip(cfg.conv_channels, cfg.conv_strides)):
      x = conv_layers.conv2d(features, cfg.kernel_size, stride, cfg.use_bias,
                             cfg.dtype, f'conv_{i}')(x)
      norm = (conv_layers.make_norm(cfg.norm_type, cfg.norm_epsilon,
                                    cfg.dtype, f'norm_{i}')
              if conv_layers.post_conv_needs_norm(cfg.conv_order) else None)
      x = conv_layers.post_conv(x, cfg.conv_order, norm, act)

    # [B, h', w', C] -> [B, C * h' * w'] in the configured order.
    if cfg.flatten_order == 'channels_first':
      x = jnp.transpose(x, (0, 3, 1, 2))
    x = x.reshape(x.shape[0], -1)

    # [B, F] -> [B, mlp_dims[-1]] -> [B]
    for i, features in enumerate(cfg.mlp_dims):
      x = act(conv_layers.dense(features, cfg.use_bias, cfg.dtype,
                                f'dense_{i}')(x))
    # float32 island for the single logit.
    logits = conv_layers.dense(1, cfg.use_bias, jnp.float32, 'out_dense')(x)
    score = jax.nn.sigmoid(logits)[:, 0]
    return nn.with_logical_constraint(score, ('batch',))
