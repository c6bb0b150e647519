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
"""Tests for the RAHF composer (both variants)."""

import dataclasses

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import test_utils
from richhf_jax.models import rahf
from richhf_jax.models import vit


def _init(cfg, batch):
  module = rahf.RAHF(cfg)
  variables = module.init(
      jax.random.key(0), batch['image'], batch['encoder_input_tokens'],
      batch['decoder_input_tokens'])
  return module, nn.meta.unbox(variables)


class RAHFMultiheadTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = test_utils.tiny_config()
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.module, cls.variables = _init(cls.cfg, cls.batch)
    cls.apply = staticmethod(jax.jit(lambda v, b: cls.module.apply(
        v, b["image"], b["encoder_input_tokens"], b["decoder_input_tokens"])))
    cls.out = cls.apply(cls.variables, cls.batch)

  def test_param_tree_top_level(self):
    self.assertEqual(
        set(self.variables['params']),
        {'img', 'img_projection', 'token_embedder', 'encoder', 'decoder',
         'heatmap_implausibility', 'heatmap_misalignment',
         'score_plausibility', 'score_alignment', 'score_aesthetics',
         'score_overall'})

  def test_output_shapes_and_ranges(self):
    h, w = self.cfg.heatmap_size
    self.assertEqual((h, w), (16, 16))  # 4x4 grid, two upsampling blocks.
    for k in rahf.HEATMAP_TYPES:
      hm = self.out[f'{k}_heatmap']
      self.assertEqual(hm.shape, (2, h, w))
      self.assertEqual(hm.dtype, jnp.float32)
      self.assertTrue(bool(jnp.all((hm >= 0) & (hm <= 1))))
    self.assertEqual(self.out['scores'].shape, (2, 4))
    self.assertEqual(self.out['logits'].shape,
                     (2, 7, self.cfg.t5.vocab_size))
    n = self.cfg.num_image_tokens
    self.assertEqual(self.out['encoded'].shape,
                     (2, n + 6, self.cfg.t5.emb_dim))

  def test_text_informs_image_tokens(self):
    # Fusion: the image feature map (and hence heatmaps) depends on the prompt.
    b2 = dict(self.batch)
    b2['encoder_input_tokens'] = self.batch['encoder_input_tokens'].copy()
    b2['encoder_input_tokens'][:, 0] = (
        b2['encoder_input_tokens'][:, 0] % 100) + 5
    out2 = self.apply(self.variables, b2)
    n = self.cfg.num_image_tokens
    diff = jnp.abs(out2['encoded'][:, :n] - self.out['encoded'][:, :n]).max()
    self.assertGreater(float(diff), 1e-6)

  def test_padded_prompt_positions_are_ignored(self):
    b2 = dict(self.batch)
    toks = self.batch['encoder_input_tokens'].copy()
    toks[:, -1] = 0  # already pad; now also change what sits after it
    b2['encoder_input_tokens'] = toks
    b3 = dict(b2)
    toks3 = toks.copy()
    toks3 = np.concatenate([toks3, np.zeros((2, 3), np.int32)], axis=1)
    b3['encoder_input_tokens'] = toks3
    o2 = self.apply(self.variables, b2)
    o3 = jax.jit(lambda v, b: self.module.apply(
        v, b['image'], b['encoder_input_tokens'],
        b['decoder_input_tokens']))(self.variables, b3)
    np.testing.assert_allclose(o2['scores'], o3['scores'], atol=1e-5)
    np.testing.assert_allclose(o2['logits'], o3['logits'], atol=1e-4)

  def test_wrong_token_rank_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'expects rank 2'):
      self.module.apply(self.variables, self.batch['image'],
                        self.batch['encoder_input_tokens'][:, None])


class RAHFAugmentedTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = test_utils.tiny_config(variant='augmented')
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.module, cls.variables = _init(cls.cfg, cls.batch)

  def test_param_tree_has_shared_heads(self):
    params = self.variables['params']
    self.assertIn('heatmap', params)
    self.assertIn('score', params)
    self.assertNotIn('heatmap_implausibility', params)

  def test_vit_runs_once_for_all_task_prompts(self):
    calls = []

    def count(next_fun, args, kwargs, context):
      if isinstance(context.module, vit.ViT) and (
          context.method_name == '__call__'):
        calls.append(args[0].shape)
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(count):
      out = self.module.apply(
          self.variables, self.batch['image'],
          self.batch['encoder_input_tokens'],
          self.batch['decoder_input_tokens'])
    self.assertEqual(calls, [self.batch['image'].shape])
    h, w = self.cfg.heatmap_size
    self.assertEqual(out['implausibility_heatmap'].shape, (2, h, w))
    self.assertEqual(out['scores'].shape, (2, 4))
    self.assertEqual(out['logits'].shape[:2], (2, 7))

  def test_task_prompt_selects_output(self):
    # Changing only the 'plausibility score' prompt changes only that score.
    b2 = dict(self.batch)
    toks = self.batch['encoder_input_tokens'].copy()
    toks[:, 2, 0] = (toks[:, 2, 0] % 100) + 7
    b2['encoder_input_tokens'] = toks
    o1 = self.module.apply(self.variables, self.batch['image'],
                           self.batch['encoder_input_tokens'])
    o2 = self.module.apply(self.variables, b2['image'],
                           b2['encoder_input_tokens'])
    delta = np.abs(np.asarray(o1['scores']) - np.asarray(o2['scores']))
    self.assertGreater(delta[:, 0].max(), 0)
    np.testing.assert_array_equal(delta[:, 1:], 0)
    np.testing.assert_array_equal(o1['implausibility_heatmap'],
                                  o2['implausibility_heatmap'])

  def test_wrong_task_count_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'task prompts per image'):
      self.module.apply(self.variables, self.batch['image'],
                        self.batch['encoder_input_tokens'][:, :3])


class RAHFConfigTest(absltest.TestCase):

  def test_unknown_variant(self):
    with self.assertRaisesRegex(ValueError, 'multihead'):
      dataclasses.replace(test_utils.tiny_config(), variant='multi')


if __name__ == '__main__':
  absltest.main()
