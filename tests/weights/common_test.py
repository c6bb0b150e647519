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
"""Tests for richhf_jax.weights.common."""

import dataclasses

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import test_utils
from richhf_jax.models import vit
from richhf_jax.weights import common


def _random_like(tree, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda x: rng.normal(size=x.shape).astype(np.float32), tree)


class MergeIntoTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = test_utils.tiny_config()
    cls.abstract = common.abstract_params(cls.config)

  def test_replaces_only_the_subtree_and_keeps_dtypes(self):
    params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), self.abstract)
    loaded = _random_like(self.abstract['img'])
    merged = common.merge_into(params, loaded, 'img')
    flat_new, flat_old = common.flatten(merged), common.flatten(params)
    self.assertEqual(set(flat_new), set(flat_old))
    for path, value in common.flatten(loaded).items():
      np.testing.assert_array_equal(flat_new[f'img/{path}'], value)
      self.assertEqual(flat_new[f'img/{path}'].dtype, np.float32)
    # Other subtrees are the very same objects.
    self.assertIs(merged['encoder'], params['encoder'])
    self.assertIsNot(merged['img'], params['img'])

  def test_keeps_logical_partitioning_boxes(self):
    boxed = jax.eval_shape(
        lambda: vit.ViT(self.config.vit).init(
            jax.random.key(0), jnp.zeros((1, 32, 32, 3))))['params']
    loaded = _random_like(nn.meta.unbox(boxed))
    merged = common.merge_into(boxed, loaded)
    leaf = merged['embedding']['kernel']
    self.assertIsInstance(leaf, nn.LogicallyPartitioned)
    self.assertEqual(leaf.names, ('conv_height', 'conv_width', 'conv_in',
                                  'conv_out'))
    np.testing.assert_array_equal(leaf.unbox(), loaded['embedding']['kernel'])

  def test_mismatch_names_every_problem(self):
    loaded = common.flatten(_random_like(self.abstract['img']))
    del loaded['Transformer/encoder_norm/scale']
    loaded['head/kernel'] = np.zeros((64, 10), np.float32)
    loaded['embedding/bias'] = np.zeros((3,), np.float32)
    with self.assertRaises(common.WeightsMismatchError) as ctx:
      common.merge_into(self.abstract, common.unflatten(loaded), 'img',
                        what='my.npz')
    err = ctx.exception
    self.assertEqual(err.missing, ['Transformer/encoder_norm/scale (64,)'])
    self.assertEqual(err.unexpected, ['head/kernel (64, 10)'])
    self.assertEqual(err.misshaped,
                     ['embedding/bias: checkpoint (3,), model (64,)'])
    self.assertIn('my.npz (at img)', str(err))
    self.assertIn('1 missing, 1 unexpected, 1 mis-shaped', str(err))

  def test_unknown_prefix(self):
    with self.assertRaisesRegex(ValueError, "no 'vision'.*'img'"):
      common.merge_into(self.abstract, {}, 'vision')

  def test_stacks_numbered_layers_for_a_scanned_model(self):
    flat_cfg = self.config.vit
    scan_cfg = dataclasses.replace(flat_cfg, scan=True)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)),
                    jnp.float32)
    flat_params = nn.meta.unbox(vit.ViT(flat_cfg).init(
        jax.random.key(1), x))['params']
    scan_abstract = common.abstract_module_params(vit.ViT(scan_cfg), x)
    merged = common.merge_into(scan_abstract, flat_params)
    self.assertIn('encoderblock', merged['Transformer'])
    self.assertEqual(
        merged['Transformer']['encoderblock']['LayerNorm_0']['scale'].shape,
        (flat_cfg.depth, flat_cfg.width))
    want = vit.ViT(flat_cfg).apply({'params': flat_params}, x)[0]
    got = vit.ViT(scan_cfg).apply({'params': merged}, x)[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    # And back: the scanned tree splits into numbered blocks.
    back = common.merge_into(flat_params, merged)
    for path, value in common.flatten(flat_params).items():
      np.testing.assert_array_equal(common.flatten(back)[path], value)


if __name__ == '__main__':
  absltest.main()
