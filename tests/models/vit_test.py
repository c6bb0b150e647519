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
"""Tests for richhf_jax.models.vit."""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import partitioning
from richhf_jax.models import config as config_lib
from richhf_jax.models import vit


def _tiny(**overrides):
  return config_lib.vit_config('tiny', **overrides)


def _abstract_vars(cfg):
  images = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3),
                                jnp.float32)
  return jax.eval_shape(vit.ViT(cfg).init, jax.random.key(0), images)


def _flat(tree):
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): leaf
          for path, leaf in leaves}


def _specs(abstract):
  specs = nn.get_partition_spec(abstract)
  leaves = jax.tree_util.tree_flatten_with_path(
      specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(spec)
          for path, spec in leaves}


_BLOCK = 'params/Transformer/encoderblock_0/'
_EXPECTED_TINY = {
    'params/embedding/kernel': (8, 8, 3, 64),
    'params/embedding/bias': (64,),
    'params/pos_embedding': (1, 16, 64),
    _BLOCK + 'LayerNorm_0/scale': (64,),
    _BLOCK + 'LayerNorm_0/bias': (64,),
    _BLOCK + 'MultiHeadDotProductAttention_0/query/kernel': (64, 4, 16),
    _BLOCK + 'MultiHeadDotProductAttention_0/query/bias': (4, 16),
    _BLOCK + 'MultiHeadDotProductAttention_0/key/kernel': (64, 4, 16),
    _BLOCK + 'MultiHeadDotProductAttention_0/key/bias': (4, 16),
    _BLOCK + 'MultiHeadDotProductAttention_0/value/kernel': (64, 4, 16),
    _BLOCK + 'MultiHeadDotProductAttention_0/value/bias': (4, 16),
    _BLOCK + 'MultiHeadDotProductAttention_0/out/kernel': (4, 16, 64),
    _BLOCK + 'MultiHeadDotProductAttention_0/out/bias': (64,),
    _BLOCK + 'LayerNorm_1/scale': (64,),
    _BLOCK + 'LayerNorm_1/bias': (64,),
    _BLOCK + 'MlpBlock_0/Dense_0/kernel': (64, 128),
    _BLOCK + 'MlpBlock_0/Dense_0/bias': (128,),
    _BLOCK + 'MlpBlock_0/Dense_1/kernel': (128, 64),
    _BLOCK + 'MlpBlock_0/Dense_1/bias': (64,),
    'params/Transformer/encoder_norm/scale': (64,),
    'params/Transformer/encoder_norm/bias': (64,),
}


class ViTTest(parameterized.TestCase):

  def test_tiny_param_tree_is_big_vision_layout(self):
    shapes = {k: v.shape
              for k, v in _flat(nn.meta.unbox(_abstract_vars(_tiny()))).items()}
    expected = dict(_EXPECTED_TINY)
    for name, shape in _EXPECTED_TINY.items():
      if 'encoderblock_0' in name:
        expected[name.replace('encoderblock_0', 'encoderblock_1')] = shape
    self.assertEqual(shapes, expected)

  def test_class_token_and_sincos_change_the_tree(self):
    shapes = _flat(nn.meta.unbox(_abstract_vars(
        _tiny(class_token=True, posemb='sincos2d'))))
    self.assertEqual(shapes['params/cls'].shape, (1, 1, 64))
    self.assertNotIn('params/pos_embedding', shapes)

  @parameterized.named_parameters(('plain', False), ('scan', True))
  def test_every_param_has_known_logical_axes(self, scan):
    abstract = _abstract_vars(_tiny(scan=scan, class_token=True))
    shapes = _flat(nn.meta.unbox(abstract))
    specs = _specs(abstract)
    self.assertEqual(set(specs), set(shapes))
    for name, spec in specs.items():
      self.assertLen(spec, len(shapes[name].shape), name)
      partitioning.check_axis_names(spec, name)
      self.assertNotIn(None, spec, name)
    if scan:
      self.assertEqual(
          specs['params/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel'],
          ('layers', 'embed', 'mlp'))

  def test_vit_l16_param_count(self):
    # ViT-L/16 encoder without classifier head: 303.3M (timm's 304.3M for
    # vit_large_patch16_224 adds the 1000-class head, 1.025M). big_vision adds
    # the position embedding before the class token, so it has 196 rows, not
    # 197: 1024 fewer parameters than the original ViT layout.
    abstract = _abstract_vars(config_lib.vit_config('L/16', class_token=True))
    count = sum(x.size for x in jax.tree.leaves(nn.meta.unbox(abstract)))
    self.assertAlmostEqual(count / 303.3e6, 1.0, delta=0.01)
    self.assertEqual(count, 303_300_608)

  @parameterized.named_parameters(
      ('gap', False, False, 'float32'),
      ('cls_scan_remat', True, True, 'float32'),
      ('bf16', False, False, 'bfloat16'))
  def test_forward_shapes(self, class_token, scan, dtype):
    cfg = _tiny(class_token=class_token, scan=scan, remat=scan, dtype=dtype)
    model = vit.ViT(cfg)
    images = jnp.asarray(
        np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), images)
    tokens, aux = model.apply(variables, images)
    self.assertEqual(tokens.shape, (2, 16, 64))
    self.assertEqual(tokens.dtype, jnp.dtype(dtype))
    self.assertEqual(aux['grid'], (4, 4))
    self.assertEqual(aux['encoded'].shape, (2, 16 + class_token, 64))
    np.testing.assert_array_equal(tokens, aux['encoded'][:, class_token:])
    self.assertEqual(class_token, 'cls' in aux)
    for leaf in jax.tree.leaves(nn.meta.unbox(variables)):
      self.assertEqual(leaf.dtype, jnp.float32)
    self.assertTrue(np.all(np.isfinite(np.asarray(tokens, np.float32))))

  def test_dropout_needs_train(self):
    cfg = _tiny(dropout=0.5)
    model = vit.ViT(cfg)
    images = jnp.zeros((1, 32, 32, 3))
    variables = model.init(jax.random.key(0), images)
    a, _ = model.apply(variables, images)
    b, _ = model.apply(variables, images, train=True,
                       rngs={'dropout': jax.random.key(1)})
    self.assertFalse(np.allclose(a, b))

  def test_wrong_image_shape_raises(self):
    with self.assertRaisesRegex(ValueError, r'\[B, 32, 32, 3\]'):
      vit.ViT(_tiny()).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))

  def test_resample_posemb(self):
    posemb = np.random.RandomState(0).randn(1, 4, 3).astype(np.float32)
    np.testing.assert_array_equal(vit.resample_posemb(posemb, (2, 2)), posemb)
    bigger = vit.resample_posemb(posemb, (4, 4))
    self.assertEqual(bigger.shape, (1, 16, 3))
    # A constant grid stays constant under bilinear resizing.
    const = vit.resample_posemb(np.ones((1, 9, 2)), (5, 5))
    np.testing.assert_allclose(const, 1.0, atol=1e-6)
    # A leading class-token entry is carried over unchanged.
    with_cls = np.concatenate([np.full((1, 1, 3), 7.0), posemb], axis=1)
    out = vit.resample_posemb(with_cls, (3, 3))
    self.assertEqual(out.shape, (1, 10, 3))
    np.testing.assert_array_equal(out[:, 0], with_cls[:, 0])
    with self.assertRaisesRegex(ValueError, 'square grid'):
      vit.resample_posemb(np.zeros((1, 7, 3)), (2, 2))

  def test_sincos_posemb(self):
    pe = np.asarray(vit.posemb_sincos_2d(2, 3, 8))
    self.assertEqual(pe.shape, (1, 6, 8))
    # Position (0, 0): sin(0) = 0 and cos(0) = 1 blocks.
    np.testing.assert_allclose(pe[0, 0], [0, 0, 1, 1, 0, 0, 1, 1])


if __name__ == '__main__':
  absltest.main()
