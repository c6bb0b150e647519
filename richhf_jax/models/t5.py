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
"""T5 encoder and decoder stacks with T5X's parameter layout.

Module and parameter names follow T5X `examples/t5/{layers,network}.py`, so a
T5X checkpoint's `target` tree loads by name (`token_embedder`, `encoder`,
`decoder`). As in T5X, dense kernels are stored FLAT and 2-D, e.g. an
attention query kernel is [embed, heads * head_dim] with logical axes
('embed', 'joined_kv') and the output kernel is [heads * head_dim, embed].

T5 semantics kept here: RMS layer norm (no mean subtraction, no bias); no
biases anywhere; no 1/sqrt(head_dim) at compute time (T5X folds it into the
query initializer); relative position biases shared by all layers of a stack
(bidirectional buckets in the encoder, causal in the decoder); tied output
logits scaled by emb_dim**-0.5 (T5.1.0).

Dtype policy: params float32; activations in `config.dtype`; layer norm,
softmax and logits in float32.

Fast decoding keeps a static-shape KV cache in the 'cache' collection: per
self-attention layer `cached_key`, `cached_value` [B, heads, head_dim, L]
(the layout the steps' products read, so no step transposes the cache)
and `cache_index` (as in T5X), and per cross-attention layer the encoder
positions' keys `encoded_key` [B, heads, Lenc, head_dim] and values
`encoded_value` [B, heads, head_dim, Lenc], projected once. Initialise it
by calling the decoder with `decode=True`, the real encoder output,
[B, max_decode_length] tokens and `mutable=['cache']`; then each call with
`decode=True` processes the next
T tokens (one per step, or a block of draft tokens to verify; beam search:
one), writing their keys and values at the cache index and advancing it by
T. A caller may move `cache_index` back to drop rejected tokens (slots past
the index are overwritten before any query can see them), or make it a [B]
vector to keep one position per sequence.
(`split_decode_cache` separates the constant encoder part from the part the
steps update.)

Decoding steps multiply a few rows (batch x tokens) by every weight. On CPU
the product `x @ W` with few rows is slow (XLA:CPU's small-M kernels read
the weights several times), while `W^T @ x^T`, the weight as the left
operand, runs at the speed of one pass over the weight. So the steps may
read their dense kernels from a `STEP_KERNELS` collection of transposed
copies, made once per params by `step_kernels`; given that collection,
`DenseGeneral`, the tied logits and the cached cross-attention compute
weight-major products. The results are the same products (up to summation
order).
"""

import functools
import operator
from typing import Any, Callable, Sequence

from flax import traverse_util
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from richhf_jax.models import config as config_lib

# Cache variables of cross-attention layers: written once by the
# cache-initialising call and only read by decoding steps.
ENCODED_CACHE_NAMES = ('encoded_key', 'encoded_value')

# Collection of the transposed dense kernels decoding steps read (see the
# module docstring and `step_kernels`).
STEP_KERNELS = 'step_kernels'

Array = jax.Array
Initializer = Callable[..., Array]

# Large negative logit for masked attention positions (as in T5X); finite so a
# fully masked row gives a uniform softmax instead of NaN.
_MASK_VALUE = -1e10

_DENSE_INIT = nn.initializers.variance_scaling(1.0, 'fan_in',
                                               'truncated_normal')
_ATTENTION_INIT = nn.initializers.variance_scaling(1.0, 'fan_in', 'normal')
_RELPOS_INIT = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')


def _activation(name: str) -> Callable[[Array], Array]:
  if name == 'linear':
    return lambda x: x
  if name == 'gelu_new':
    return functools.partial(nn.gelu, approximate=True)
  # 'gelu' is flax's nn.gelu (tanh approximation), which T5X uses.
  return getattr(nn, name)


def _canonical_axes(axes: int | Sequence[int], ndim: int) -> tuple[int, ...]:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return tuple(a % ndim for a in axes)


def weight_major_dot(x: Array, weight_t: Array, dtype: Any) -> Array:
  """x [..., K] times a transposed weight [N, K] -> [..., N].

  Computed as weight_t @ x^T ([N, M], M = rows of x) and transposed back.
  The optimization barrier keeps XLA from folding that transpose into the
  product, which would turn it back into x @ W.
  """
  k = x.shape[-1]
  if weight_t.ndim != 2 or weight_t.shape[1] != k:
    raise ValueError(f'weight_major_dot: transposed weight {weight_t.shape} '
                     f'does not contract input features {k} (expected '
                     f'[N, {k}])')
  rows = jnp.reshape(x, (-1, k)).astype(dtype)
  y = lax.dot_general(weight_t.astype(dtype), rows,
                      (((1,), (1,)), ((), ())))  # [N, M]
  y = lax.optimization_barrier(y)
  return jnp.reshape(y.T, x.shape[:-1] + (weight_t.shape[0],))


class DenseGeneral(nn.Module):
  """Bias-free dense layer over trailing axes with a FLAT 2-D kernel (T5X).

  Attributes:
    features: output feature shape (int or tuple).
    kernel_axes: two logical axis names of the flat kernel.
    axis: input axes to contract (trailing ones).
    dtype: computation dtype.
    kernel_init: initializer called with the flat 2-D shape.
  """
  features: int | tuple[int, ...]
  kernel_axes: tuple[str, str]
  axis: int | tuple[int, ...] = -1
  dtype: Any = jnp.float32
  kernel_init: Initializer = _DENSE_INIT

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = ((self.features,) if isinstance(self.features, int)
                else tuple(self.features))
    axes = _canonical_axes(self.axis, x.ndim)
    in_shape = tuple(x.shape[a] for a in axes)
    # The flat shape makes fan_in = prod(in_shape), as in T5X.
    kernel = self.param(
        'kernel', nn.with_logical_partitioning(self.kernel_init,
                                               self.kernel_axes),
        (int(np.prod(in_shape)), int(np.prod(features))), jnp.float32)
    if self.has_variable(STEP_KERNELS, 'kernel'):
      kernel_t = self.get_variable(STEP_KERNELS, 'kernel')
      if (kernel_t.shape != kernel.shape[::-1]
          or axes != tuple(range(x.ndim - len(axes), x.ndim))):
        raise ValueError(
            f'{self.name}: step kernel {kernel_t.shape} is not the transposed '
            f'kernel {kernel.shape[::-1]}, or the contracted axes {axes} of '
            f'input {x.shape} are not its trailing ones')
      flat = jnp.reshape(x, x.shape[:x.ndim - len(axes)] + (-1,))
      y = weight_major_dot(flat, kernel_t, self.dtype)
      return jnp.reshape(y, y.shape[:-1] + features)
    kernel = jnp.reshape(kernel, in_shape + features).astype(self.dtype)
    contract = (axes, tuple(range(len(axes))))
    return lax.dot_general(x.astype(self.dtype), kernel, (contract, ((), ())))


class Embed(nn.Module):
  """Token embedding table (`embedding` [vocab, embed]) with `attend`.

  Attributes:
    num_embeddings: vocabulary size.
    features: embedding width.
    dtype: output dtype ('float32', 'bfloat16' or a jnp dtype).
    embedding_init: initializer (T5X: normal, stddev 1).
  """
  num_embeddings: int
  features: int
  dtype: Any = jnp.float32
  embedding_init: Initializer = nn.initializers.normal(stddev=1.0)

  def setup(self):
    self.embedding = self.param(
        'embedding',
        nn.with_logical_partitioning(self.embedding_init, ('vocab', 'embed')),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, inputs: Array) -> Array:
    """Looks up integer ids [...] -> [..., features]."""
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError(f'Embed expects integer ids, got dtype {inputs.dtype}')
    return jnp.take(self.embedding, inputs, axis=0).astype(self.dtype)

  def attend(self, query: Array, weight_major: bool = False) -> Array:
    """Dot product with every embedding: [..., features] -> [..., vocab].

    weight_major computes table @ query^T (`weight_major_dot`): faster for
    the few rows of a decoding step.
    """
    dtype = jnp.dtype(self.dtype)
    if weight_major:
      return weight_major_dot(query, self.embedding, dtype)
    # Contracts the table's feature axis in place: a transposed [features,
    # vocab] copy of the table would be rebuilt at every decoding step.
    contract = ((query.ndim - 1,), (1,))
    return lax.dot_general(query.astype(dtype), self.embedding.astype(dtype),
                           (contract, ((), ())))


class LayerNorm(nn.Module):
  """T5 RMS layer norm: no mean subtraction, no bias, float32 statistics.

  Attributes:
    epsilon: added to the mean square.
    dtype: output dtype.
  """
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = x.astype(jnp.float32)
    scale = self.param(
        'scale', nn.with_logical_partitioning(nn.initializers.ones_init(),
                                              ('embed',)),
        (x.shape[-1],), jnp.float32)
    mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    y = x * lax.rsqrt(mean_square + self.epsilon) * scale
    return y.astype(self.dtype)


def relative_position_bucket(relative_position: Array,
                             bidirectional: bool = True,
                             num_buckets: int = 32,
                             max_distance: int = 128) -> Array:
  """Maps key-minus-query offsets to T5 relative-position buckets.

  Half the buckets (per direction when bidirectional) hold exact offsets
  0..max_exact-1; the rest cover max_exact..max_distance logarithmically, and
  anything farther shares the last bucket. Bidirectional: keys after the
  query use the upper half of the buckets. Causal: keys after the query all
  fall in bucket 0 (they are masked anyway).

  Args:
    relative_position: int array, key position minus query position.
    bidirectional: encoder (True) or causal decoder (False) bucketing.
    num_buckets: total buckets.
    max_distance: offsets at or beyond this share the last bucket.

  Returns:
    int32 array of bucket ids with the shape of relative_position.
  """
  n = -jnp.asarray(relative_position, jnp.int32)  # query minus key
  ret = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # The epsilon keeps log() finite at n = 0 (the branch is discarded there).
  log_ratio = (jnp.log(n.astype(jnp.float32) / max_exact +
                       np.finfo(np.float32).eps) /
               np.log(max_distance / max_exact))
  val_if_large = max_exact + (log_ratio *
                              (num_buckets - max_exact)).astype(jnp.int32)
  val_if_large = jnp.minimum(val_if_large, num_buckets - 1)
  return ret + jnp.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
  """Per-head learned bias for each relative-position bucket.

  Attributes:
    num_buckets: relative-position buckets.
    max_distance: offsets at or beyond this share the last bucket.
    num_heads: attention heads.
    dtype: output dtype.
  """
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool) -> Array:
    """Returns the bias [1, heads, qlen, klen] for positions 0.. of each."""
    rel = self.param(
        'rel_embedding',
        nn.with_logical_partitioning(_RELPOS_INIT, ('heads', 'relpos_buckets')),
        (self.num_heads, self.num_buckets), jnp.float32)
    relative_position = (np.arange(klen)[None, :] -
                         np.arange(qlen)[:, None])  # [q, k]
    buckets = relative_position_bucket(
        relative_position, bidirectional, self.num_buckets, self.max_distance)
    values = jnp.take(rel, buckets, axis=1)  # [heads, q, k]
    return values[None].astype(self.dtype)


class MultiHeadDotProductAttention(nn.Module):
  """T5X attention: flat-kernel q/k/v/out, additive bias, optional KV cache.

  Attributes:
    config: the T5 configuration.
    cross_attention: attends to the encoder output; with decode=True the
      keys and values of the encoder positions are projected once (by the
      cache-initialising call) and kept in the cache.
  """
  config: config_lib.T5Config
  cross_attention: bool = False

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array,
               mask: Array | None = None, bias: Array | None = None, *,
               decode: bool = False, deterministic: bool = True) -> Array:
    """Attends inputs_q [B, q, D] to inputs_kv [B, k, D].

    Args:
      inputs_q: queries [B, q, D].
      inputs_kv: keys / values [B, k, D]; in cached cross-attention decode
        steps only the initialising call reads it.
      mask: bool, broadcastable to [B, heads, q, k]; True = attend.
      bias: additive bias broadcastable to [B, heads, q, k]; in decode steps
        the full [1, heads, L, L] bias, whose row at the cache index is used.
      decode: use and update the KV cache.
      deterministic: disables attention dropout.

    Returns:
      [B, q, D] in config.dtype.
    """
    cfg = self.config
    dtype = cfg.jnp_dtype
    h, d = cfg.num_heads, cfg.head_dim
    depth_scaling = np.sqrt(d).astype(np.float32)

    def query_init(*args):
      # The 1/sqrt(head_dim) scaling lives in the initial query weights.
      return _ATTENTION_INIT(*args) / depth_scaling

    proj = functools.partial(DenseGeneral, features=(h, d), dtype=dtype,
                             kernel_axes=('embed', 'joined_kv'))
    query = proj(kernel_init=query_init, name='query')(inputs_q)  # [B,q,H,d]
    key_proj = proj(kernel_init=_ATTENTION_INIT, name='key')
    value_proj = proj(kernel_init=_ATTENTION_INIT, name='value')

    if decode and self.cross_attention:
      x = self._cached_cross_attention(query, inputs_kv, key_proj,
                                       value_proj, mask, deterministic)
    else:
      key, value = key_proj(inputs_kv), value_proj(inputs_kv)
      # Keys and values [B, k, H, d]; a decoding step's come from the
      # cache, [B, H, d, k].
      kv_spec = 'bkhd'
      if decode:
        query, key, value, mask, bias, kv_spec = self._use_cache(
            query, key, value, mask, bias)
      if cfg.float32_attention_logits:
        query, key = query.astype(jnp.float32), key.astype(jnp.float32)
      logits = jnp.einsum(f'bqhd,{kv_spec}->bhqk', query, key)
      weights = self._weights(logits, mask, bias, deterministic)
      x = jnp.einsum(f'bhqk,{kv_spec}->bqhd', weights.astype(dtype), value)
    return DenseGeneral(
        features=inputs_q.shape[-1], axis=(-2, -1), dtype=dtype,
        kernel_axes=('joined_kv', 'embed'), kernel_init=_ATTENTION_INIT,
        name='out')(x)  # [B, q, D]

  def _weights(self, logits, mask, bias, deterministic, axis=-1):
    """Bias, mask, float32 softmax over the key `axis` and dropout.

    logits [B, H, q, k] (axis=-1), or [B, H, k, q] with axis=-2 (mask and
    bias then in that layout too).
    """
    cfg = self.config
    logits = logits.astype(jnp.float32)
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, _MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=axis)  # float32
    if not deterministic and cfg.dropout_rate > 0:
      keep = jax.random.bernoulli(self.make_rng('dropout'),
                                  1.0 - cfg.dropout_rate, weights.shape)
      weights = jnp.where(keep, weights / (1.0 - cfg.dropout_rate), 0.0)
    return weights

  def _cached_cross_attention(self, query, inputs_kv, key_proj, value_proj,
                              mask, deterministic):
    """Cross-attention of decode steps over cached encoder keys / values.

    The first (cache-initialising) call projects `inputs_kv` and stores the
    keys as `encoded_key` [B, H, Lenc, d] and the values as `encoded_value`
    [B, H, d, Lenc]: layouts the per-step products read without a transposed
    copy. With the `STEP_KERNELS` collection both products are computed
    weight-major, the cache as the left operand. Later calls
    never project the encoder output again. Their queries may hold G rows
    per cached example (beam search: [B * G, 1, H, d], the beams of an
    example adjacent); the G beams then share the example's keys as G query
    positions, so the cache is not repeated per beam.

    Args:
      query: [N, q, H, d] projected queries (after initialisation q > 1
        only with one row per cached example).
      inputs_kv: the encoder output [B, Lenc, D] (read at initialisation).
      key_proj: the 'key' projection module.
      value_proj: the 'value' projection module.
      mask: None or bool broadcastable to [N, 1, 1, Lenc].
      deterministic: disables attention dropout.

    Returns:
      [N, q, H, d] attention outputs.

    Raises:
      ValueError: if N is not a multiple of the cached batch, or several
        query positions come with several beams per example.
    """
    cfg = self.config
    dtype = cfg.jnp_dtype
    initialized = self.has_variable('cache', 'encoded_key')

    def project(module, axes):
      # [B, Lenc, H, d] -> the cache layout, once.
      return jnp.transpose(module(inputs_kv), axes)

    encoded_key = self.variable('cache', 'encoded_key', project, key_proj,
                                (0, 2, 1, 3))  # [B, H, Lenc, d]
    encoded_value = self.variable('cache', 'encoded_value', project,
                                  value_proj, (0, 2, 3, 1))  # [B, H, d, Lenc]
    key, value = encoded_key.value, encoded_value.value
    b, h, length, d = key.shape
    n, q = query.shape[:2]
    if n % b:
      raise ValueError(
          f'cached cross-attention holds {b} examples; the {n} queries must '
          'be a multiple of it (beams of an example adjacent)')
    g = n // b
    if initialized and q != 1 and g != 1:
      raise ValueError(
          f'decoding {g} beams per example takes one token per call; got {q} '
          'query positions')
    # Beams become query positions of their example: [B, H, G * q, d].
    query = jnp.reshape(query, (b, g * q, h, d)).swapaxes(1, 2)
    if mask is not None and mask.shape[0] == n and g > 1:
      mask = jnp.reshape(mask, (b, g) + mask.shape[1:])
      mask = jnp.reshape(jnp.swapaxes(mask, 1, 2), (b, 1, -1, length))
    if cfg.float32_attention_logits:
      query, key = query.astype(jnp.float32), key.astype(jnp.float32)
    if STEP_KERNELS in self.variables:
      # Weight-major steps: the cache is the left operand of both products
      # and the weights stay key-major [B, H, Lenc, q], the layout the value
      # product reads, so neither products' operands nor outputs are
      # transposed in between.
      if mask is not None:
        mask = jnp.swapaxes(mask, -1, -2)
      logits = jnp.einsum('bhkd,bhqd->bhkq', key, query)
      weights = self._weights(logits, mask, None, deterministic,
                              axis=-2).astype(dtype)
      x = lax.optimization_barrier(
          jnp.einsum('bhdk,bhkq->bhdq', value, weights))
      return jnp.reshape(jnp.transpose(x, (0, 3, 1, 2)), (n, q, h, d))
    logits = jnp.einsum('bhqd,bhkd->bhqk', query, key)
    weights = self._weights(logits, mask, None, deterministic).astype(dtype)
    x = jnp.einsum('bhqk,bhdk->bhqd', weights, value)
    return jnp.reshape(jnp.swapaxes(x, 1, 2), (n, q, h, d))

  def _use_cache(self, query, key, value, mask, bias):
    """Creates the cache (first call) or writes one step into it.

    Returns query, keys, values, mask, bias and the keys' / values' einsum
    spec: 'bkhd' as given (initialising call), 'bhdk' from the cache.
    """
    initialized = self.has_variable('cache', 'cached_key')
    b, length, h, d = key.shape
    cached_key = self.variable('cache', 'cached_key', jnp.zeros,
                               (b, h, d, length), key.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros,
                                 (b, h, d, length), value.dtype)
    cache_index = self.variable('cache', 'cache_index',
                                lambda: jnp.array(0, jnp.int32))
    if not initialized:
      # The initialising call only shapes the cache; its output is unused.
      return query, key, value, mask, bias, 'bkhd'
    b, h, d, length = cached_key.value.shape
    q = query.shape[1]
    if key.shape != (b, q, h, d) or q > length:
      raise ValueError(
          f'decode step key shape {key.shape} does not match the cache '
          f'{cached_key.value.shape} ([B, heads, head_dim, length])')
    # [B, q, H, d] -> [B, H, d, q], written at the cache index.
    key = jnp.transpose(key, (0, 2, 3, 1))
    value = jnp.transpose(value, (0, 2, 3, 1))
    # The caller keeps idx + q <= length (dynamic slices would clamp).
    # idx is a scalar, or [B]: one position per sequence.
    idx = cache_index.value
    if idx.ndim:
      def write(cache, new, i):
        return lax.dynamic_update_slice(cache, new, (0, 0, i))
      key = jax.vmap(write)(cached_key.value, key, idx)
      value = jax.vmap(write)(cached_value.value, value, idx)
    else:
      key = lax.dynamic_update_slice(cached_key.value, key, (0, 0, 0, idx))
      value = lax.dynamic_update_slice(cached_value.value, value,
                                       (0, 0, 0, idx))
    cached_key.value, cached_value.value = key, value
    cache_index.value = idx + q
    # Causality during decoding: query i (at position idx + i) sees the
    # filled slots up to its own position.
    rows = jnp.reshape(idx, (-1, 1, 1)) + jnp.arange(q)[None, :, None]
    step_mask = (jnp.arange(length)[None, None, :] <= rows)[:, None]
    mask = step_mask if mask is None else jnp.logical_and(mask, step_mask)
    if bias is not None:
      if bias.shape[-1] != length:
        raise ValueError(
            f'decode bias covers {bias.shape[-1]} keys but the cache holds '
            f'{length}; pass max_decode_length={length}')
      if idx.ndim:
        bias = jax.vmap(lambda i: lax.dynamic_slice_in_dim(
            bias[0], i, q, axis=-2))(idx)  # [B,H,q,L]
      else:
        bias = lax.dynamic_slice_in_dim(bias, idx, q, axis=-2)  # [1,H,q,L]
    return query, key, value, mask, bias, 'bhdk'


def split_decode_cache(cache: Any) -> tuple[dict, dict]:
  """Splits a decoder 'cache' collection into (encoder part, step part).

  The encoder part (`ENCODED_CACHE_NAMES`, the cross-attention keys and
  values) stays the same through decoding and, in beam search, is shared by
  all beams of an example; the step part (the self-attention KV cache and
  its index) changes every step and follows the beams. A decoding loop can
  keep only the step part in its state and merge the two
  (`merge_decode_cache`) for each call.

  Args:
    cache: the 'cache' collection (a nested mapping).

  Returns:
    (encoder part, step part), nested dicts with the same paths.
  """
  flat = traverse_util.flatten_dict(dict(cache))
  encoder = {k: v for k, v in flat.items() if k[-1] in ENCODED_CACHE_NAMES}
  step = {k: v for k, v in flat.items() if k[-1] not in ENCODED_CACHE_NAMES}
  return (traverse_util.unflatten_dict(encoder),
          traverse_util.unflatten_dict(step))


def step_kernels(decoder_params: Any, dtype: Any = jnp.float32) -> dict:
  """The `STEP_KERNELS` collection for a decoder's params: [..., N, K].

  Every dense kernel a decoding step reads (self-attention, the
  cross-attention query and output, the MLP, untied logits), transposed in
  its last two axes (scanned stacks keep the leading layer axis) and cast to
  `dtype`, under the same paths. The cross-attention key and value kernels
  are left out: only the cache-initialising call, which does not use this
  collection, reads them.

  Args:
    decoder_params: the decoder's params (the 'decoder' subtree).
    dtype: the decoder's computation dtype.

  Returns:
    a nested dict with the same paths as the kernels it holds.
  """
  flat = traverse_util.flatten_dict(dict(nn.meta.unbox(decoder_params)))
  out = {}
  for path, value in flat.items():
    if path[-1] != 'kernel':
      continue
    if ('encoder_decoder_attention' in path
        and path[-2] in ('key', 'value')):
      continue
    out[path] = jnp.swapaxes(jnp.asarray(value), -1, -2).astype(dtype)
  return traverse_util.unflatten_dict(out)


def merge_decode_cache(encoder: Any, step: Any) -> dict:
  """Inverse of `split_decode_cache`: the whole 'cache' collection."""
  flat = traverse_util.flatten_dict(dict(encoder))
  flat.update(traverse_util.flatten_dict(dict(step)))
  return traverse_util.unflatten_dict(flat)


class MlpBlock(nn.Module):
  """T5 feed-forward block: one `wi_{i}` (or `wi`) per activation, then `wo`.

  Attributes:
    config: the T5 configuration.
  """
  config: config_lib.T5Config

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    dtype = cfg.jnp_dtype
    acts = cfg.mlp_activations
    branches = []
    for i, act in enumerate(acts):
      name = 'wi' if len(acts) == 1 else f'wi_{i}'
      y = DenseGeneral(cfg.mlp_dim, ('embed', 'mlp'), dtype=dtype,
                       name=name)(x)  # [B, L, mlp]
      branches.append(_activation(act)(y))
    y = functools.reduce(operator.mul, branches)
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
        y, deterministic=deterministic)
    return DenseGeneral(x.shape[-1], ('mlp', 'embed'), dtype=dtype,
                        name='wo')(y)  # [B, L, D]


def _dropout(cfg: config_lib.T5Config, x: Array, deterministic: bool):
  # Same dropout mask for every position (T5X broadcast_dims=(-2,)).
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
      x, deterministic=deterministic)


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + MLP layer of the T5 encoder.

  Attributes:
    config: the T5 configuration.
  """
  config: config_lib.T5Config

  @nn.compact
  def __call__(self, x: Array, bias: Array, mask: Array,
               deterministic: bool = True) -> tuple[Array, None]:
    cfg = self.config
    norm = functools.partial(LayerNorm, cfg.layer_norm_epsilon,
                             cfg.jnp_dtype)
    y = norm(name='pre_attention_layer_norm')(x)
    y = MultiHeadDotProductAttention(cfg, name='attention')(
        y, y, mask, bias, deterministic=deterministic)
    x = x + _dropout(cfg, y, deterministic)
    y = norm(name='pre_mlp_layer_norm')(x)
    y = MlpBlock(cfg, name='mlp')(y, deterministic)
    x = x + _dropout(cfg, y, deterministic)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    return x, None  # (carry, output) so the layer can be an nn.scan body


class DecoderLayer(nn.Module):
  """Self-attention + cross-attention + MLP layer of the T5 decoder.

  Attributes:
    config: the T5 configuration.
  """
  config: config_lib.T5Config

  @nn.compact
  def __call__(self, x: Array, encoded: Array, bias: Array,
               decoder_mask: Array | None, encoder_decoder_mask: Array,
               deterministic: bool = True, decode: bool = False
               ) -> tuple[Array, None]:
    cfg = self.config
    norm = functools.partial(LayerNorm, cfg.layer_norm_epsilon,
                             cfg.jnp_dtype)
    y = norm(name='pre_self_attention_layer_norm')(x)
    y = MultiHeadDotProductAttention(cfg, name='self_attention')(
        y, y, decoder_mask, bias, decode=decode, deterministic=deterministic)
    x = x + _dropout(cfg, y, deterministic)
    y = norm(name='pre_cross_attention_layer_norm')(x)
    y = MultiHeadDotProductAttention(
        cfg, cross_attention=True, name='encoder_decoder_attention')(
            y, encoded, encoder_decoder_mask, None, decode=decode,
            deterministic=deterministic)
    x = x + _dropout(cfg, y, deterministic)
    y = norm(name='pre_mlp_layer_norm')(x)
    y = MlpBlock(cfg, name='mlp')(y, deterministic)
    x = x + _dropout(cfg, y, deterministic)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    return x, None


def _stack(cfg: config_lib.T5Config, layer_cls, num_layers: int,
           num_broadcast: int, static_argnums: tuple[int, ...],
           variable_axes: dict[str, int]):
  """Returns a constructor for layer i (or the scanned stack, i=None)."""
  if cfg.remat:
    # static_argnums counts `self` as argument 0 (flax convention).
    layer_cls = nn.remat(layer_cls, static_argnums=static_argnums)
  if cfg.scan:
    return nn.scan(
        layer_cls, variable_axes=variable_axes,
        split_rngs={'params': True, 'dropout': True},
        in_axes=(nn.broadcast,) * num_broadcast, length=num_layers,
        metadata_params={nn.PARTITION_NAME: 'layers'})
  return layer_cls


class T5Encoder(nn.Module):
  """T5 encoder over already-embedded inputs (scope 'encoder' in T5X).

  Attributes:
    config: the T5 configuration.
  """
  config: config_lib.T5Config

  @nn.compact
  def __call__(self, embedded: Array, mask: Array, *,
               deterministic: bool = True) -> Array:
    """Encodes a sequence.

    Args:
      embedded: [B, L, D] input embeddings (e.g. image tokens followed by
        embedded text, as RAHF fuses them).
      mask: [B, L], nonzero/True at real positions, 0 at padding.
      deterministic: disables dropout.

    Returns:
      [B, L, D] in config.dtype.

    Raises:
      ValueError: on mismatched shapes.
    """
    cfg = self.config
    if embedded.ndim != 3 or embedded.shape[-1] != cfg.emb_dim:
      raise ValueError(f'T5Encoder expects embedded [B, L, {cfg.emb_dim}], '
                       f'got {embedded.shape}')
    if mask.shape != embedded.shape[:2]:
      raise ValueError(f'T5Encoder mask shape {mask.shape} does not match '
                       f'embedded {embedded.shape[:2]}')
    length = embedded.shape[1]
    bias = RelativePositionBiases(
        cfg.relative_attention_num_buckets,
        cfg.relative_attention_max_distance, cfg.num_heads, cfg.jnp_dtype,
        name='relpos_bias')(length, length, True)  # [1, H, L, L]
    valid = mask.astype(bool)
    attn_mask = valid[:, None, :, None] & valid[:, None, None, :]  # [B,1,L,L]

    x = _dropout(cfg, embedded, deterministic).astype(cfg.jnp_dtype)
    layer = _stack(cfg, EncoderLayer, cfg.num_encoder_layers, 3, (4,),
                   {'params': 0})
    if cfg.scan:
      x, _ = layer(cfg, name='layers')(x, bias, attn_mask, deterministic)
    else:
      for i in range(cfg.num_encoder_layers):
        x, _ = layer(cfg, name=f'layers_{i}')(x, bias, attn_mask,
                                              deterministic)
    x = LayerNorm(cfg.layer_norm_epsilon, cfg.jnp_dtype,
                  name='encoder_norm')(x)
    return _dropout(cfg, x, deterministic)


class T5Decoder(nn.Module):
  """T5 decoder with logits (scope 'decoder' in T5X).

  Attributes:
    config: the T5 configuration.
    shared_embedding: the token embedder (an `Embed`), used for the inputs
      and, with `logits_via_embedding`, for the output layer.
  """
  config: config_lib.T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, encoder_mask: Array,
               decoder_input_tokens: Array, *,
               decoder_positions: Array | None = None,
               deterministic: bool = True, decode: bool = False,
               max_decode_length: int | None = None) -> Array:
    """Computes next-token logits.

    Args:
      encoded: encoder output [B, Lenc, D].
      encoder_mask: [B, Lenc], nonzero at real encoder positions.
      decoder_input_tokens: int [B, T], shifted right (start token 0). With
        decode=True and an initialised cache, the next T tokens, written at
        the cache index (see module docstring).
      decoder_positions: accepted for interface compatibility; relative
        attention needs no absolute positions (the cache index gives the
        position during decoding).
      deterministic: disables dropout.
      decode: use the 'cache' collection (see module docstring).
      max_decode_length: cache length; required when decode=True.

    Returns:
      float32 logits [B, T, vocab].

    Raises:
      ValueError: if decode=True without max_decode_length.
    """
    del decoder_positions  # Relative attention only.
    cfg = self.config
    if decode and max_decode_length is None:
      raise ValueError('T5Decoder(decode=True) needs max_decode_length (the '
                       'cache length)')
    if encoder_mask.shape != encoded.shape[:2]:
      raise ValueError(f'encoder_mask shape {encoder_mask.shape} does not '
                       f'match encoded {encoded.shape[:2]}')
    t = decoder_input_tokens.shape[1]
    length = max_decode_length if decode else t
    bias = RelativePositionBiases(
        cfg.relative_attention_num_buckets,
        cfg.relative_attention_max_distance, cfg.num_heads, cfg.jnp_dtype,
        name='relpos_bias')(length, length, False)  # [1, H, L, L]
    if decode:
      decoder_mask = None  # The cache index masks the future.
    else:
      decoder_mask = jnp.tril(jnp.ones((t, t), bool))[None, None]
    enc_dec_mask = encoder_mask.astype(bool)[:, None, None, :]  # [B,1,1,Le]

    y = self.shared_embedding(decoder_input_tokens.astype(jnp.int32))
    y = _dropout(cfg, y, deterministic).astype(cfg.jnp_dtype)  # [B, T, D]
    layer = _stack(cfg, DecoderLayer, cfg.num_decoder_layers, 6, (6, 7),
                   {'params': 0, 'cache': 0, STEP_KERNELS: 0})
    args = (encoded.astype(cfg.jnp_dtype), bias, decoder_mask, enc_dec_mask,
            deterministic, decode)
    if cfg.scan:
      y, _ = layer(cfg, name='layers')(y, *args)
    else:
      for i in range(cfg.num_decoder_layers):
        y, _ = layer(cfg, name=f'layers_{i}')(y, *args)
    y = LayerNorm(cfg.layer_norm_epsilon, cfg.jnp_dtype,
                  name='decoder_norm')(y)
    y = _dropout(cfg, y, deterministic)
    if cfg.logits_via_embedding:
      # T5.1.0 ties the output layer and rescales by 1/sqrt(d_model).
      logits = self.shared_embedding.attend(
          y, weight_major=decode and STEP_KERNELS in self.variables
      ).astype(jnp.float32)
      logits = logits / np.sqrt(y.shape[-1]).astype(np.float32)
    else:
      logits = DenseGeneral(cfg.vocab_size, ('embed', 'vocab'),
                            dtype=jnp.float32, name='logits_dense')(y)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))


class T5Transformer(nn.Module):
  """Token-level T5 (embedder + encoder + decoder), T5X parameter tree.

  Attributes:
    config: the T5 configuration.
  """
  config: config_lib.T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, cfg.jnp_dtype)
    self.encoder = T5Encoder(cfg)
    self.decoder = T5Decoder(cfg, shared_embedding=self.token_embedder)

  def encode(self, encoder_input_tokens: Array, *,
             deterministic: bool = True) -> Array:
    """int [B, L] (0 = padding) -> encoded [B, L, D]."""
    embedded = self.token_embedder(encoder_input_tokens.astype(jnp.int32))
    return self.encoder(embedded, encoder_input_tokens > 0,
                        deterministic=deterministic)

  def decode(self, encoded: Array, encoder_input_tokens: Array,
             decoder_input_tokens: Array, *, deterministic: bool = True,
             decode: bool = False,
             max_decode_length: int | None = None) -> Array:
    """Decoder logits [B, T, vocab] given the encoder output."""
    return self.decoder(encoded, encoder_input_tokens > 0,
                        decoder_input_tokens, deterministic=deterministic,
                        decode=decode, max_decode_length=max_decode_length)

  def __call__(self, encoder_input_tokens: Array,
               decoder_input_tokens: Array, *, deterministic: bool = True,
               decode: bool = False,
               max_decode_length: int | None = None) -> Array:
    """Teacher-forced logits [B, T, vocab] (float32)."""
    encoded = self.encode(encoder_input_tokens, deterministic=deterministic)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       deterministic=deterministic, decode=decode,
                       max_decode_length=max_decode_length)
