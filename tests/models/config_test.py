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
"""Tests for richhf_jax.models.config."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized

from richhf_jax.models import config as config_lib


class ViTConfigTest(parameterized.TestCase):

  @parameterized.parameters('tiny', 'B/16', 'L/16', 'So400m/14')
  def test_presets_build(self, name):
    cfg = config_lib.vit_config(name)
    self.assertEqual(cfg.image_size % cfg.patch_size, 0)

  def test_l16_at_384_has_24x24_grid(self):
    cfg = config_lib.vit_config('L/16', image_size=384)
    self.assertEqual(cfg.grid, (24, 24))
    self.assertEqual((cfg.width, cfg.depth, cfg.mlp_dim, cfg.num_heads),
                     (1024, 24, 4096, 16))

  def test_unknown_preset_lists_valid_names(self):
    with self.assertRaisesRegex(ValueError, r"'B/16'.*'tiny'"):
      config_lib.vit_config('huge')

  def test_unknown_override_field(self):
    with self.assertRaisesRegex(ValueError, 'unknown ViT fields.*hidden'):
      config_lib.vit_config('tiny', hidden=3)

  @parameterized.named_parameters(
      ('patch', dict(patch_size=7), 'multiple of patch_size'),
      ('heads', dict(num_heads=3), 'divisible by num_heads'),
      ('posemb', dict(posemb='rope'), 'posemb must be one of'),
      ('dtype', dict(dtype='float16'), 'dtype must be one of'),
      ('dropout', dict(dropout=1.0), 'dropout must be in'),
      ('depth', dict(depth=0), 'depth must be a positive int'),
  )
  def test_invalid_values_raise(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      config_lib.vit_config('tiny', **overrides)

  def test_frozen(self):
    cfg = config_lib.vit_config('tiny')
    with self.assertRaises(dataclasses.FrozenInstanceError):
      cfg.width = 3  # pytype: disable=attribute-error


class T5ConfigTest(parameterized.TestCase):

  @parameterized.parameters('tiny', 't5_1_1_small', 't5_1_1_base',
                            't5_1_1_large', 't5_1_0_base')
  def test_presets_build(self, name):
    cfg = config_lib.t5_config(name)
    self.assertGreater(cfg.vocab_size, 0)

  def test_t5_1_0_base_is_hf_t5_base(self):
    cfg = config_lib.t5_config('t5_1_0_base')
    self.assertEqual(cfg.mlp_activations, ('relu',))
    self.assertTrue(cfg.logits_via_embedding)
    self.assertEqual((cfg.vocab_size, cfg.emb_dim, cfg.mlp_dim),
                     (32128, 768, 3072))

  def test_t5_1_1_is_gated_gelu_untied(self):
    cfg = config_lib.t5_config('t5_1_1_base')
    self.assertEqual(cfg.mlp_activations, ('gelu', 'linear'))
    self.assertFalse(cfg.logits_via_embedding)

  def test_list_activations_become_tuple(self):
    cfg = config_lib.t5_config('tiny', mlp_activations=['relu'])
    self.assertEqual(cfg.mlp_activations, ('relu',))
    hash(cfg)  # Frozen configs must stay hashable (used as module fields).

  def test_unknown_preset_lists_valid_names(self):
    with self.assertRaisesRegex(ValueError, r"t5_1_1_base.*tiny"):
      config_lib.t5_config('t5_xxl')

  @parameterized.named_parameters(
      ('activation', dict(mlp_activations=('tanhh',)), 'mlp_activations'),
      ('empty_acts', dict(mlp_activations=()), 'mlp_activations'),
      ('dtype', dict(dtype='int8'), 'dtype must be one of'),
      ('buckets', dict(relative_attention_num_buckets=2), 'num_buckets'),
      ('vocab', dict(vocab_size=-1), 'vocab_size must be a positive int'),
      ('dropout', dict(dropout_rate=-0.1), 'dropout_rate must be in'),
  )
  def test_invalid_values_raise(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      config_lib.t5_config('tiny', **overrides)


if __name__ == '__main__':
  absltest.main()
