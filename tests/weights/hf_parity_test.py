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
"""Parity with HF transformers' T5 and ViT on golden fixtures (no torch).

The fixtures in tests/testdata/ (random tiny models, inputs, and the HF
outputs) come from tests/testdata/make_parity_fixtures.py. Weights go
through `weights.port`'s HF-name mapping into our modules; outputs must match
to 1e-4 (max abs, float32).
"""

import dataclasses
import json
import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from richhf_jax.models import config as config_lib
from richhf_jax.models import t5
from richhf_jax.models import vit
from richhf_jax.weights import common
from richhf_jax.weights import port

_DATA = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'testdata')
_TOL = 1e-4


def read_fixture(name):
  """(config dict, HF state dict, inputs, outputs) of a fixture file."""
  with np.load(os.path.join(_DATA, name), allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  groups = {g: {k.split('/', 1)[1]: v for k, v in arrays.items()
                if k.startswith(g + '/')}
            for g in ('weights', 'inputs', 'outputs')}
  return (json.loads(str(arrays['config'])), groups['weights'],
          groups['inputs'], groups['outputs'])


def t5_config_from_hf(c):
  """Our T5Config for an HF T5Config dict of the fixtures."""
  v1_0 = c['feed_forward_proj'] == 'relu'
  return config_lib.T5Config(
      vocab_size=c['vocab_size'], emb_dim=c['d_model'],
      num_heads=c['num_heads'], head_dim=c['d_kv'], mlp_dim=c['d_ff'],
      num_encoder_layers=c['num_layers'],
      num_decoder_layers=c['num_decoder_layers'],
      relative_attention_num_buckets=c['relative_attention_num_buckets'],
      relative_attention_max_distance=c['relative_attention_max_distance'],
      layer_norm_epsilon=c['layer_norm_epsilon'],
      # HF 'gated-gelu' is the tanh GELU ('gelu_new'), as ours.
      mlp_activations=('relu',) if v1_0 else ('gelu', 'linear'),
      logits_via_embedding=v1_0)


def vit_config_from_hf(c):
  """Our ViTConfig with HF ViTModel semantics for a fixture's config."""
  return port.hf_vit_config(
      'tiny', image_size=c['image_size'], patch_size=c['patch_size'],
      width=c['hidden_size'], depth=c['num_hidden_layers'],
      num_heads=c['num_attention_heads'], mlp_dim=c['intermediate_size'],
      layernorm_epsilon=c['layer_norm_eps'])


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float32) - b)))


class T5ParityTest(parameterized.TestCase):

  @parameterized.parameters('v1_0', 'v1_1')
  def test_encoder_output_and_logits_match_hf(self, version):
    c, weights, inputs, outputs = read_fixture(f'hf_t5_{version}.npz')
    cfg = t5_config_from_hf(c)
    params = port.t5_params(weights, cfg)
    model = t5.T5Transformer(cfg)
    ids, dec = inputs['input_ids'], inputs['decoder_input_ids']
    self.assertTrue((ids == 0).any(), 'fixture should contain padding')
    encoded = model.apply({'params': params}, ids,
                          method=t5.T5Transformer.encode)
    real = ids > 0  # HF also computes (unused) outputs at padded positions
    self.assertLessEqual(
        _max_diff(np.asarray(encoded)[real],
                  outputs['encoder_output'][real]), _TOL)
    logits = model.apply({'params': params}, ids, dec)
    self.assertEqual(logits.shape, outputs['logits'].shape)
    self.assertLessEqual(_max_diff(logits, outputs['logits']), _TOL)
    # The check can fail: HF logits are far from zero.
    self.assertGreater(np.abs(outputs['logits']).max(), 1.0)

  def test_wrong_variant_does_not_match(self):
    # v1.0 weights read as v1.1 (untied, no logit scaling) must disagree:
    # the tied lm_head alias becomes the untied output layer.
    c, weights, inputs, outputs = read_fixture('hf_t5_v1_0.npz')
    cfg = dataclasses.replace(t5_config_from_hf(c),
                              logits_via_embedding=False)
    params = port.t5_params(weights, cfg)
    logits = t5.T5Transformer(cfg).apply(
        {'params': params}, inputs['input_ids'], inputs['decoder_input_ids'])
    self.assertGreater(_max_diff(logits, outputs['logits']), 0.1)

  def test_scanned_model_matches_too(self):
    c, weights, inputs, outputs = read_fixture('hf_t5_v1_1.npz')
    cfg = t5_config_from_hf(c)
    scan_cfg = dataclasses.replace(cfg, scan=True)
    ids, dec = inputs['input_ids'], inputs['decoder_input_ids']
    model = t5.T5Transformer(scan_cfg)
    abstract = common.abstract_module_params(model, ids, dec)
    params = common.merge_into(abstract, port.t5_params(weights, cfg))
    logits = model.apply({'params': params}, ids, dec)
    self.assertLessEqual(_max_diff(logits, outputs['logits']), _TOL)


class ViTParityTest(absltest.TestCase):

  def test_last_hidden_state_matches_hf(self):
    c, weights, inputs, outputs = read_fixture('hf_vit.npz')
    cfg = vit_config_from_hf(c)
    params = port.vit_params(weights, cfg)
    images = inputs['pixel_values_nchw'].transpose(0, 2, 3, 1)  # NHWC
    tokens, aux = vit.ViT(cfg).apply({'params': params}, images)
    want = outputs['last_hidden_state']  # [B, 1 + h * w, D], class first
    self.assertLessEqual(_max_diff(aux['encoded'], want), _TOL)
    self.assertLessEqual(_max_diff(tokens, want[:, 1:]), _TOL)
    self.assertGreater(np.abs(want).max(), 1.0)

  def test_tanh_gelu_does_not_match(self):
    c, weights, inputs, outputs = read_fixture('hf_vit.npz')
    cfg = dataclasses.replace(vit_config_from_hf(c), gelu_approximate=True)
    params = port.vit_params(weights, cfg)
    _, aux = vit.ViT(cfg).apply(
        {'params': params}, inputs['pixel_values_nchw'].transpose(0, 2, 3, 1))
    self.assertGreater(
        _max_diff(aux['encoded'], outputs['last_hidden_state']), _TOL)


if __name__ == '__main__':
  absltest.main()
