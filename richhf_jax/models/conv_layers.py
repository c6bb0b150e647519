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
"""Convolutional building blocks shared by the heatmap and score heads.

All layers take NHWC feature maps and create float32 parameters with logical
axis names from `richhf_jax.partitioning.LOGICAL_AXES`:

- conv kernels `('conv_height', 'conv_width', 'conv_in', 'conv_out')`,
- conv biases and norm parameters `('conv_out',)`,
- dense kernels `('head_in', 'head_out')`, dense biases `('head_out',)`.

Kernel layouts, and how a PyTorch weight maps onto them (for importers):

- `Conv2D.kernel` is `[kh, kw, in, out]` (HWIO). A PyTorch `nn.Conv2d` weight
  `[out, in, kh, kw]` maps as `w.transpose(2, 3, 1, 0)`; both frameworks
  compute a cross-correlation, so no flip is needed.
- `ConvTranspose2D.kernel` is `[kh, kw, in, out]` where `in` is the channel
  count of the transposed conv's *input*. A PyTorch `nn.ConvTranspose2d`
  weight `[in, out, kh, kw]` maps as `w.transpose(2, 3, 0, 1)`, again with no
  flip: the stored kernel is PyTorch's scatter kernel, and the spatial flip
  that turns the scatter into a correlation happens in the computation.
- `nn.Dense` kernels are `[in, out]`; a PyTorch `nn.Linear` weight `[out, in]`
  maps as `w.T`.

Norms (`'channel_rms'`, `'layer'`) normalise over the channel axis at every
pixel and always compute in float32, whatever the activation dtype.
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

Array = jax.Array
DType = Any

CONV_KERNEL_AXES = ('conv_height', 'conv_width', 'conv_in', 'conv_out')
CONV_BIAS_AXES = ('conv_out',)
DENSE_KERNEL_AXES = ('head_in', 'head_out')
DENSE_BIAS_AXES = ('head_out',)

NORM_TYPES = ('channel_rms', 'layer', 'none')
ACTIVATIONS = {
    'relu': nn.relu,
    'gelu': nn.gelu,
    'silu': nn.silu,
}
# What follows a convolution: the ops in the order they run. Steps that name a
# norm are skipped when the norm type is 'none'.
POST_CONV_ORDERS = ('norm_act', 'act_norm', 'act', 'norm', 'none')

_NHWC_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _conv_nhwc(x: Array, kernel: Array, padding) -> Array:
  return lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                  dimension_numbers=_NHWC_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_tapwise_grad(x: Array, kernel: Array, padding) -> Array:
  """A stride-1 NHWC/HWIO convolution whose kernel gradient is tap by tap.

  Forward and input gradient are XLA's convolutions. The kernel gradient is
  one matrix product per kernel tap, `dK[i, j] = sum_bhw x_pad[b, h + i,
  w + j, :]^T g[b, h, w, :]`: XLA:CPU computes the kernel gradient of a
  large-image convolution as a convolution with an image-sized window, at
  13-47 GFLOP/s on the 2-core development machine where these products run
  at 45-100 and the forward conv at ~180 (3x3, 192-384 channels, 56-224
  pixels a side; docs/performance.md). Same values up to float rounding.

  Args:
    x: [B, H, W, C_in].
    kernel: [kh, kw, C_in, C_out].
    padding: ((low, high), (low, high)) of the two spatial axes (ints >= 0).

  Returns:
    [B, H', W', C_out], as `lax.conv_general_dilated` with stride 1.
  """
  return _conv_nhwc(x, kernel, padding)


def _conv_tapwise_fwd(x, kernel, padding):
  return _conv_nhwc(x, kernel, padding), (x, kernel)


def _conv_tapwise_bwd(padding, res, g):
  x, kernel = res
  _, input_vjp = jax.vjp(lambda v: _conv_nhwc(v, kernel, padding), x)
  (dx,) = input_vjp(g)
  kh, kw, c_in, c_out = kernel.shape
  (h_lo, h_hi), (w_lo, w_hi) = padding
  xp = jnp.pad(x, ((0, 0), (h_lo, h_hi), (w_lo, w_hi), (0, 0)))
  batch, out_h, out_w, _ = g.shape
  rows = batch * out_h * out_w
  # Long contractions as two halves batched in one product, summed after:
  # XLA:CPU's product with a [C_in, C_out] output and a long contraction
  # keeps one of the two cores idle (224x224, 192 channels: 483 -> 385 ms;
  # shorter ones are slower split, docs/performance.md).
  halves = 2 if rows >= TAPWISE_SPLIT_ROWS and rows % 2 == 0 else 1

  def tap(i, j):
    xs = lax.slice(xp, (0, i, j, 0), (batch, i + out_h, j + out_w, c_in))
    if halves == 1:
      return jnp.einsum('bhwc,bhwd->cd', xs, g,
                        preferred_element_type=jnp.float32)
    return jnp.einsum('skc,skd->scd', xs.reshape(halves, -1, c_in),
                      g.reshape(halves, -1, c_out),
                      preferred_element_type=jnp.float32).sum(0)

  taps = [tap(i, j) for i in range(kh) for j in range(kw)]
  dk = jnp.stack(taps).reshape(kh, kw, c_in, c_out).astype(kernel.dtype)
  return dx, dk


conv_tapwise_grad.defvjp(_conv_tapwise_fwd, _conv_tapwise_bwd)


# How `conv_general_dilated` computes stride-1 kernel gradients: 'auto'
# (tap-wise on the CPU backend, XLA's own form on accelerators, whose conv
# libraries compute kernel gradients directly), 'tapwise' or 'xla'. Read at
# trace time.
KERNEL_GRAD_METHODS = ('auto', 'tapwise', 'xla')
kernel_grad_method = 'auto'
# Narrower convs keep XLA's kernel gradient: with 16-64 channels the per-tap
# products are thin and XLA's form is faster (measured: the tiny demo model's
# train step ~250 -> ~310 ms with every conv tap-wise).
TAPWISE_MIN_CHANNELS = 128
# Kernel gradients contracting at least this many rows (batch x output
# pixels) are computed as two halves (`_conv_tapwise_bwd`); read at trace
# time.
TAPWISE_SPLIT_ROWS = 20_000


def tapwise_grad_wanted() -> bool:
  """Whether stride-1 convs take `conv_tapwise_grad` (`kernel_grad_method`)."""
  check_choice(kernel_grad_method, KERNEL_GRAD_METHODS, 'kernel_grad_method')
  if kernel_grad_method == 'auto':
    return jax.default_backend() == 'cpu'
  return kernel_grad_method == 'tapwise'


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` for `nn.Conv`, tap-wise kernel gradient.

  Stride-1, undilated, ungrouped NHWC/HWIO convs with explicit padding and
  at least `TAPWISE_MIN_CHANNELS` input and output channels take
  `conv_tapwise_grad` on CPU (`tapwise_grad_wanted`); anything else goes to
  `lax.conv_general_dilated` unchanged.
  """
  plain = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  ones = (None, (1, 1), [1, 1])
  if (not tapwise_grad_wanted() or isinstance(padding, str)
      or lhs.ndim != 4 or tuple(window_strides) != (1, 1)
      or lhs_dilation not in ones or rhs_dilation not in ones
      or feature_group_count != 1 or batch_group_count != 1
      or precision is not None or preferred_element_type is not None
      or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC_DIMS)):
    return plain()
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if (any(p < 0 for pair in pads for p in pair)
      or min(rhs.shape[2:]) < TAPWISE_MIN_CHANNELS):
    return plain()
  return conv_tapwise_grad(lhs, rhs, pads)


def check_choice(value: str, choices: Sequence[str], name: str) -> None:
  """Raises ValueError if `value` is not one of `choices`.

  Args:
    value: the configured string.
    choices: the valid strings.
    name: the config field name, used in the error message.

  Raises:
    ValueError: `value` is not in `choices`.
  """
  if value not in choices:
    raise ValueError(f'{name} must be one of {list(choices)}, got {value!r}')


def check_feature_map(feature_map) -> None:
  """Raises ValueError unless `feature_map` is 4-D ([B, h, w, D])."""
  if feature_map.ndim != 4:
    raise ValueError(f'feature_map must be [B, h, w, D], got shape '
                     f'{feature_map.shape}')


def check_channels(channels: Sequence[int], name: str,
                   allow_empty: bool = True) -> None:
  """Raises ValueError unless `channels` is a tuple of positive ints.

  Args:
    channels: the configured channel counts.
    name: the config field name, used in the error message.
    allow_empty: whether an empty tuple is valid.

  Raises:
    ValueError: not a tuple, an entry is not a positive int, or empty when
      `allow_empty` is False.
  """
  if not isinstance(channels, tuple):
    raise ValueError(
        f'{name} must be a tuple of positive ints, got {channels!r} '
        f'({type(channels).__name__})')
  if not allow_empty and not channels:
    raise ValueError(f'{name} must not be empty')
  bad = [c for c in channels
         if isinstance(c, bool) or not isinstance(c, int) or c <= 0]
  if bad:
    raise ValueError(
        f'{name} must hold positive ints, got {channels!r} (bad: {bad})')


def activation_fn(name: str) -> Callable[[Array], Array]:
  """Returns the activation function called `name`.

  Args:
    name: one of `ACTIVATIONS`.

  Returns:
    The elementwise function.

  Raises:
    ValueError: unknown name.
  """
  check_choice(name, tuple(ACTIVATIONS), 'activation')
  return ACTIVATIONS[name]


class ChannelRMSNorm(nn.Module):
  """RMS norm over channels with a learned scale and no bias or centring.

  `y = x * rsqrt(mean_c(x^2) + epsilon) * scale` at each pixel; epsilon sits
  inside the square root, as in the RichHF PyTorch port's `LayerNorm` (a
  T5-style norm applied to NCHW feature maps along dim 1).

  Attributes:
    epsilon: added to the mean square before the reciprocal square root.
    dtype: dtype of the output; the arithmetic is always float32.
  """
  epsilon: float = 1e-8
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Normalises `x` [..., C] over its last axis; returns [..., C]."""
    scale = self.param(
        'scale', nn.with_logical_partitioning(nn.initializers.ones,
                                              CONV_BIAS_AXES),
        (x.shape[-1],), jnp.float32)
    # float32 island: a bf16 mean of squares loses too much precision.
    x32 = x.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * lax.rsqrt(mean_square + self.epsilon) * scale
    return y.astype(self.dtype)


class ChannelLayerNorm(nn.Module):
  """Standard layer norm over channels (centred, learned scale and bias).

  Attributes:
    epsilon: added to the variance before the reciprocal square root.
    dtype: dtype of the output; the arithmetic is always float32.
  """
  epsilon: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Normalises `x` [..., C] over its last axis; returns [..., C]."""
    y = nn.LayerNorm(
        epsilon=self.epsilon,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones,
                                                CONV_BIAS_AXES),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                               CONV_BIAS_AXES),
        name='layer_norm')(x.astype(jnp.float32))
    return y.astype(self.dtype)


def make_norm(norm_type: str, epsilon: float, dtype: DType,
              name: str) -> nn.Module | None:
  """Builds the norm layer for `norm_type`, or None for 'none'.

  Must be called inside a compact method (the layer binds to the caller).

  Args:
    norm_type: one of `NORM_TYPES`.
    epsilon: the norm's epsilon.
    dtype: the output dtype.
    name: the submodule name.

  Returns:
    The norm module, or None when `norm_type` is 'none'.

  Raises:
    ValueError: unknown `norm_type`.
  """
  check_choice(norm_type, NORM_TYPES, 'norm_type')
  if norm_type == 'channel_rms':
    return ChannelRMSNorm(epsilon=epsilon, dtype=dtype, name=name)
  if norm_type == 'layer':
    return ChannelLayerNorm(epsilon=epsilon, dtype=dtype, name=name)
  return None


def conv2d(features: int, kernel_size: int, stride: int, use_bias: bool,
           dtype: DType, name: str) -> nn.Conv:
  """A PyTorch-padded 2-D conv: odd kernel, `kernel_size // 2` on each side.

  Explicit symmetric padding equals PyTorch's `padding=k // 2` for any stride;
  flax's 'SAME' would pad asymmetrically at stride 2 on even inputs.

  Args:
    features: output channels.
    kernel_size: odd square kernel size.
    stride: spatial stride.
    use_bias: whether to add a bias.
    dtype: computation dtype (params stay float32).
    name: the submodule name.

  Returns:
    An `nn.Conv` with logically partitioned kernel `[kh, kw, in, out]` and
    bias `[out]`.
  """
  pad = kernel_size // 2
  return nn.Conv(
      features=features,
      kernel_size=(kernel_size, kernel_size),
      strides=(stride, stride),
      padding=((pad, pad), (pad, pad)),
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      conv_general_dilated=conv_general_dilated,
      kernel_init=nn.with_logical_partitioning(
          nn.initializers.lecun_normal(), CONV_KERNEL_AXES),
      bias_init=nn.with_logical_partitioning(
          nn.initializers.zeros, CONV_BIAS_AXES),
      name=name)


def dense(features: int, use_bias: bool, dtype: DType, name: str) -> nn.Dense:
  """A dense layer with logically partitioned float32 params.

  Args:
    features: output features.
    use_bias: whether to add a bias.
    dtype: computation dtype.
    name: the submodule name.

  Returns:
    An `nn.Dense` with kernel `[in, out]` and bias `[out]`.
  """
  return nn.Dense(
      features=features,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=nn.with_logical_partitioning(
          nn.initializers.lecun_normal(), DENSE_KERNEL_AXES),
      bias_init=nn.with_logical_partitioning(
          nn.initializers.zeros, DENSE_BIAS_AXES),
      name=name)


def transposed_conv_output_size(size: int, kernel_size: int, stride: int,
                                padding: int, output_padding: int) -> int:
  """PyTorch's ConvTranspose2d output length for one spatial axis."""
  return (size - 1) * stride - 2 * padding + kernel_size + output_padding


# How `ConvTranspose2D` computes: sub-pixel phases, or the lhs-dilated conv.
DECONV_METHODS = ('phase', 'dilated')


@dataclasses.dataclass(frozen=True)
class _Phase:
  """One output phase of a transposed conv along one spatial axis.

  Output rows `o = m * stride + phase` (m = 0..rows-1) receive exactly the
  kernel taps `p = first_tap + j * stride` (j = 0..num_taps-1) from input
  rows `m + last_offset - j`; as a correlation over m, input rows
  `[start, start + rows + num_taps - 1)` with `start = last_offset -
  num_taps + 1` and the taps in reverse order.

  Attributes:
    first_tap: the smallest kernel tap landing on this phase.
    num_taps: how many taps land on it (0 when kernel_size < stride).
    start: first input row of the correlation window (may be < 0: zeros).
  """
  first_tap: int
  num_taps: int
  start: int


def _axis_phases(kernel_size: int, stride: int,
                 padding: int) -> list[_Phase]:
  """The `stride` phases of one spatial axis (see `_Phase`).

  From PyTorch's definition, input row a and tap p land on output row
  `o = a * s - pad + p`. Writing `o = m * s + i`, the taps that reach phase
  i are those with `p = (i + pad) mod s` (mod s), and then
  `a = m + (i + pad) // s - j` for tap `p = (i + pad) mod s + j * s`.
  """
  phases = []
  for i in range(stride):
    first_tap = (i + padding) % stride
    num_taps = len(range(first_tap, kernel_size, stride))
    last_offset = (i + padding) // stride
    phases.append(_Phase(first_tap, num_taps, last_offset - num_taps + 1))
  return phases


def conv_transpose_phase(x: Array, kernel: Array, stride: int, padding: int,
                         output_padding: int) -> Array:
  """PyTorch ConvTranspose2d (no bias) as `stride**2` sub-pixel convs.

  Each output phase `(i, j)` (rows `m * s + i`, columns `n * s + j`) is a
  stride-1 correlation of the undilated input with the kernel taps that land
  on it (for k=3, s=2: 2x2, 2x1, 1x2 and 1x1 sub-kernels). The phases are
  computed at `ceil(out / s)` rows and columns each, interleaved
  (depth-to-space) and cropped to the output size.

  Args:
    x: [B, h, w, C_in].
    kernel: [k, k, C_in, C_out], PyTorch's (unflipped) scatter kernel.
    stride: s.
    padding: PyTorch `padding`.
    output_padding: PyTorch `output_padding`.

  Returns:
    [B, H, W, C_out] with H, W from `transposed_conv_output_size`.
  """
  batch, h, w, _ = x.shape
  k, s = kernel.shape[0], stride
  out_h = transposed_conv_output_size(h, k, s, padding, output_padding)
  out_w = transposed_conv_output_size(w, k, s, padding, output_padding)
  rows, cols = -(-out_h // s), -(-out_w // s)  # rows/columns per phase
  phases = _axis_phases(k, s, padding)
  out_features = kernel.shape[-1]

  def window(phase: _Phase, size: int, n: int) -> tuple[int, int, int, int]:
    """Input slice [first, last) of a phase, and its (low, high) padding."""
    start, stop = phase.start, phase.start + size + phase.num_taps - 1
    first, last = max(start, 0), min(stop, n)
    return first, last, first - start, stop - last

  outputs = []  # outputs[i][j]: [B, rows, cols, C_out]
  for pi in phases:
    r0, r1, h_low, h_high = window(pi, rows, h)
    row_outputs = []
    for pj in phases:
      c0, c1, w_low, w_high = window(pj, cols, w)
      if not pi.num_taps or not pj.num_taps or r0 >= r1 or c0 >= c1:
        # No tap (k < s) or no input row reaches this phase.
        row_outputs.append(
            jnp.zeros((batch, rows, cols, out_features), x.dtype))
        continue
      # Taps of this phase, reversed: scatter -> correlation.
      sub = kernel[pi.first_tap::s, pj.first_tap::s][::-1, ::-1]
      row_outputs.append(conv_general_dilated(
          x[:, r0:r1, c0:c1], sub, (1, 1),
          ((h_low, h_high), (w_low, w_high)),
          dimension_numbers=_NHWC_DIMS))
    outputs.append(jnp.stack(row_outputs, axis=3))  # [B, rows, cols, s, C]
  # [B, rows, s, cols, s, C] -> [B, rows * s, cols * s, C]: row m * s + i.
  y = jnp.stack(outputs, axis=2).reshape(batch, rows * s, cols * s,
                                         out_features)
  return y[:, :out_h, :out_w]


def conv_transpose_dilated(x: Array, kernel: Array, stride: int,
                           padding: int, output_padding: int) -> Array:
  """PyTorch ConvTranspose2d (no bias) as one conv of the dilated input.

  The scatter equals a stride-1 correlation of the input dilated by `s`
  (`lhs_dilation`) with the spatially flipped kernel, padded by
  `k - 1 - pad` low and `k - 1 - pad + output_padding` high (what
  `lax.conv_transpose` lowers to). Arguments and result as in
  `conv_transpose_phase`.
  """
  k = kernel.shape[0]
  low = k - 1 - padding
  high = low + output_padding
  return lax.conv_general_dilated(
      x, kernel[::-1, ::-1],
      window_strides=(1, 1),
      padding=((low, high), (low, high)),
      lhs_dilation=(stride, stride),
      dimension_numbers=_NHWC_DIMS)


class ConvTranspose2D(nn.Module):
  """PyTorch `nn.ConvTranspose2d` (dilation 1, groups 1) on NHWC inputs.

  PyTorch's definition: every input pixel (a, b) scatters
  `x[a, b, i] * kernel[p, q, i, o]` to output (a * s - pad + p,
  b * s - pad + q); positions outside [0, out) are dropped, and the output
  length is `(n - 1) * s - 2 * pad + k + output_padding` (the extra
  `output_padding` rows/columns sit at the high end).

  Two computations of it (`method`), equal to float rounding:

  - 'phase' (default, `conv_transpose_phase`): the output splits into
    `s * s` sub-pixel phases, each a stride-1 conv of the undilated input
    with the taps that land on it, interleaved by depth-to-space. It does
    the same FLOPs as the scatter and needs no dilated input.
  - 'dilated' (`conv_transpose_dilated`): one stride-1 conv of the input
    dilated by `s` with the flipped kernel, as `lax.conv_transpose` does.

  On XLA:CPU the forward passes cost about the same, but the kernel
  gradient of the dilated form is pathological. Measured on the `port`
  heatmap head's four deconvs at the paper's 24x24 grid (k=3, s=2, pad=1,
  output_padding=1, batch 1, float32, shared 2-core CPU,
  `benchmarks/deconv.py`), forward + backward, phase vs dilated:
  24->48 (384->768 channels) 0.045 s vs 1.8 s, 48->96 (768->384) 0.19 s vs
  6.4 s, 96->192 (384->384) 0.51 s vs 30 s, 192->384 (384->192) 2.8 s vs
  67 s: 3.5 s against 105 s per head (24-58x per layer). Forward alone the
  two were within 30% either way. A single conv computing every phase as
  `s * s * out` channels over a shared window (zero taps included) ran 2x
  slower than separate phase convs. On accelerators the dilated form may
  win; measure there (`HeatmapHeadConfig.deconv_method` selects it).

  Kernel layout `[kh, kw, in, out]` (the unflipped scatter kernel, whatever
  the method): a PyTorch weight `w` `[in, out, kh, kw]` loads as
  `w.transpose(2, 3, 0, 1)`.

  Attributes:
    features: output channels.
    kernel_size: square kernel size k.
    stride: stride s.
    padding: PyTorch `padding` (cropped from both ends of the full output).
    output_padding: PyTorch `output_padding` (added at the high end); must be
      smaller than `stride`.
    use_bias: whether to add a bias.
    dtype: computation dtype (params stay float32).
    method: one of `DECONV_METHODS` (see above); same params either way.
  """
  features: int
  kernel_size: int = 3
  stride: int = 2
  padding: int = 1
  output_padding: int = 1
  use_bias: bool = True
  dtype: DType = jnp.float32
  method: str = 'phase'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Applies the transposed conv.

    Args:
      x: [B, h, w, C_in].

    Returns:
      [B, H, W, features] with H, W from `transposed_conv_output_size`.

    Raises:
      ValueError: `x` is not 4-D, or the attributes are inconsistent.
    """
    if x.ndim != 4:
      raise ValueError(f'ConvTranspose2D input must be [B, h, w, C], got '
                       f'shape {x.shape}')
    k, s = self.kernel_size, self.stride
    check_choice(self.method, DECONV_METHODS, 'method')
    if k < 1 or s < 1:
      raise ValueError(
          f'kernel_size and stride must be >= 1, got {k} and {s}')
    if not 0 <= self.output_padding < s:
      raise ValueError(
          f'output_padding must be in [0, stride={s}), got '
          f'{self.output_padding}')
    if not 0 <= self.padding:
      raise ValueError(f'padding must be >= 0, got {self.padding}')
    for n in x.shape[1:3]:
      if transposed_conv_output_size(n, k, s, self.padding,
                                     self.output_padding) < 1:
        raise ValueError(
            f'padding={self.padding} leaves no output for an input of '
            f'spatial size {n} (kernel_size={k}, stride={s}, '
            f'output_padding={self.output_padding})')
    kernel = self.param(
        'kernel', nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), CONV_KERNEL_AXES),
        (k, k, x.shape[-1], self.features), jnp.float32)
    conv = (conv_transpose_phase if self.method == 'phase'
            else conv_transpose_dilated)
    y = conv(x.astype(self.dtype), kernel.astype(self.dtype), s,
             self.padding, self.output_padding)
    if self.use_bias:
      bias = self.param(
          'bias', nn.with_logical_partitioning(nn.initializers.zeros,
                                               CONV_BIAS_AXES),
          (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def post_conv(x: Array, order: str, norm: nn.Module | None,
              act: Callable[[Array], Array]) -> Array:
  """Applies the norm and activation that follow a conv, in `order`.

  Args:
    x: the conv output.
    order: one of `POST_CONV_ORDERS`.
    norm: the norm layer, or None (norm steps are skipped).
    act: the activation.

  Returns:
    `x` after the ops.

  Raises:
    ValueError: unknown `order`.
  """
  check_choice(order, POST_CONV_ORDERS, 'order')
  for step in order.split('_'):
    if step == 'norm' and norm is not None:
      x = norm(x)
    elif step == 'act':
      x = act(x)
  return x


def post_conv_needs_norm(order: str) -> bool:
  """Whether `order` applies a norm (so a norm submodule must exist)."""
  return 'norm' in order.split('_')


def lookup_preset(kind: str, presets: Mapping[str, Any], name: str,
                  overrides: Mapping[str, Any]) -> Any:
  """Returns `presets[name]` with fields replaced by `overrides`.

  Raises:
    ValueError: unknown preset name (the message lists the valid ones), or
      an invalid override.
  """
  if name not in presets:
    raise ValueError(f'unknown {kind} preset {name!r}; valid names: '
                     f'{sorted(presets)}')
  return dataclasses.replace(presets[name], **overrides)
