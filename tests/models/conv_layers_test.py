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
"""Tests of the transposed conv's two methods in models/conv_layers.py.

The sub-pixel ('phase') computation is checked against a float64 numpy
scatter written from PyTorch's definition, and against the lhs-dilated
('dilated') computation in outputs and in gradients with respect to input
and kernel; the tap-wise kernel gradient against XLA's. The other conv
layers are tested in `heatmap_head_test.py`.
"""

from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax.models import conv_layers


def _np_scatter_deconv(x, kernel, stride, padding, output_padding):
  """PyTorch ConvTranspose2d by its definition, NHWC, kernel [k, k, in, out].

  Input pixel (a, b) adds `x[a, b] @ kernel[p, q]` at full-buffer position
  (a * s + p, b * s + q); the output is the buffer from `padding` on, of
  length `(n - 1) * s - 2 * padding + k + output_padding`.
  """
  batch, h, w, _ = x.shape
  k = kernel.shape[0]
  full = np.zeros((batch, (h - 1) * stride + k + output_padding,
                   (w - 1) * stride + k + output_padding, kernel.shape[-1]))
  for a in range(h):
    for b in range(w):
      full[:, a * stride:a * stride + k, b * stride:b * stride + k] += (
          np.einsum('ni,pqio->npqo', x[:, a, b], kernel))
  out_h = (h - 1) * stride - 2 * padding + k + output_padding
  out_w = (w - 1) * stride - 2 * padding + k + output_padding
  return full[:, padding:padding + out_h, padding:padding + out_w]


def _layer(k, s, p, op, method, features=4):
  return conv_layers.ConvTranspose2D(
      features=features, kernel_size=k, stride=s, padding=p,
      output_padding=op, method=method)


def _params(k, c_in, c_out, seed):
  rng = np.random.default_rng(seed)
  return {'kernel': jnp.asarray(rng.standard_normal((k, k, c_in, c_out)),
                                jnp.float32),
          'bias': jnp.asarray(rng.standard_normal((c_out,)), jnp.float32)}


class ConvTransposeTest(parameterized.TestCase):

  # (kernel, stride, padding, output_padding, height, width): the port's
  # deconv, k < s, k not a multiple of s, zero and maximal padding, stride 1,
  # odd and even sizes, a 1-pixel input.
  @parameterized.named_parameters(
      ('port_k3_s2_p1_op1', 3, 2, 1, 1, 4, 5),
      ('k4_s2_p1_op0', 4, 2, 1, 0, 3, 3),
      ('k2_s3_p0_op2', 2, 3, 0, 2, 3, 4),
      ('k1_s2_p0_op1', 1, 2, 0, 1, 2, 3),
      ('k5_s3_p4_op1', 5, 3, 4, 1, 4, 3),
      ('k5_s2_p0_op0', 5, 2, 0, 0, 2, 2),
      ('k3_s1_p2_op0', 3, 1, 2, 0, 5, 4),
      ('k3_s2_p1_op1_single_pixel', 3, 2, 1, 1, 1, 1),
  )
  def test_phase_matches_numpy_scatter(self, k, s, p, op, h, w):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.standard_normal((2, h, w, 3))
    params = _params(k, 3, 4, seed=1)
    got = _layer(k, s, p, op, 'phase').apply(
        {'params': params}, jnp.asarray(x, jnp.float32))
    want = _np_scatter_deconv(
        x, np.asarray(params['kernel'], np.float64), s, p, op) + np.asarray(
            params['bias'], np.float64)
    self.assertEqual(got.shape, want.shape)
    self.assertEqual(
        got.shape[1:3],
        (conv_layers.transposed_conv_output_size(h, k, s, p, op),
         conv_layers.transposed_conv_output_size(w, k, s, p, op)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  @parameterized.named_parameters(
      ('port_k3_s2_p1_op1', 3, 2, 1, 1, 6, 5),
      ('k4_s2_p1_op1', 4, 2, 1, 1, 5, 5),
      ('k2_s3_p1_op2', 2, 3, 1, 2, 4, 3),
      ('k5_s3_p2_op0', 5, 3, 2, 0, 3, 4),
      ('k3_s2_p0_op0', 3, 2, 0, 0, 4, 4),
  )
  def test_phase_matches_dilated_values_and_gradients(self, k, s, p, op, h,
                                                      w):
    rng = np.random.default_rng(k * 100 + s * 10 + p + 7)
    x = jnp.asarray(rng.standard_normal((2, h, w, 5)), jnp.float32)
    params = _params(k, 5, 6, seed=2)
    out_h = conv_layers.transposed_conv_output_size(h, k, s, p, op)
    out_w = conv_layers.transposed_conv_output_size(w, k, s, p, op)
    target = jnp.asarray(rng.standard_normal((2, out_h, out_w, 6)),
                         jnp.float32)

    def run(method):
      layer = _layer(k, s, p, op, method, features=6)

      def loss(params, x):
        y = layer.apply({'params': params}, x)
        return jnp.sum(y * target), y

      (_, y), grads = jax.jit(jax.value_and_grad(
          loss, argnums=(0, 1), has_aux=True))(params, x)
      return y, grads

    y_phase, (gp_phase, gx_phase) = run('phase')
    y_dilated, (gp_dilated, gx_dilated) = run('dilated')

    def check(got, want):
      scale = float(np.max(np.abs(want)))
      self.assertGreater(scale, 0)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)

    check(y_phase, y_dilated)
    check(gx_phase, gx_dilated)
    check(gp_phase['kernel'], gp_dilated['kernel'])
    check(gp_phase['bias'], gp_dilated['bias'])

  def test_methods_share_parameters(self):
    x = jnp.ones((1, 3, 3, 2))
    shapes = {}
    for method in conv_layers.DECONV_METHODS:
      variables = jax.eval_shape(_layer(3, 2, 1, 1, method).init,
                                 jax.random.key(0), x)
      shapes[method] = jax.tree.map(lambda a: (a.shape, a.dtype),
                                    nn.unbox(variables))
      self.assertEqual(
          nn.get_partition_spec(variables)['params']['kernel'],
          jax.sharding.PartitionSpec(*conv_layers.CONV_KERNEL_AXES))
    self.assertEqual(shapes['phase'], shapes['dilated'])
    self.assertEqual(shapes['phase']['params']['kernel'][0], (3, 3, 2, 4))

  def test_phase_keeps_bfloat16(self):
    layer = conv_layers.ConvTranspose2D(features=3, dtype=jnp.bfloat16)
    x = jnp.ones((1, 2, 2, 2), jnp.bfloat16)
    params = _params(3, 2, 3, seed=3)
    y = layer.apply({'params': params}, x)
    self.assertEqual(y.dtype, jnp.bfloat16)
    self.assertEqual(y.shape, (1, 4, 4, 3))

  def test_rejects_unknown_method(self):
    with self.assertRaisesRegex(ValueError, r"method must be one of \['phase'"):
      _layer(3, 2, 1, 1, 'fft').init(jax.random.key(0), jnp.ones((1, 2, 2, 1)))

  def test_rejects_padding_without_output(self):
    # (1 - 1) * 2 - 2 * 2 + 3 + 0 = -1 rows.
    with self.assertRaisesRegex(ValueError, 'padding=2 leaves no output'):
      _layer(3, 2, 2, 0, 'phase').init(jax.random.key(0),
                                       jnp.ones((1, 1, 1, 1)))


class TapwiseKernelGradTest(parameterized.TestCase):

  def _check(self, got, want):
    scale = float(np.max(np.abs(want)))
    self.assertGreater(scale, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)

  @parameterized.named_parameters(
      ('k3_same', (3, 3), ((1, 1), (1, 1))),
      ('k2x1_uneven', (2, 1), ((0, 1), (2, 0))),
      ('k3_valid', (3, 3), ((0, 0), (0, 0))),
  )
  def test_values_and_gradients_equal_xla(self, kernel_hw, padding):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 7, 6, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(kernel_hw + (5, 4)),
                         jnp.float32)
    xla = lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    tapwise = lambda x, k: conv_layers.conv_tapwise_grad(x, k, padding)
    y = xla(x, kernel)
    target = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    grads = {}
    # split_rows=1: the kernel gradient's contraction in two halves.
    for name, f, split_rows in (
        ('xla', xla, None), ('tapwise', tapwise, None),
        ('tapwise_halves', tapwise, 1)):
      with mock.patch.object(
          conv_layers, 'TAPWISE_SPLIT_ROWS',
          split_rows or conv_layers.TAPWISE_SPLIT_ROWS):
        grads[name] = jax.jit(jax.grad(
            lambda x, k, f=f: jnp.sum(f(x, k) * target), argnums=(0, 1)))(
                x, kernel)
    self._check(tapwise(x, kernel), y)
    for name in ('tapwise', 'tapwise_halves'):
      self._check(grads[name][0], grads['xla'][0])
      self._check(grads[name][1], grads['xla'][1])

  def _layer_grads(self, layer, x, method):
    params = layer.init(jax.random.key(1), x)['params']
    params = nn.unbox(params)

    def loss(params, x):
      return jnp.sum(jnp.sin(layer.apply({'params': params}, x)))

    with mock.patch.object(conv_layers, 'kernel_grad_method', method), \
        mock.patch.object(conv_layers, 'TAPWISE_MIN_CHANNELS', 4):
      jaxpr = str(jax.make_jaxpr(loss)(params, x))
      grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    return jaxpr, grads

  @parameterized.named_parameters(
      ('conv', lambda: conv_layers.conv2d(6, 3, 1, True, jnp.float32, 'c'),
       True),
      ('deconv_phase', lambda: conv_layers.ConvTranspose2D(
          features=6, kernel_size=3, stride=2, padding=1, output_padding=1),
       True),
      ('strided_conv_keeps_xla',
       lambda: conv_layers.conv2d(6, 3, 2, True, jnp.float32, 'c'), False),
  )
  def test_layers_take_it_when_asked(self, make_layer, taken):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 6, 5, 4)),
                    jnp.float32)
    layer = make_layer()
    jaxpr_t, (gp_t, gx_t) = self._layer_grads(layer, x, 'tapwise')
    jaxpr_x, (gp_x, gx_x) = self._layer_grads(layer, x, 'xla')
    self.assertEqual('custom_vjp' in jaxpr_t, taken)
    self.assertNotIn('custom_vjp', jaxpr_x)
    self._check(gx_t, gx_x)
    for a, b in zip(jax.tree.leaves(gp_t), jax.tree.leaves(gp_x)):
      self._check(a, b)

  def test_narrow_convs_keep_xla(self):
    layer = conv_layers.conv2d(6, 3, 1, True, jnp.float32, 'c')
    x = jnp.ones((1, 4, 4, 4))
    params = nn.unbox(layer.init(jax.random.key(1), x)['params'])
    with mock.patch.object(conv_layers, 'kernel_grad_method', 'tapwise'):
      jaxpr = str(jax.make_jaxpr(
          lambda p: jnp.sum(layer.apply({'params': p}, x)))(params))
    self.assertNotIn('custom_vjp', jaxpr)  # 4 and 6 channels < 128

  def test_auto_is_cpu_only_and_names_are_checked(self):
    with mock.patch.object(conv_layers, 'kernel_grad_method', 'auto'):
      self.assertEqual(conv_layers.tapwise_grad_wanted(),
                       jax.default_backend() == 'cpu')
    with mock.patch.object(conv_layers, 'kernel_grad_method', 'im2col'):
      with self.assertRaisesRegex(ValueError, 'kernel_grad_method'):
        conv_layers.tapwise_grad_wanted()


if __name__ == '__main__':
  absltest.main()
