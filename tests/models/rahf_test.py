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

from richhf_jax import model as model_lib
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


def _port_wired(**overrides):
  """The tiny config with a ViT class token and the port's wiring."""
  cfg = test_utils.tiny_config(**overrides)
  return dataclasses.replace(
      cfg, vit=dataclasses.replace(cfg.vit, class_token=True),
      **rahf.PORT_WIRING)


class RAHFPortWiringTest(absltest.TestCase):
  """The options that express the PyTorch port's forward pass."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = _port_wired()
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.module, cls.variables = _init(cls.cfg, cls.batch)
    cls.encode = staticmethod(jax.jit(lambda v, b: cls.module.apply(
        v, b['image'], b['encoder_input_tokens'], method=rahf.RAHF.encode)))
    cls.heads = staticmethod(jax.jit(lambda v, e: cls.module.apply(
        v, e, method=rahf.RAHF.predict_heads)))
    cls.encoded, cls.mask = cls.encode(cls.variables, cls.batch)

  def test_wiring_keeps_the_param_tree(self):
    plain = dataclasses.replace(self.cfg, encoder_image_tokens='patches',
                                decoder_attends_to='all',
                                encoder_padding_mask=True)
    _, variables = _init(plain, self.batch)
    self.assertEqual(
        jax.tree.map(jnp.shape, variables),
        jax.tree.map(jnp.shape, self.variables))

  def test_class_token_is_fused_before_the_patches(self):
    n, length = self.cfg.num_image_tokens, self.batch[
        'encoder_input_tokens'].shape[1]
    self.assertEqual(self.cfg.num_encoder_image_tokens, n + 1)
    self.assertEqual(self.cfg.patch_positions, (1, n + 1))
    self.assertEqual(self.encoded.shape, (2, 1 + n + length,
                                          self.cfg.t5.emb_dim))
    # No padding mask: the fake batch's padded last position counts.
    self.assertTrue(bool((self.batch['encoder_input_tokens'] == 0).any()))
    np.testing.assert_array_equal(self.mask, 1)

  def test_heads_read_the_patch_positions_only(self):
    base = self.heads(self.variables, self.encoded)
    cls_changed = self.encoded.at[:, 0].add(1.0)
    out = self.heads(self.variables, cls_changed)
    for k in ('implausibility_heatmap', 'scores'):
      np.testing.assert_array_equal(out[k], base[k])
    last_patch = self.cfg.patch_positions[1] - 1
    out = self.heads(self.variables,
                     self.encoded.at[:, last_patch].add(1.0))
    self.assertGreater(
        float(jnp.abs(out['implausibility_heatmap'] -
                      base['implausibility_heatmap']).max()), 1e-6)

  def test_padding_is_attended_without_the_mask(self):
    longer = dict(self.batch)
    longer['encoder_input_tokens'] = np.pad(
        self.batch['encoder_input_tokens'], ((0, 0), (0, 3)))
    encoded, _ = self.encode(self.variables, longer)
    n = self.cfg.num_encoder_image_tokens
    diff = jnp.abs(encoded[:, :n] - self.encoded[:, :n]).max()
    self.assertGreater(float(diff), 1e-6)

  def test_decoder_reads_the_text_positions_only(self):
    kw, kw_mask = self.module.apply(self.variables, self.encoded, self.mask,
                                    method=rahf.RAHF.keyword_encoding)
    n = self.cfg.num_encoder_image_tokens
    np.testing.assert_array_equal(kw, self.encoded[:, n:])
    self.assertEqual(kw_mask.shape, kw.shape[:2])
    dec = self.batch['decoder_input_tokens']
    out = self.module.apply(self.variables, self.batch['image'],
                            self.batch['encoder_input_tokens'], dec)
    want = self.module.apply(self.variables, kw, kw_mask, dec,
                             method=rahf.RAHF.decode)
    np.testing.assert_allclose(out['logits'], want, atol=1e-5)
    np.testing.assert_allclose(out['encoded'], kw, atol=1e-5)



class RAHFPortWiringAugmentedTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = _port_wired(variant='augmented')
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.module, cls.variables = _init(cls.cfg, cls.batch)
    cls.logits = staticmethod(jax.jit(
        lambda v, img, toks, dec: cls.module.apply(v, img, toks,
                                                   dec)['logits']))

  def test_decoder_reads_the_keyword_slot_text(self):
    b = self.batch
    base = self.logits(self.variables, b['image'], b['encoder_input_tokens'],
                       b['decoder_input_tokens'])
    other = b['encoder_input_tokens'].copy()
    other[:, 0, 0] = other[:, 0, 0] % 100 + 7  # a heatmap task's prompt
    np.testing.assert_array_equal(
        self.logits(self.variables, b['image'], other,
                    b['decoder_input_tokens']), base)
    keyword = b['encoder_input_tokens'].copy()
    keyword[:, -1, 0] = keyword[:, -1, 0] % 100 + 7
    changed = self.logits(self.variables, b['image'], keyword,
                          b['decoder_input_tokens'])
    self.assertGreater(float(jnp.abs(changed - base).max()), 1e-6)

  def test_model_wrapper_decodes_with_the_text_mask(self):
    # The keyword encoding and its mask ([B, L]) fit the cached decoder,
    # beam expansion included, and give the teacher-forced loss.
    model = model_lib.RAHFModel(self.cfg)
    params = self.variables['params']
    _, aux = model.loss_fn(params, self.batch, None)
    out = model.predict_batch(params, self.batch, max_decode_length=4,
                              num_beams=2, return_loss=True)
    self.assertEqual(out['decoded'].shape, (2, 4))
    self.assertEqual(out['scores'].shape, (2, 4))
    np.testing.assert_allclose(out['loss/text'], aux['loss/text'], rtol=1e-5)


class RAHFConfigTest(absltest.TestCase):

  def test_unknown_variant(self):
    with self.assertRaisesRegex(ValueError, 'multihead'):
      dataclasses.replace(test_utils.tiny_config(), variant='multi')

  def test_defaults_are_the_paper_wiring(self):
    cfg = test_utils.tiny_config()
    self.assertEqual(
        (cfg.encoder_image_tokens, cfg.decoder_attends_to,
         cfg.encoder_padding_mask), ('patches', 'all', True))
    self.assertEqual(cfg.num_encoder_image_tokens, cfg.num_image_tokens)
    self.assertEqual(cfg.patch_positions, (0, cfg.num_image_tokens))

  def test_invalid_wiring_is_rejected(self):
    cfg = test_utils.tiny_config()
    for field, value, message in (
        ('encoder_image_tokens', 'cls', "encoder_image_tokens='cls'.*"
         'cls_and_patches'),
        ('decoder_attends_to', 'image', "decoder_attends_to='image'.*text"),
        ('encoder_padding_mask', 1, 'encoder_padding_mask must be a bool')):
      with self.assertRaisesRegex(ValueError, message):
        dataclasses.replace(cfg, **{field: value})
    self.assertFalse(cfg.vit.class_token)
    with self.assertRaisesRegex(ValueError, 'vit.class_token=True'):
      dataclasses.replace(cfg, encoder_image_tokens='cls_and_patches')

  def test_port_augmented_prompts(self):
    self.assertEqual([t for t, _ in rahf.PORT_AUGMENTED_TASKS],
                     [t for t, _ in rahf.AUGMENTED_TASKS])
    prompts = [rahf.augmented_prompt(p, 'a cat')
               for _, p in rahf.PORT_AUGMENTED_TASKS]
    self.assertEqual(prompts[0],
                     '<output> HEATMAP: implausibility </output> a cat')
    self.assertEqual(prompts[5], '<output> SCORE: overall </output> a cat')
    self.assertEqual(prompts[-1], 'a cat')


if __name__ == '__main__':
  absltest.main()
