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
"""Heatmap head of RAHF: fused image tokens -> per-pixel heatmap in [0, 1].

Paper Sec. 4.1 / Fig. 3: the image part of the fusion encoder's output is
reshaped to a feature map, passed through conv layers, upsampled by
transposed-conv ("deconv") layers and squashed by a sigmoid.

The `port` preset reproduces `HeatmapPredictor` of the public PyTorch port
(github.com/youweiliang/RichHF, `model.py`) op for op:

  conv_layers:  conv3x3(D->768) relu norm, conv3x3(768->384) relu norm
  4 blocks (768, 384, 384, 192):
    deconv3x3 s2 p1 op1 -> norm -> relu             (x = that; id = x)
    conv3x3 -> norm -> relu -> conv3x3 -> norm      (residual pair)
    x = relu(x + id)
  conv3x3(192->192) relu, conv3x3(192->1), sigmoid

All convs have biases; the norm is a channel RMS norm with a learned scale,
`x * rsqrt(mean_c(x^2) + 1e-8) * scale` (epsilon inside the square root).

Parameter names (this tree is the checkpoint format) and their port names,
for `port` (i over blocks 0..3):

  conv_{0,1}/{kernel,bias}          conv_layers.{0,3}.{weight,bias}
  norm_{0,1}/scale                  conv_layers.{2,5}.scale
  upsample_i/deconv/{kernel,bias}   deconv_layers.i.0.{weight,bias}
  upsample_i/deconv_norm/scale      deconv_layers.i.1.scale
  upsample_i/res_conv_{0,1}/...     conv_layers2.i.{0,3}.{weight,bias}
  upsample_i/res_norm_{0,1}/scale   conv_layers2.i.{1,4}.scale
  final_conv_0/{kernel,bias}        last_conv1.{weight,bias}
  out_conv/{kernel,bias}            last_conv2.{weight,bias}

Weight layouts and the PyTorch -> JAX transposes are in `conv_layers`; norm
scales `[C, 1, 1]` in the port reshape to `[C]`.

Dtype policy: params float32; convs run in `config.dtype`; norms, the
1-channel `out_conv` (the logits) and the sigmoid run in float32.

The `efficient` preset keeps this op structure (and parameter naming) but
stops the transposed-conv upsampling at a quarter of the output resolution,
with fewer channels at high resolution, and resizes the logits bilinearly by
`bilinear_upsample = 4`. The ground-truth maps are averages of discs of
radius 1/20 of the image height, so they hold little detail above that
scale: at a 24x24 feature grid it predicts at 96x96 (a disc radius of ~5
pixels there). XLA counts 23 GFLOP per head and example against `port`'s
681 (30x), and 593 against 1908 GFLOP for the whole paper-configuration
forward pass (3.2x); resampling the ground truth through 96x96 keeps a CC
of 0.99 at 384x384 (`benchmarks/head_flops.py`,
`benchmarks/heatmap_ceiling.py`).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from richhf_jax.models import conv_layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class HeatmapHeadConfig:
  """Architecture of a heatmap head.

  Attributes:
    conv_channels: output channels of the stride-1 conv layers applied to the
      feature map before upsampling (`conv_{i}`).
    conv_order: ops after each of those convs, one of
      `conv_layers.POST_CONV_ORDERS` ('act_norm' in the port).
    upsample_channels: output channels of the transposed-conv upsampling
      blocks (`upsample_{i}`); each doubles height and width.
    upsample_order: ops after each transposed conv ('norm_act' in the port).
    residual: whether each upsampling block ends with a residual pair
      `x = act(x + norm(conv(act(norm(conv(x))))))` (norms skipped when
      `norm_type` is 'none').
    final_channels: output channels of the stride-1 convs after the last
      upsampling block (`final_conv_{i}`), before the 1-channel `out_conv`.
    final_order: ops after each final conv ('act' in the port).
    kernel_size: odd square kernel size of every conv and transposed conv.
      Transposed convs use stride 2, padding `kernel_size // 2` and output
      padding 1, which doubles the size exactly for any odd kernel.
    norm_type: 'channel_rms' (learned scale only), 'layer' (centred, scale
      and bias) or 'none'.
    norm_epsilon: the norms' epsilon (inside the square root).
    activation: a name in `conv_layers.ACTIVATIONS`.
    use_bias: whether convs have biases.
    output_size: optional (H, W); when set, the logits are resized
      bilinearly to it before the sigmoid (see `HeatmapHead`).
    bilinear_upsample: integer factor of a bilinear resize of the logits
      after the last conv, when `output_size` is not set (1 = none). Counts
      in `upsample_factor`, so the output size still follows the grid.
    refine_channels: output channels of stride-1 convs at the output
      resolution (`refine_conv_{i}`, each followed by the ops of
      `final_order`). When set, the bilinear resize (`output_size` or
      `bilinear_upsample`) moves from the logits to the last final conv's
      features, and these convs and `out_conv` run on the resized features:
      a few channels at full resolution that can sharpen what the resize
      blurs (in the heatmap head ablation it did not beat resizing the
      logits; docs/performance.md). Empty (the default) = resize the logits.
    remat: rematerialize each upsampling block in the backward pass: its
      high-resolution activations are recomputed instead of stored (only the
      block inputs are kept). Same parameters and outputs.
    batch_chunks: run the head over the batch in this many sequential
      slices (a scan whose body is rematerialised as a whole), so that the
      backward pass holds one slice's high-resolution activations at a time
      instead of the whole batch's. Example i goes to slice i % batch_chunks
      (a batch sharded in contiguous blocks keeps its sharding); a batch
      that does not divide is padded with zeros for the scan. Same
      parameters and outputs; costs one extra forward pass of the head in
      training (with `remat` too, the upsampling blocks run forward a third
      time, inside the slice's backward pass). 1 = off.
    deconv_method: how the transposed convs compute, one of
      `conv_layers.DECONV_METHODS`: 'phase' (sub-pixel convs; the fast one
      on CPU) or 'dilated' (one conv of the lhs-dilated input). Same
      parameters and outputs (see `conv_layers.ConvTranspose2D`).
    dtype: activation dtype of the convs.
  """
  conv_channels: tuple[int, ...] = (768, 384)
  conv_order: str = 'act_norm'
  upsample_channels: tuple[int, ...] = (768, 384, 384, 192)
  upsample_order: str = 'norm_act'
  residual: bool = True
  final_channels: tuple[int, ...] = (192,)
  final_order: str = 'act'
  kernel_size: int = 3
  norm_type: str = 'channel_rms'
  norm_epsilon: float = 1e-8
  activation: str = 'relu'
  use_bias: bool = True
  output_size: tuple[int, int] | None = None
  bilinear_upsample: int = 1
  refine_channels: tuple[int, ...] = ()
  remat: bool = False
  batch_chunks: int = 1
  deconv_method: str = 'phase'
  dtype: Any = jnp.float32

  def __post_init__(self):
    conv_layers.check_channels(self.conv_channels, 'conv_channels')
    conv_layers.check_channels(self.upsample_channels, 'upsample_channels')
    conv_layers.check_channels(self.final_channels, 'final_channels')
    conv_layers.check_channels(self.refine_channels, 'refine_channels')
    for field in ('conv_order', 'upsample_order', 'final_order'):
      conv_layers.check_choice(getattr(self, field),
                               conv_layers.POST_CONV_ORDERS, field)
    conv_layers.check_choice(self.norm_type, conv_layers.NORM_TYPES,
                             'norm_type')
    conv_layers.check_choice(self.deconv_method, conv_layers.DECONV_METHODS,
                             'deconv_method')
    conv_layers.check_choice(self.activation,
                             tuple(conv_layers.ACTIVATIONS), 'activation')
    if (not isinstance(self.kernel_size, int) or self.kernel_size < 1
        or self.kernel_size % 2 == 0):
      raise ValueError(
          f'kernel_size must be a positive odd int, got {self.kernel_size!r}')
    if not self.norm_epsilon > 0:
      raise ValueError(
          f'norm_epsilon must be > 0, got {self.norm_epsilon!r}')
    if self.output_size is not None:
      conv_layers.check_channels(self.output_size, 'output_size')
      if len(self.output_size) != 2:
        raise ValueError(
            f'output_size must be (H, W), got {self.output_size!r}')
    if (not isinstance(self.bilinear_upsample, int)
        or isinstance(self.bilinear_upsample, bool)
        or self.bilinear_upsample < 1):
      raise ValueError('bilinear_upsample must be a positive int, got '
                       f'{self.bilinear_upsample!r}')
    if (not isinstance(self.batch_chunks, int)
        or isinstance(self.batch_chunks, bool) or self.batch_chunks < 1):
      raise ValueError('batch_chunks must be a positive int, got '
                       f'{self.batch_chunks!r}')
    if not isinstance(self.remat, bool):
      raise ValueError(f'remat must be a bool, got {self.remat!r}')
    if not jnp.issubdtype(jnp.dtype(self.dtype), jnp.floating):
      raise ValueError(f'dtype must be a floating dtype, got {self.dtype!r}')

  @property
  def upsample_factor(self) -> int:
    """Height/width ratio of the output to the input (before output_size)."""
    return 2 ** len(self.upsample_channels) * self.bilinear_upsample

  @property
  def conv_resolution_factor(self) -> int:
    """Ratio of the last conv's resolution to the input's."""
    return 2 ** len(self.upsample_channels)


# Presets are data. `port` is the PyTorch port's head (its default T5-base
# width gives D = 768 input channels; the head itself adapts to any D).
HEATMAP_HEAD_PRESETS: dict[str, HeatmapHeadConfig] = {
    'port': HeatmapHeadConfig(),
    'tiny': HeatmapHeadConfig(
        conv_channels=(32, 16),
        upsample_channels=(32, 16),
        final_channels=(16,)),
    # `port`'s structure at the low-resolution end; two upsampling blocks
    # with 256 and 128 channels (port: four, up to 768), then a 4x bilinear
    # resize of the logits. Same output size as `port` for the same grid.
    'efficient': HeatmapHeadConfig(
        conv_channels=(768, 384),
        upsample_channels=(256, 128),
        final_channels=(64,),
        bilinear_upsample=4),
}


def get_heatmap_head_config(name: str, **overrides) -> HeatmapHeadConfig:
  """Returns the preset `name`, with fields replaced by `overrides`.

  Args:
    name: a key of `HEATMAP_HEAD_PRESETS`.
    **overrides: `HeatmapHeadConfig` fields to replace.

  Returns:
    The (validated) config.

  Raises:
    ValueError: unknown preset name, or an invalid override.
  """
  return conv_layers.lookup_preset('heatmap head', HEATMAP_HEAD_PRESETS,
                                   name, overrides)


class HeatmapHead(nn.Module):
  """Feature map -> heatmap in [0, 1] (see the module docstring).

  With `config.output_size` set (or else `config.bilinear_upsample` > 1),
  the 1-channel float32 logits are resized with
  `jax.image.resize(..., 'bilinear')` (half-pixel centres: equal to
  PyTorch `F.interpolate(..., align_corners=False)` when upsampling; when
  downsampling JAX antialiases and PyTorch does not) and the sigmoid comes
  after. Logits rather than probabilities are resized so that the sigmoid
  stays the last op, exactly as in the full-resolution head, and so that
  edges stay sharp: a logit interpolated across a boundary and then squashed
  makes a steep transition, while interpolated probabilities make a linear
  ramp between coarse pixels. Both keep the result in [0, 1]. With
  `config.refine_channels` the features are resized instead, and the
  refine convs and the output conv run at the output size.

  Attributes:
    config: the architecture.
  """
  config: HeatmapHeadConfig

  def _norm(self, name: str) -> nn.Module | None:
    cfg = self.config
    return conv_layers.make_norm(cfg.norm_type, cfg.norm_epsilon, cfg.dtype,
                                 name)

  def _conv(self, features: int, name: str) -> nn.Module:
    cfg = self.config
    return conv_layers.conv2d(features, cfg.kernel_size, 1, cfg.use_bias,
                              cfg.dtype, name)

  def _conv_block(self, x: Array, features: int, order: str, conv_name: str,
                  norm_name: str) -> Array:
    """conv -> the ops of `order`; the norm is created only if used."""
    x = self._conv(features, conv_name)(x)
    norm = (self._norm(norm_name)
            if conv_layers.post_conv_needs_norm(order) else None)
    act = conv_layers.activation_fn(self.config.activation)
    return conv_layers.post_conv(x, order, norm, act)

  def _logits(self, feature_map: Array) -> Array:
    """[B, h, w, D] -> [B, H, W] float32 logits (before the sigmoid)."""
    cfg = self.config
    x = feature_map.astype(cfg.dtype)

    # [B, h, w, D] -> [B, h, w, conv_channels[-1]]
    for i, features in enumerate(cfg.conv_channels):
      x = self._conv_block(x, features, cfg.conv_order, f'conv_{i}',
                           f'norm_{i}')

    # Each block: [B, h', w', C] -> [B, 2h', 2w', upsample_channels[i]].
    block_cls = nn.remat(_UpsampleBlock) if cfg.remat else _UpsampleBlock
    for i, features in enumerate(cfg.upsample_channels):
      x = block_cls(cfg, features, name=f'upsample_{i}')(x)

    # [B, H, W, C] -> [B, H, W, final_channels[-1]]
    for i, features in enumerate(cfg.final_channels):
      x = self._conv_block(x, features, cfg.final_order, f'final_conv_{i}',
                           f'final_norm_{i}')

    batch, h, w = x.shape[:3]
    size = cfg.output_size
    if size is None and cfg.bilinear_upsample > 1:
      size = (h * cfg.bilinear_upsample, w * cfg.bilinear_upsample)
    resize = size is not None and tuple(size) != (h, w)
    if cfg.refine_channels:
      # [B, H, W, C] -> [B, H', W', C] -> [B, H', W', refine_channels[-1]]
      if resize:
        x = jax.image.resize(x, (batch, *size, x.shape[-1]),
                             method='bilinear').astype(cfg.dtype)
        resize = False
      for i, features in enumerate(cfg.refine_channels):
        x = self._conv_block(x, features, cfg.final_order,
                             f'refine_conv_{i}', f'refine_norm_{i}')

    # float32 island for the cheap 1-channel logits: [B, H, W, 1] -> [B, H, W].
    out_conv = conv_layers.conv2d(1, cfg.kernel_size, 1, cfg.use_bias,
                                  jnp.float32, 'out_conv')
    logits = out_conv(x)[..., 0]
    if resize:
      logits = jax.image.resize(logits, (batch, *size), method='bilinear')
    return logits

  @nn.compact
  def __call__(self, feature_map: Array, *, train: bool = False,
               return_logits: bool = False) -> Array:
    """Predicts a heatmap.

    Args:
      feature_map: [B, h, w, D] image features.
      train: unused (the head has no dropout or batch statistics); kept for
        the common head interface.
      return_logits: return the pre-sigmoid logits instead (for losses that
        work on logits).

    Returns:
      [B, H, W] float32 in [0, 1] (or logits), with (H, W) =
      `config.output_size` if set, else (h, w) * `config.upsample_factor`
      (which includes `config.bilinear_upsample`).

    Raises:
      ValueError: `feature_map` is not 4-D.
    """
    del train
    cfg = self.config
    conv_layers.check_feature_map(feature_map)
    n = cfg.batch_chunks
    if n == 1:
      logits = self._logits(feature_map)
    else:
      # [B, ...] -> [S, n, ...]: slice c of the scan holds examples c, c + n,
      # c + 2n, ...; rows of the leading axis stay where the batch sharding
      # put them.
      batch = feature_map.shape[0]
      per_slice = -(-batch // n)
      x = feature_map
      if per_slice * n != batch:
        x = jnp.pad(x, [(0, per_slice * n - batch), (0, 0), (0, 0), (0, 0)])
      x = x.reshape(per_slice, n, *x.shape[1:])

      def step(module, carry, x_slice):
        return carry, module._logits(x_slice)  # pylint: disable=protected-access

      scan = nn.scan(nn.remat(step), variable_broadcast='params',
                     split_rngs={'params': False}, in_axes=1, out_axes=1,
                     length=n)
      _, logits = scan(self, None, x)
      logits = logits.reshape(per_slice * n, *logits.shape[2:])[:batch]
    if return_logits:
      return nn.with_logical_constraint(logits, ('batch', 'height', 'width'))
    heatmap = jax.nn.sigmoid(logits)
    return nn.with_logical_constraint(heatmap, ('batch', 'height', 'width'))


class _UpsampleBlock(nn.Module):
  """Transposed conv (2x) -> ops -> optional residual pair of convs.

  Attributes:
    config: the head's config.
    features: output channels.
  """
  config: HeatmapHeadConfig
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[B, h, w, C] -> [B, 2h, 2w, features]."""
    cfg = self.config
    act = conv_layers.activation_fn(cfg.activation)

    def norm(name):
      return conv_layers.make_norm(cfg.norm_type, cfg.norm_epsilon,
                                   cfg.dtype, name)

    def conv(name):
      return conv_layers.conv2d(self.features, cfg.kernel_size, 1,
                                cfg.use_bias, cfg.dtype, name)

    x = conv_layers.ConvTranspose2D(
        features=self.features,
        kernel_size=cfg.kernel_size,
        stride=2,
        padding=cfg.kernel_size // 2,
        output_padding=1,
        use_bias=cfg.use_bias,
        dtype=cfg.dtype,
        method=cfg.deconv_method,
        name='deconv')(x)
    deconv_norm = (norm('deconv_norm')
                   if conv_layers.post_conv_needs_norm(cfg.upsample_order)
                   else None)
    x = conv_layers.post_conv(x, cfg.upsample_order, deconv_norm, act)
    if not cfg.residual:
      return x

    # Residual pair (port: conv_layers2[i], then `relu(x + identity)`).
    identity = x
    x = conv_layers.post_conv(conv('res_conv_0')(x), 'norm_act',
                              norm('res_norm_0'), act)
    x = conv_layers.post_conv(conv('res_conv_1')(x), 'norm',
                              norm('res_norm_1'), act)
    return act(x + identity)
