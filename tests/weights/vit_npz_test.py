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
"""Tests for richhf_jax.weights.vit_npz on .npz files written here."""

import dataclasses
import os
import re
import tempfile

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import test_utils
from richhf_jax.models import config as config_lib
from richhf_jax.models import vit
from richhf_jax.weights import common
from richhf_jax.weights import vit_npz

_CFG = config_lib.vit_config('tiny')  # 32 px, patch 8: 4x4 grid, width 64


def _params(cfg, seed=0):
  """Random params of our ViT (every entry nonzero, distinct per seed)."""
  s = cfg.image_size
  abstract = common.abstract_module_params(
      vit.ViT(cfg), jnp.zeros((1, s, s, 3), jnp.float32))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32),
                      abstract)


def _to_vit_jax_names(flat):
  """Our (big_vision) names -> the pre-linen vit_jax names."""
  out = {}
  for k, v in flat.items():
    if k == 'pos_embedding':
      k = 'Transformer/posembed_input/pos_embedding'
    k = re.sub(r'/MultiHeadDotProductAttention_0/',
               '/MultiHeadDotProductAttention_1/', k)
    k = re.sub(r'/LayerNorm_1/', '/LayerNorm_2/', k)
    k = re.sub(r'/MlpBlock_0/', '/MlpBlock_3/', k)
    out[k] = v
  return out


class VitNpzTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()

  def _write(self, flat, name='ckpt.npz'):
    path = os.path.join(self.tmp, name)
    np.savez(path, **flat)
    return path

  def assertTreeEqual(self, got, want):
    got, want = common.flatten(got), common.flatten(want)
    self.assertEqual(sorted(got), sorted(want))
    for k in want:
      np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6,
                                 err_msg=k)

  def test_big_vision_two_tower_file_with_head(self):
    params = _params(_CFG)
    flat = {f'params/img/{k}': v for k, v in common.flatten(params).items()}
    flat['params/img/head/kernel'] = np.ones((64, 10), np.float32)
    flat['params/txt/Embed_0/embedding'] = np.ones((5, 8), np.float32)
    tree = vit_npz.load(self._write(flat), _CFG)
    self.assertTreeEqual(tree, params)

  def test_vit_jax_names_and_class_token_folding(self):
    cfg = dataclasses.replace(_CFG, class_token=True)
    params = _params(cfg)
    flat = common.flatten(params)
    # vit_jax: position embedding has a class-token row and is added after
    # the class token is prepended.
    row0 = np.random.default_rng(5).normal(size=(1, 1, 64)).astype(
        np.float32)
    flat['pos_embedding'] = np.concatenate([row0, flat['pos_embedding']], 1)
    flat['pre_logits/kernel'] = np.ones((64, 64), np.float32)
    tree = vit_npz.load(self._write(_to_vit_jax_names(flat)), cfg)
    want = dict(common.flatten(params))
    want['cls'] = params['cls'] + row0
    self.assertTreeEqual(tree, common.unflatten(want))

  def test_class_token_dropped_when_model_has_none(self):
    cfg = dataclasses.replace(_CFG, class_token=True)
    flat = common.flatten(_params(cfg))
    tree = vit_npz.load(self._write(flat), _CFG)
    self.assertNotIn('cls', tree)
    np.testing.assert_array_equal(tree['pos_embedding'],
                                  flat['pos_embedding'])

  def test_scanned_checkpoint_is_unstacked(self):
    scan_cfg = dataclasses.replace(_CFG, scan=True)
    scanned = _params(scan_cfg, seed=3)
    tree = vit_npz.load(self._write(common.flatten(scanned)), _CFG)
    stack = scanned['Transformer']['encoderblock']
    for i in range(_CFG.depth):
      self.assertTreeEqual(
          tree['Transformer'][f'encoderblock_{i}'],
          jax.tree.map(lambda x, i=i: x[i], stack))

  def test_position_embedding_resampled_to_the_model_grid(self):
    params = _params(_CFG)  # 4x4 grid
    big = dataclasses.replace(_CFG, image_size=64)  # 8x8 grid
    tree = vit_npz.load(self._write(common.flatten(params)), big)
    self.assertEqual(tree['pos_embedding'].shape, (1, 64, 64))
    np.testing.assert_allclose(
        tree['pos_embedding'],
        vit.resample_posemb(params['pos_embedding'], (8, 8)), atol=1e-6)
    # The loaded tree runs in the bigger model.
    x = jnp.zeros((1, 64, 64, 3))
    tokens, _ = vit.ViT(big).apply({'params': tree}, x)
    self.assertEqual(tokens.shape, (1, 64, 64))

  def test_merges_into_the_rahf_tree(self):
    cfg = test_utils.tiny_config()
    model_params = _params(cfg.vit, seed=7)
    tree = vit_npz.load(self._write(common.flatten(model_params)), cfg.vit)
    abstract = common.abstract_params(cfg)
    merged = common.merge_into(abstract, tree, 'img', what='ckpt.npz')
    np.testing.assert_array_equal(merged['img']['pos_embedding'],
                                  model_params['pos_embedding'])
    self.assertIsInstance(merged['encoder']['encoder_norm']['scale'],
                          jax.ShapeDtypeStruct)

  def test_mismatch_lists_missing_and_misshaped(self):
    flat = common.flatten(_params(_CFG))
    del flat['Transformer/encoderblock_1/MlpBlock_0/Dense_0/bias']
    flat['embedding/kernel'] = np.zeros((8, 8, 3, 32), np.float32)
    flat['unknown/thing'] = np.zeros((2,), np.float32)
    with self.assertRaises(common.WeightsMismatchError) as ctx:
      vit_npz.load(self._write(flat), _CFG)
    err = ctx.exception
    self.assertEqual(
        err.missing, ['Transformer/encoderblock_1/MlpBlock_0/Dense_0/bias '
                      '(128,)'])
    self.assertEqual(err.unexpected, ['unknown/thing (2,)'])
    self.assertEqual(err.misshaped, ['embedding/kernel: checkpoint '
                                     '(8, 8, 3, 32), model (8, 8, 3, 64)'])

  def test_missing_class_token_is_reported(self):
    cfg = dataclasses.replace(_CFG, class_token=True)
    with self.assertRaisesRegex(common.WeightsMismatchError,
                                r'missing: cls \(1, 1, 64\)'):
      vit_npz.load(self._write(common.flatten(_params(_CFG))), cfg)

  def test_no_unique_tower(self):
    flat = {f'{t}/{k}': v for t in ('a', 'b')
            for k, v in common.flatten(_params(_CFG)).items()}
    with self.assertRaisesRegex(ValueError, r"candidates \['a/', 'b/'\]"):
      vit_npz.load(self._write(flat), _CFG)
    tree = vit_npz.load(self._write(flat), _CFG, prefix='b')
    self.assertIn('embedding', tree)

  def test_pickled_objects_are_refused(self):
    path = os.path.join(self.tmp, 'obj.npz')
    np.savez(path, x=np.array([{'a': 1}], dtype=object))
    with self.assertRaisesRegex(ValueError, 'allow_pickle'):
      vit_npz.read_npz(path)

  def test_unboxed_values_only(self):
    # The loader's output is plain arrays, never partitioning boxes.
    tree = vit_npz.load(common.flatten(_params(_CFG)), _CFG)
    self.assertFalse(any(isinstance(x, nn.meta.AxisMetadata)
                         for x in jax.tree.leaves(tree)))


if __name__ == '__main__':
  absltest.main()
