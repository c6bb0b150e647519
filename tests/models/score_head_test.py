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
"""Tests for models/score_head.py.

The port check runs a float64 numpy re-statement of the PyTorch port's
`ScorePredictor.forward` (NCHW, PyTorch weight layouts, `flatten(1)`) on the
head's own parameters.
"""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import partitioning
from richhf_jax.models import conv_layers
from richhf_jax.models import score_head

# Port ScorePredictor at D = 768 on a 24x24 grid (biases everywhere):
#   convs + norms: 768->768 5,309,952; 768->384 2,654,976; 384->192 663,936;
#     192->96 166,080; 96->48 41,568; 48->12 5,208   (sum 8,841,720)
#   linears: 12*576*512+512 = 3,539,456; 512*128+128 = 65,664; 128+1 = 129
PORT_SCORE_PARAMS = 12_446_969


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


def _np_port_forward(params, feature_map, config):
  """The port's ScorePredictor.forward on NHWC input; returns [B]."""
  x = np.asarray(feature_map, np.float64).transpose(0, 3, 1, 2)
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  for i, stride in enumerate(config.conv_strides):
    w = p[f'conv_{i}']['kernel'].transpose(3, 2, 0, 1)
    x = _np_conv2d(x, w, p[f'conv_{i}']['bias'], stride)
    var = np.mean(np.square(x), axis=1, keepdims=True)
    x = x / np.sqrt(var + 1e-8) * p[f'norm_{i}']['scale'][None, :, None, None]
    x = np.maximum(x, 0.0)
  x = x.reshape(x.shape[0], -1)   # torch flatten(1): channel-major
  for name in [f'dense_{i}' for i in range(len(config.mlp_dims))]:
    x = np.maximum(x @ p[name]['kernel'] + p[name]['bias'], 0.0)
  x = x @ p['out_dense']['kernel'] + p['out_dense']['bias']
  return (1.0 / (1.0 + np.exp(-x)))[:, 0]


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


class ScoreHeadTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('float32', jnp.float32),
      ('bfloat16', jnp.bfloat16),
  )
  def test_tiny_shape_and_range(self, dtype):
    head = score_head.ScoreHead(
        score_head.get_score_head_config('tiny', dtype=dtype))
    x = _normal((3, 4, 4, 8))
    variables = jax.jit(head.init)(jax.random.key(1), x)
    out = jax.jit(head.apply)(variables, x)
    self.assertEqual(out.shape, (3,))
    self.assertEqual(out.dtype, jnp.float32)
    self.assertTrue(np.all((out >= 0) & (out <= 1)))
    for leaf in jax.tree_util.tree_leaves(nn.unbox(variables)):
      self.assertEqual(leaf.dtype, jnp.float32)

  def test_port_shape_and_param_count(self):
    head = score_head.ScoreHead(score_head.get_score_head_config('port'))
    x = jax.ShapeDtypeStruct((2, 24, 24, 768), jnp.float32)
    variables = jax.eval_shape(head.init, jax.random.key(0), x)
    out = jax.eval_shape(head.apply, variables, x)
    self.assertEqual(out.shape, (2,))
    self.assertEqual(out.dtype, jnp.float32)
    params = nn.unbox(variables)['params']
    self.assertEqual(params['dense_0']['kernel'].shape, (12 * 24 * 24, 512))
    self.assertEqual(
        sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params)),
        PORT_SCORE_PARAMS)

  @parameterized.named_parameters(
      ('port_strides', (1, 1, 1)),
      ('stride_2_on_even_grid', (2, 1, 2)),
  )
  def test_matches_port_forward(self, strides):
    config = score_head.get_score_head_config(
        'port', conv_channels=(8, 4, 2), conv_strides=strides,
        mlp_dims=(16, 8))
    head = score_head.ScoreHead(config)
    x = _normal((2, 6, 6, 8))
    params = _random_params(head, x)
    got = jax.jit(head.apply)({'params': params}, x)
    want = _np_port_forward(jax.device_get(params), np.asarray(x), config)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

  def test_channels_last_flatten_permutes_dense_rows(self):
    first = score_head.get_score_head_config('tiny')
    last = score_head.get_score_head_config('tiny',
                                            flatten_order='channels_last')
    x = _normal((2, 4, 4, 8))
    params = _random_params(score_head.ScoreHead(first), x)
    # tiny: 8 channels on a 2x2 grid after the stride-2 conv.
    kernel = params['dense_0']['kernel']
    permuted = kernel.reshape(8, 2, 2, -1).transpose(1, 2, 0, 3).reshape(
        kernel.shape)
    params_last = dict(params, dense_0=dict(params['dense_0'],
                                            kernel=permuted))
    np.testing.assert_allclose(
        jax.jit(score_head.ScoreHead(first).apply)({'params': params}, x),
        jax.jit(score_head.ScoreHead(last).apply)({'params': params_last}, x),
        atol=1e-6)

  def test_param_names_and_axes(self):
    head = score_head.ScoreHead(score_head.get_score_head_config('tiny'))
    variables = jax.eval_shape(head.init, jax.random.key(0),
                               jnp.ones((1, 4, 4, 8)))
    flat = traverse_util.flatten_dict(variables['params'], sep='/')
    self.assertEqual(sorted(flat), sorted([
        'conv_0/kernel', 'conv_0/bias', 'norm_0/scale',
        'conv_1/kernel', 'conv_1/bias', 'norm_1/scale',
        'dense_0/kernel', 'dense_0/bias', 'out_dense/kernel',
        'out_dense/bias']))
    for path, leaf in flat.items():
      self.assertIsInstance(leaf, nn.LogicallyPartitioned, path)
      partitioning.check_axis_names(leaf.names, path)
      self.assertLen(leaf.names, leaf.value.ndim, path)
      dense = path.startswith(('dense', 'out_dense'))
      if path.endswith('kernel'):
        want = (conv_layers.DENSE_KERNEL_AXES if dense
                else conv_layers.CONV_KERNEL_AXES)
      else:
        want = (conv_layers.DENSE_BIAS_AXES if dense
                else conv_layers.CONV_BIAS_AXES)
      self.assertEqual(leaf.names, want, path)

  def test_gradients_reach_every_param(self):
    head = score_head.ScoreHead(score_head.get_score_head_config('tiny'))
    x = _normal((3, 4, 4, 8))
    target = jnp.array([0.1, 0.5, 0.9])
    params = _random_params(head, x)

    def loss(p):
      return jnp.mean(jnp.square(head.apply({'params': p}, x) - target))

    grads = traverse_util.flatten_dict(jax.jit(jax.grad(loss))(params),
                                       sep='/')
    for path, grad in grads.items():
      self.assertTrue(np.all(np.isfinite(grad)), path)
      self.assertGreater(float(jnp.max(jnp.abs(grad))), 0.0, path)

  def test_port_score_head_config(self):
    self.assertEqual(score_head.port_score_head_config(),
                     score_head.get_score_head_config('port'))
    self.assertEqual(score_head.port_score_head_config(1024).conv_channels,
                     (1024, 512, 256, 128, 64, 16))
    with self.assertRaisesRegex(ValueError, 'multiple of 64'):
      score_head.port_score_head_config(100)

  def test_config_validation(self):
    with self.assertRaisesRegex(ValueError, r"unknown score head preset "
                                r"'huge'; valid names: \['port', 'tiny'\]"):
      score_head.get_score_head_config('huge')
    with self.assertRaisesRegex(ValueError, 'conv_strides must have one'):
      score_head.get_score_head_config('tiny', conv_strides=(1,))
    with self.assertRaisesRegex(ValueError, r"flatten_order must be one of"):
      score_head.get_score_head_config('tiny', flatten_order='nchw')
    with self.assertRaisesRegex(ValueError, r"activation must be one of"):
      score_head.get_score_head_config('tiny', activation='tanh')
    with self.assertRaisesRegex(ValueError, 'dtype'):
      score_head.get_score_head_config('tiny', dtype=jnp.int32)


if __name__ == '__main__':
  absltest.main()
