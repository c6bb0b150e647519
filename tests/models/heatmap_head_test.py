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
"""Tests for models/heatmap_head.py and the layers in models/conv_layers.py.

The port checks run a float64 numpy re-statement of the PyTorch port's
`HeatmapPredictor.forward` (NCHW, PyTorch weight layouts) on the head's own
parameters, converted with the layouts documented in `conv_layers`.
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import partitioning
from richhf_jax.models import conv_layers
from richhf_jax.models import heatmap_head

# Port HeatmapPredictor at D = 768 (all convs and deconvs have biases):
#   conv_layers: 9*768*768+768 + 768 (norm) + 9*768*384+384 + 384
#     = 7,964,928
#   block(in, out) = 9*in*out+out + out + 2*(9*out*out+out) + 2*out
#     (384, 768) 13,275,648; (768, 384) 5,310,720; (384, 384) 3,983,616;
#     (384, 192) 1,328,256
#   last_conv1 9*192*192+192 = 331,968; last_conv2 9*192+1 = 1,729
PORT_HEATMAP_PARAMS = 32_196_865


def _np_conv2d(x, w, b, stride=1):
  """PyTorch Conv2d(padding=k // 2) on NCHW `x`, weight [out, in, kh, kw]."""
  n, _, h, wd = x.shape
  k = w.shape[-1]
  p = k // 2
  xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
  oh = (h + 2 * p - k) // stride + 1
  ow = (wd + 2 * p - k) // stride + 1
  out = np.zeros((n, w.shape[0], oh, ow))
  for i in range(k):
    for j in range(k):
      patch = xp[:, :, i:i + stride * (oh - 1) + 1:stride,
                 j:j + stride * (ow - 1) + 1:stride]
      out += np.einsum('nchw,oc->nohw', patch, w[:, :, i, j])
  return out + b[None, :, None, None]


def _np_conv_transpose2d(x, w, b, stride, padding, output_padding):
  """PyTorch ConvTranspose2d by its definition; weight [in, out, kh, kw].

  Every input pixel scatters its kernel-weighted copy to the stride grid of a
  full buffer; `padding` is cropped from the start and the output length is
  `(n - 1) * stride - 2 * padding + k + output_padding`.
  """
  n, _, h, wd = x.shape
  k = w.shape[-1]
  full = np.zeros((n, w.shape[1], (h - 1) * stride + k + output_padding,
                   (wd - 1) * stride + k + output_padding))
  for a in range(h):
    for c in range(wd):
      full[:, :, a * stride:a * stride + k, c * stride:c * stride + k] += (
          np.einsum('ni,iokl->nokl', x[:, :, a, c], w))
  oh = (h - 1) * stride - 2 * padding + k + output_padding
  ow = (wd - 1) * stride - 2 * padding + k + output_padding
  out = full[:, :, padding:padding + oh, padding:padding + ow]
  return out + b[None, :, None, None]


def _np_rms_norm(x, scale, eps=1e-8):
  """The port's LayerNorm on NCHW `x`: eps inside the sqrt, scale only."""
  var = np.mean(np.square(x), axis=1, keepdims=True)
  return x / np.sqrt(var + eps) * scale[None, :, None, None]


def _relu(x):
  return np.maximum(x, 0.0)


def _torch_conv(p):
  """Flax conv params -> (PyTorch weight [out, in, kh, kw], bias)."""
  return (np.asarray(p['kernel'], np.float64).transpose(3, 2, 0, 1),
          np.asarray(p['bias'], np.float64))


def _torch_deconv(p):
  """ConvTranspose2D params -> (PyTorch weight [in, out, kh, kw], bias)."""
  return (np.asarray(p['kernel'], np.float64).transpose(2, 3, 0, 1),
          np.asarray(p['bias'], np.float64))


def _np_port_forward(params, feature_map, config):
  """The port's HeatmapPredictor.forward on NHWC input; returns [B, H, W]."""
  x = np.asarray(feature_map, np.float64).transpose(0, 3, 1, 2)

  def scale(name, sub=None):
    tree = params[sub] if sub else params
    return np.asarray(tree[name]['scale'], np.float64)

  for i in range(len(config.conv_channels)):
    x = _relu(_np_conv2d(x, *_torch_conv(params[f'conv_{i}'])))
    x = _np_rms_norm(x, scale(f'norm_{i}'))
  for i in range(len(config.upsample_channels)):
    blk = params[f'upsample_{i}']
    x = _np_conv_transpose2d(x, *_torch_deconv(blk['deconv']), 2, 1, 1)
    x = _relu(_np_rms_norm(x, scale('deconv_norm', f'upsample_{i}')))
    identity = x
    x = _np_conv2d(x, *_torch_conv(blk['res_conv_0']))
    x = _relu(_np_rms_norm(x, scale('res_norm_0', f'upsample_{i}')))
    x = _np_conv2d(x, *_torch_conv(blk['res_conv_1']))
    x = _np_rms_norm(x, scale('res_norm_1', f'upsample_{i}'))
    x = _relu(x + identity)
  for i in range(len(config.final_channels)):
    x = _relu(_np_conv2d(x, *_torch_conv(params[f'final_conv_{i}'])))
  x = _np_conv2d(x, *_torch_conv(params['out_conv']))
  return (1.0 / (1.0 + np.exp(-x)))[:, 0]


def _small_port_config(**overrides):
  """The port's op structure with small channel counts."""
  return heatmap_head.get_heatmap_head_config(
      'port', conv_channels=(8, 6), upsample_channels=(8, 6, 6, 4),
      final_channels=(4,), **overrides)


def _normal(shape, seed=0):
  """A float32 N(0, 1) array made in numpy (no RNG compile)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


def _random_params(module, x, seed=1):
  """Random float32 params for `module` on `x`, made in numpy.

  Kernels have std 1/sqrt(fan_in); biases are N(0, 0.1) and norm scales
  1 + N(0, 0.1), so that bias and scale placement matter. Skipping `init`
  and JAX's RNG keeps the tests' compile time (on a shared CPU) small.
  """
  rng = np.random.default_rng(seed)
  abstract = nn.unbox(jax.eval_shape(module.init, jax.random.key(0), x))

  def make(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      value = rng.standard_normal(leaf.shape) / np.sqrt(fan_in)
    else:
      value = (name == 'scale') + 0.1 * rng.standard_normal(leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(make, abstract['params'])


def _conv_macs(config, grid, channels):
  """Multiply-adds of a head's convs on a [grid, grid, channels] input.

  Each conv costs output pixels x k*k x in x out (a transposed conv counted
  at its output resolution, an upper bound of its true cost).
  """
  k2 = config.kernel_size ** 2
  side, c, macs = grid, channels, 0
  for out in config.conv_channels:
    macs, c = macs + side * side * k2 * c * out, out
  for out in config.upsample_channels:
    side *= 2
    residual = 2 * side * side * k2 * out * out if config.residual else 0
    macs, c = macs + side * side * k2 * c * out + residual, out
  for out in config.final_channels + (1,):
    macs, c = macs + side * side * k2 * c * out, out
  return macs


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


class ConvLayersTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('k3_s2_p1_op1', 3, 2, 1, 1),
      ('k4_s2_p1_op0', 4, 2, 1, 0),
      ('k3_s1_p1_op0', 3, 1, 1, 0),
      ('k5_s3_p2_op2', 5, 3, 2, 2),
  )
  def test_conv_transpose_matches_torch_definition(self, k, s, p, op):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)   # NHWC
    w = rng.standard_normal((3, 6, k, k)).astype(np.float32)   # torch layout
    b = rng.standard_normal((6,)).astype(np.float32)
    layer = conv_layers.ConvTranspose2D(
        features=6, kernel_size=k, stride=s, padding=p, output_padding=op)
    params = {'kernel': jnp.asarray(w.transpose(2, 3, 0, 1)),
              'bias': jnp.asarray(b)}
    got = layer.apply({'params': params}, jnp.asarray(x))
    want = _np_conv_transpose2d(
        x.transpose(0, 3, 1, 2).astype(np.float64), w.astype(np.float64),
        b.astype(np.float64), s, p, op).transpose(0, 2, 3, 1)
    self.assertEqual(got.shape, want.shape)
    self.assertEqual(
        got.shape[1],
        conv_layers.transposed_conv_output_size(5, k, s, p, op))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

  def test_conv_transpose_rejects_large_output_padding(self):
    layer = conv_layers.ConvTranspose2D(features=2, stride=2,
                                        output_padding=2)
    with self.assertRaisesRegex(ValueError, 'output_padding'):
      layer.init(jax.random.key(0), jnp.ones((1, 2, 2, 1)))

  @parameterized.parameters(1e-8, 1e-2)
  def test_channel_rms_norm_matches_numpy(self, eps):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[0, 0, 0] = 0.0   # an all-zero pixel exercises the epsilon
    scale = rng.standard_normal((5,)).astype(np.float32)
    norm = conv_layers.ChannelRMSNorm(epsilon=eps)
    got = norm.apply({'params': {'scale': jnp.asarray(scale)}},
                     jnp.asarray(x))
    want = _np_rms_norm(x.transpose(0, 3, 1, 2).astype(np.float64),
                        scale.astype(np.float64), eps).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)

  def test_channel_rms_norm_computes_in_float32(self):
    norm = conv_layers.ChannelRMSNorm(dtype=jnp.bfloat16)
    x = jnp.full((1, 1, 1, 4), 3.0, jnp.bfloat16)
    variables = norm.init(jax.random.key(0), x)
    self.assertEqual(nn.unbox(variables)['params']['scale'].dtype,
                     jnp.float32)
    y = norm.apply(variables, x)
    self.assertEqual(y.dtype, jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(y, np.float32), 1.0, atol=1e-2)


class HeatmapHeadTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('float32', jnp.float32),
      ('bfloat16', jnp.bfloat16),
  )
  def test_tiny_shape_and_range(self, dtype):
    config = heatmap_head.get_heatmap_head_config('tiny', dtype=dtype)
    head = heatmap_head.HeatmapHead(config)
    x = _normal((2, 3, 4, 8))
    variables = jax.jit(head.init)(jax.random.key(1), x)
    out = jax.jit(head.apply)(variables, x)
    self.assertEqual(out.shape, (2, 12, 16))
    self.assertEqual(out.dtype, jnp.float32)
    self.assertTrue(np.all((out >= 0) & (out <= 1)))
    for leaf in jax.tree_util.tree_leaves(nn.unbox(variables)):
      self.assertEqual(leaf.dtype, jnp.float32)

  def test_port_shape_and_param_count(self):
    head = heatmap_head.HeatmapHead(
        heatmap_head.get_heatmap_head_config('port'))
    x = jax.ShapeDtypeStruct((2, 24, 24, 768), jnp.float32)
    variables = jax.eval_shape(head.init, jax.random.key(0), x)
    out = jax.eval_shape(head.apply, variables, x)
    self.assertEqual(out.shape, (2, 384, 384))
    self.assertEqual(out.dtype, jnp.float32)
    self.assertEqual(_count(nn.unbox(variables)), PORT_HEATMAP_PARAMS)

  def test_matches_port_forward(self):
    config = _small_port_config()
    head = heatmap_head.HeatmapHead(config)
    x = _normal((2, 2, 2, 5))
    params = _random_params(head, x)
    got = jax.jit(head.apply)({'params': params}, x)
    want = _np_port_forward(jax.device_get(params), np.asarray(x), config)
    self.assertEqual(got.shape, (2, 32, 32))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

  def test_param_names_and_axes(self):
    head = heatmap_head.HeatmapHead(_small_port_config())
    variables = jax.eval_shape(head.init, jax.random.key(0),
                               jnp.ones((1, 2, 2, 5)))
    flat = traverse_util.flatten_dict(variables['params'], sep='/')
    expected = {
        'kernel': conv_layers.CONV_KERNEL_AXES,
        'bias': conv_layers.CONV_BIAS_AXES,
        'scale': conv_layers.CONV_BIAS_AXES,
    }
    for path, leaf in flat.items():
      self.assertIsInstance(leaf, nn.LogicallyPartitioned, path)
      partitioning.check_axis_names(leaf.names, path)
      self.assertLen(leaf.names, leaf.value.ndim, path)
      self.assertEqual(leaf.names, expected[path.rsplit('/', 1)[-1]], path)
    for path in ('conv_1/kernel', 'norm_1/scale', 'upsample_3/deconv/kernel',
                 'upsample_3/deconv_norm/scale', 'upsample_3/res_conv_1/bias',
                 'upsample_3/res_norm_1/scale', 'final_conv_0/kernel',
                 'out_conv/bias'):
      self.assertIn(path, flat)
    self.assertLen(flat, 2 * 3 + 4 * 9 + 2 + 2)

  def test_output_size_resizes_logits(self):
    base = heatmap_head.get_heatmap_head_config('tiny')
    resized = heatmap_head.get_heatmap_head_config('tiny',
                                                   output_size=(10, 6))
    x = _normal((2, 2, 2, 8))
    params = {'params': _random_params(heatmap_head.HeatmapHead(base), x)}
    small = jax.jit(heatmap_head.HeatmapHead(base).apply)(params, x)  # 8x8
    big = jax.jit(heatmap_head.HeatmapHead(resized).apply)(params, x)
    self.assertEqual(big.shape, (2, 10, 6))
    self.assertTrue(np.all((big >= 0) & (big <= 1)))
    logits = jnp.log(small) - jnp.log1p(-small)
    want = jax.nn.sigmoid(
        jax.image.resize(logits, (2, 10, 6), method='bilinear'))
    np.testing.assert_allclose(big, want, atol=1e-5)

  def test_bilinear_upsample_resizes_logits_by_factor(self):
    base = heatmap_head.get_heatmap_head_config('tiny')
    scaled = heatmap_head.get_heatmap_head_config('tiny',
                                                  bilinear_upsample=3)
    self.assertEqual(scaled.upsample_factor, 12)
    self.assertEqual(scaled.conv_resolution_factor, 4)
    x = _normal((2, 2, 3, 8))
    params = {'params': _random_params(heatmap_head.HeatmapHead(base), x)}
    logits = jax.jit(functools.partial(
        heatmap_head.HeatmapHead(base).apply, return_logits=True))(params, x)
    big = jax.jit(heatmap_head.HeatmapHead(scaled).apply)(params, x)
    self.assertEqual(big.shape, (2, 24, 36))
    want = jax.nn.sigmoid(
        jax.image.resize(logits, (2, 24, 36), method='bilinear'))
    np.testing.assert_allclose(big, want, atol=1e-6)
    # output_size wins over the factor.
    fixed = heatmap_head.get_heatmap_head_config(
        'tiny', bilinear_upsample=3, output_size=(10, 6))
    out = jax.eval_shape(heatmap_head.HeatmapHead(fixed).apply, params, x)
    self.assertEqual(out.shape, (2, 10, 6))

  def test_refine_convs_run_on_resized_features(self):
    config = heatmap_head.get_heatmap_head_config(
        'tiny', bilinear_upsample=3, refine_channels=(4,))
    head = heatmap_head.HeatmapHead(config)
    x = _normal((2, 2, 3, 8))
    params = _random_params(head, x)
    self.assertEqual(params['refine_conv_0']['kernel'].shape, (3, 3, 16, 4))
    self.assertEqual(params['out_conv']['kernel'].shape, (3, 3, 4, 1))
    logits, state = jax.jit(functools.partial(
        head.apply, return_logits=True,
        capture_intermediates=True))({'params': params}, x)
    self.assertEqual(logits.shape, (2, 24, 36))
    # The final conv's activations at 8x12, resized to the output size, then
    # refine conv -> ReLU -> output conv at 24x36.
    feats = jax.nn.relu(state['intermediates']['final_conv_0']['__call__'][0])
    self.assertEqual(feats.shape, (2, 8, 12, 16))
    up = jax.image.resize(feats, (2, 24, 36, 16), method='bilinear')
    refine = conv_layers.conv2d(4, 3, 1, True, jnp.float32, 'r')
    out = conv_layers.conv2d(1, 3, 1, True, jnp.float32, 'o')
    want = out.apply({'params': params['out_conv']}, jax.nn.relu(
        refine.apply({'params': params['refine_conv_0']}, up)))[..., 0]
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
    # Without a resize the refine convs run at the last conv's resolution.
    same = heatmap_head.get_heatmap_head_config('tiny', refine_channels=(4,))
    shape = jax.eval_shape(heatmap_head.HeatmapHead(same).apply,
                           {'params': params}, x)
    self.assertEqual(shape.shape, (2, 8, 12))
    with self.assertRaisesRegex(ValueError, 'refine_channels'):
      heatmap_head.get_heatmap_head_config('tiny', refine_channels=(0,))

  def test_remat_keeps_params_and_outputs(self):
    config = _small_port_config()
    remat = _small_port_config(remat=True)
    x = _normal((2, 2, 2, 5))
    head, head_remat = (heatmap_head.HeatmapHead(config),
                        heatmap_head.HeatmapHead(remat))
    params = _random_params(head, x)
    abstract = jax.eval_shape(head_remat.init, jax.random.key(0), x)
    self.assertEqual(
        jax.tree.map(lambda a: a.shape, nn.unbox(abstract)['params']),
        jax.tree.map(lambda a: a.shape, params))
    target = jnp.asarray(np.random.default_rng(3).uniform(size=(2, 32, 32)))

    def loss(module, p):
      return jnp.mean(jnp.square(module.apply({'params': p}, x) - target))

    grads = jax.jit(jax.grad(functools.partial(loss, head)))(params)
    grads_remat = jax.jit(jax.grad(functools.partial(loss, head_remat)))(
        params)
    for g, gr in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_remat)):
      np.testing.assert_allclose(gr, g, rtol=1e-4, atol=1e-6)

  def test_batch_chunks_keep_params_outputs_and_grads(self):
    # 5 examples in 2 slices: the scan pads the batch; blocks remat inside.
    batch = 5
    config = _small_port_config()
    chunked = _small_port_config(batch_chunks=2, remat=True)
    x = _normal((batch, 2, 2, 5))
    head, head_chunked = (heatmap_head.HeatmapHead(config),
                          heatmap_head.HeatmapHead(chunked))
    params = _random_params(head, x)
    # Init at batch 1 (as the model does) gives the same tree.
    abstract = jax.eval_shape(head_chunked.init, jax.random.key(0), x[:1])
    self.assertEqual(
        jax.tree.map(lambda a: a.shape, nn.unbox(abstract)['params']),
        jax.tree.map(lambda a: a.shape, params))
    target = jnp.asarray(
        np.random.default_rng(3).uniform(size=(batch, 32, 32)))

    def loss(module, p, inputs):
      return jnp.mean(jnp.square(module.apply({'params': p}, inputs) - target))

    full, sliced = (head.apply({'params': params}, x),
                    head_chunked.apply({'params': params}, x))
    # Slice c holds examples c, c + 2, ... (the batch padded to 6): the
    # unsliced head on those same slices gives the same values.
    padded = jnp.pad(x, [(0, 1), (0, 0), (0, 0), (0, 0)])
    per_slice = jnp.zeros((6, 32, 32)).at[0::2].set(
        head.apply({'params': params}, padded[0::2])).at[1::2].set(
            head.apply({'params': params}, padded[1::2]))[:batch]
    np.testing.assert_allclose(sliced, per_slice, rtol=1e-5, atol=1e-6)
    # Against the whole batch at once, equal up to float32 summation order,
    # which depends on the batch the convs see and on the CPU (2.4e-5
    # relative on a 2-core AMD EPYC).
    np.testing.assert_allclose(sliced, full, rtol=1e-4, atol=1e-6)
    grad = jax.grad(functools.partial(loss, head), argnums=(0, 1))
    grad_chunked = jax.jit(jax.grad(functools.partial(loss, head_chunked),
                                    argnums=(0, 1)))
    # The slices run in a loop: one slice's activations at a time.
    self.assertIn('stablehlo.while', grad_chunked.lower(params, x).as_text())
    for g, gc in zip(jax.tree.leaves(jax.jit(grad)(params, x)),
                     jax.tree.leaves(grad_chunked(params, x))):
      np.testing.assert_allclose(gc, g, rtol=1e-4, atol=1e-6)

  def test_deconv_methods_agree(self):
    # Same parameters and outputs whichever way the deconvs compute.
    x = _normal((2, 2, 3, 5))
    heads = [heatmap_head.HeatmapHead(_small_port_config(deconv_method=m))
             for m in ('phase', 'dilated')]
    params = _random_params(heads[0], x)
    abstract = jax.eval_shape(heads[1].init, jax.random.key(0), x)
    self.assertEqual(
        jax.tree.map(lambda a: a.shape, nn.unbox(abstract)['params']),
        jax.tree.map(lambda a: a.shape, params))
    phase, dilated = (head.apply({'params': params}, x, return_logits=True)
                      for head in heads)
    self.assertEqual(phase.shape, (2, 32, 48))
    np.testing.assert_allclose(phase, dilated, rtol=1e-4, atol=1e-5)

  def test_efficient_preset_shape_and_cost(self):
    port = heatmap_head.get_heatmap_head_config('port')
    efficient = heatmap_head.get_heatmap_head_config('efficient')
    self.assertEqual(efficient.upsample_factor, port.upsample_factor)
    self.assertEqual(efficient.conv_resolution_factor, 4)
    x = jax.ShapeDtypeStruct((1, 24, 24, 768), jnp.float32)
    costs = {}
    for name, config in (('port', port), ('efficient', efficient)):
      head = heatmap_head.HeatmapHead(config)
      variables = jax.eval_shape(head.init, jax.random.key(0), x)
      out = jax.eval_shape(head.apply, variables, x)
      self.assertEqual(out.shape, (1, 384, 384), name)
      costs[name] = _conv_macs(config, 24, 768)
    self.assertGreater(costs['port'], 10 * costs['efficient'])

  def test_gradients_reach_every_param(self):
    head = heatmap_head.HeatmapHead(
        heatmap_head.get_heatmap_head_config('tiny'))
    x = _normal((2, 2, 2, 8))
    target = jnp.asarray(np.random.default_rng(2).uniform(size=(2, 8, 8)))
    params = _random_params(head, x)

    def loss(p):
      return jnp.mean(jnp.square(head.apply({'params': p}, x) - target))

    grads = traverse_util.flatten_dict(jax.jit(jax.grad(loss))(params),
                                       sep='/')
    for path, grad in grads.items():
      self.assertTrue(np.all(np.isfinite(grad)), path)
      self.assertGreater(float(jnp.max(jnp.abs(grad))), 0.0, path)

  def test_layer_norm_and_no_norm_variants(self):
    x = jnp.ones((1, 2, 2, 4))
    for norm_type, norm_params in (('layer', {'scale', 'bias'}),
                                   ('none', set())):
      head = heatmap_head.HeatmapHead(heatmap_head.get_heatmap_head_config(
          'tiny', norm_type=norm_type, norm_epsilon=1e-6))
      variables = jax.eval_shape(head.init, jax.random.key(0), x)
      names = {path[-1] for path in
               traverse_util.flatten_dict(variables['params'])}
      self.assertEqual(names, {'kernel', 'bias'} | norm_params, norm_type)
      out = jax.eval_shape(head.apply, variables, x)
      self.assertEqual(out.shape, (1, 8, 8))

  def test_config_validation(self):
    with self.assertRaisesRegex(ValueError, r"unknown heatmap head preset "
                                r"'huge'; valid names: \['efficient', 'port', "
                                r"'tiny'\]"):
      heatmap_head.get_heatmap_head_config('huge')
    with self.assertRaisesRegex(ValueError, r"norm_type must be one of "
                                r"\['channel_rms', 'layer', 'none'\]"):
      heatmap_head.get_heatmap_head_config('tiny', norm_type='batch')
    with self.assertRaisesRegex(ValueError, 'kernel_size'):
      heatmap_head.get_heatmap_head_config('tiny', kernel_size=4)
    with self.assertRaisesRegex(ValueError, 'upsample_channels'):
      heatmap_head.get_heatmap_head_config('tiny', upsample_channels=[4])
    with self.assertRaisesRegex(ValueError, 'output_size'):
      heatmap_head.get_heatmap_head_config('tiny', output_size=(4, 4, 4))
    with self.assertRaisesRegex(ValueError, 'upsample_order'):
      heatmap_head.get_heatmap_head_config('tiny', upsample_order='act_act')
    with self.assertRaisesRegex(ValueError, 'bilinear_upsample must be a '
                                'positive int, got 0'):
      heatmap_head.get_heatmap_head_config('tiny', bilinear_upsample=0)
    with self.assertRaisesRegex(ValueError, 'batch_chunks must be a '
                                'positive int, got 0'):
      heatmap_head.get_heatmap_head_config('tiny', batch_chunks=0)
    with self.assertRaisesRegex(ValueError, 'remat must be a bool'):
      heatmap_head.get_heatmap_head_config('tiny', remat='yes')
    with self.assertRaisesRegex(ValueError, r"deconv_method must be one of "
                                r"\['phase', 'dilated'\]"):
      heatmap_head.get_heatmap_head_config('tiny', deconv_method='fft')

  def test_rejects_non_4d_input(self):
    head = heatmap_head.HeatmapHead(
        heatmap_head.get_heatmap_head_config('tiny'))
    with self.assertRaisesRegex(ValueError, r'feature_map must be \[B, h, w'):
      head.init(jax.random.key(0), jnp.ones((2, 4, 8)))


if __name__ == '__main__':
  absltest.main()
