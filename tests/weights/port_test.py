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
"""Tests for richhf_jax.weights.port (the PyTorch port's state dict).

`port_tiny.safetensors` (written by the safetensors package, see
tests/testdata/make_parity_fixtures.py) has the port's state-dict names for a
tiny model; `port_tiny_heads.npz` has the port-layout heads' outputs (torch)
on a fixed feature map; `port_tiny_forward.npz` has the port's whole forward
pass (both variants) with those weights on an image and token ids.
"""

import dataclasses
import importlib.util
import json
import os
import re
import struct
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import ml_dtypes
import numpy as np

from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.models import score_head
from richhf_jax.weights import common
from richhf_jax.weights import info
from richhf_jax.weights import port

_DATA = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'testdata')
_SAFETENSORS = os.path.join(_DATA, 'port_tiny.safetensors')
_FORWARD = os.path.join(_DATA, 'port_tiny_forward.npz')
_TOL = 1e-4


def tiny_port_config(variant='multihead'):
  """The tiny config the fixture was made for (see make_parity_fixtures)."""
  with np.load(os.path.join(_DATA, 'port_tiny_heads.npz'),
               allow_pickle=False) as data:
    c = json.loads(str(data['config']))
  v, t, hm, sc = c['vit'], c['t5'], c['heatmap'], c['score']
  return rahf.RAHFConfig(
      vit=port.hf_vit_config(
          'tiny', image_size=v['image_size'], patch_size=v['patch_size'],
          width=v['hidden_size'], depth=v['num_hidden_layers'],
          num_heads=v['num_attention_heads'], mlp_dim=v['intermediate_size']),
      t5=config_lib.t5_config(
          'tiny', vocab_size=t['vocab_size'], emb_dim=t['d_model'],
          num_heads=t['num_heads'], head_dim=t['d_kv'], mlp_dim=t['d_ff'],
          num_encoder_layers=t['num_layers'],
          num_decoder_layers=t['num_decoder_layers'],
          mlp_activations=('relu',), logits_via_embedding=True),
      heatmap_head=heatmap_head.HeatmapHeadConfig(
          conv_channels=tuple(hm['conv_channels']),
          upsample_channels=tuple(hm['upsample_channels']),
          final_channels=(hm['final_channels'],)),
      score_head=score_head.ScoreHeadConfig(
          conv_channels=tuple(sc['conv_channels']),
          conv_strides=(1,) * len(sc['conv_channels']),
          mlp_dims=tuple(sc['mlp_dims'])),
      variant=variant)


def single_head_state_dict(sd):
  """The augmented variant's port state dict: the first head of each kind."""
  out = {}
  for name, value in sd.items():
    m = re.fullmatch(r'(heatmap|score)_predictor\.(\w+)\.(.*)', name)
    if m is None:
      out[name] = value
    elif m.group(2) in ('implausibility', 'plausibility'):
      out[f'{m.group(1)}_predictor.{m.group(3)}'] = value
  return out


def _write_safetensors(path, tensors, metadata=None):
  """A safetensors file written by hand (the format's spec)."""
  codes = {np.dtype(np.float32): 'F32', np.dtype(np.float16): 'F16',
           np.dtype(ml_dtypes.bfloat16): 'BF16', np.dtype(np.int64): 'I64'}
  header, offset, blobs = {}, 0, []
  for name, arr in tensors.items():
    blob = np.ascontiguousarray(arr).tobytes()
    header[name] = {'dtype': codes[arr.dtype], 'shape': list(arr.shape),
                    'data_offsets': [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  if metadata:
    header['__metadata__'] = metadata
  raw = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(raw)) + raw + b''.join(blobs))


class SafetensorsTest(absltest.TestCase):

  def test_reads_the_file_the_safetensors_package_wrote(self):
    sd = port.read_safetensors(_SAFETENSORS)
    self.assertEqual(sd['t5.shared.weight'].shape, (64, 16))
    self.assertEqual(sd['vit.embeddings.patch_embeddings.projection.weight']
                     .shape, (24, 3, 4, 4))
    self.assertTrue(all(v.dtype == np.float32 for v in sd.values()))
    # Tied copies were saved as separate, equal tensors.
    np.testing.assert_array_equal(sd['t5.shared.weight'],
                                  sd['t5.lm_head.weight'])

  def test_dtypes_and_metadata(self):
    path = os.path.join(tempfile.mkdtemp(), 'x.safetensors')
    tensors = {'a': np.arange(6, dtype=np.float32).reshape(2, 3),
               'b': np.array([1.5, -2.0], ml_dtypes.bfloat16),
               'c': np.array([0.25], np.float16),
               'd': np.array([[7]], np.int64)}
    _write_safetensors(path, tensors, metadata={'format': 'pt'})
    got = port.read_safetensors(path)
    self.assertEqual(sorted(got), ['a', 'b', 'c', 'd'])
    for k, v in tensors.items():
      self.assertEqual(got[k].dtype, v.dtype, k)
      np.testing.assert_array_equal(got[k], v)

  def test_corrupt_files(self):
    d = tempfile.mkdtemp()
    short = os.path.join(d, 'short.safetensors')
    with open(short, 'wb') as f:
      f.write(b'\x01\x02')
    with self.assertRaisesRegex(ValueError, 'too short'):
      port.read_safetensors(short)
    bad = os.path.join(d, 'bad.safetensors')
    raw = json.dumps({'a': {'dtype': 'F32', 'shape': [4],
                            'data_offsets': [0, 8]}}).encode()
    with open(bad, 'wb') as f:
      f.write(struct.pack('<Q', len(raw)) + raw + b'\0' * 8)
    with self.assertRaisesRegex(ValueError, 'inconsistent offsets'):
      port.read_safetensors(bad)
    with self.assertRaisesRegex(ValueError, 'expected .safetensors'):
      port.read_state_dict(os.path.join(d, 'w.ckpt'))

  def test_torch_files_need_torch(self):
    if importlib.util.find_spec('torch') is not None:
      self.skipTest('torch is installed')
    with self.assertRaisesRegex(ImportError, 'weights_only=True'):
      port.read_state_dict(os.path.join(tempfile.mkdtemp(), 'w.pt'))


class PortLoadTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.sd = port.read_safetensors(_SAFETENSORS)
    cls.config = tiny_port_config()
    cls.params = port.load(_SAFETENSORS, cls.config)

  def test_every_param_loaded(self):
    abstract = common.abstract_params(self.config)
    merged = common.merge_into(abstract, self.params, what='port')
    self.assertFalse(any(isinstance(x, jax.ShapeDtypeStruct)
                         for x in jax.tree.leaves(merged)))
    np.testing.assert_array_equal(
        self.params['img_projection']['kernel'],
        self.sd['visual_token_projection.weight'].T)

  def test_heads_match_the_port_layout_in_torch(self):
    with np.load(os.path.join(_DATA, 'port_tiny_heads.npz'),
                 allow_pickle=False) as data:
      fmap = data['inputs/feature_map_nchw'].transpose(0, 2, 3, 1)
      want = {k.split('/')[1]: data[k] for k in data.files
              if k.startswith('outputs/')}
    self.assertLen(want, 6)
    for name, expected in want.items():
      head = (heatmap_head.HeatmapHead(self.config.heatmap_head)
              if name.startswith('heatmap') else
              score_head.ScoreHead(self.config.score_head))
      got = head.apply({'params': self.params[name]}, fmap)
      self.assertEqual(got.shape, expected.shape, name)
      np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5,
                                 err_msg=name)
    # A transposed-conv kernel in the wrong orientation would not match.
    wrong = jax.tree.map(np.copy, self.params['heatmap_implausibility'])
    k = wrong['upsample_0']['deconv']['kernel']
    wrong['upsample_0']['deconv']['kernel'] = k[::-1, ::-1]
    got = heatmap_head.HeatmapHead(self.config.heatmap_head).apply(
        {'params': wrong}, fmap)
    self.assertGreater(np.abs(got - want['heatmap_implausibility']).max(),
                       1e-3)

  def test_transformers_4_vit_names_load_the_same(self):
    old = {}
    for name, value in self.sd.items():
      m = re.fullmatch(r'vit\.layers\.(\d+)\.(.*)', name)
      if m:
        rest = m.group(2)
        for new, legacy in (('attention.q_proj', 'attention.attention.query'),
                            ('attention.k_proj', 'attention.attention.key'),
                            ('attention.v_proj', 'attention.attention.value'),
                            ('attention.o_proj', 'attention.output.dense'),
                            ('mlp.fc1', 'intermediate.dense'),
                            ('mlp.fc2', 'output.dense')):
          rest = rest.replace(new, legacy)
        name = f'vit.encoder.layer.{m.group(1)}.{rest}'
      old['module.' + name] = value
    self.assertIn('module.vit.encoder.layer.1.attention.attention.query.bias',
                  old)
    params = port.load(old, self.config)
    for path, value in common.flatten(self.params).items():
      np.testing.assert_array_equal(common.flatten(params)[path], value,
                                    err_msg=path)

  def test_augmented_variant_uses_the_single_heads(self):
    params = port.load(single_head_state_dict(self.sd),
                       tiny_port_config('augmented'))
    np.testing.assert_array_equal(
        params['score']['out_dense']['kernel'],
        self.params['score_plausibility']['out_dense']['kernel'])

  def test_mismatches_are_named_in_hf_terms(self):
    sd = dict(self.sd)
    del sd['t5.encoder.block.1.layer.1.DenseReluDense.wo.weight']
    sd['vit.encoder.extra.weight'] = np.zeros((2,), np.float32)
    sd['score_predictor.overall.conv_layers.0.weight'] = np.zeros(
        (8, 16, 5, 5), np.float32)
    sd['t5.lm_head.weight'] = sd['t5.lm_head.weight'] + 1.0
    with self.assertRaises(common.WeightsMismatchError) as ctx:
      port.load(sd, self.config)
    err = ctx.exception
    self.assertEqual(err.missing, [
        't5.encoder.block.1.layer.1.DenseReluDense.wo.weight (for '
        'encoder/layers_1/mlp/wo/kernel (32, 16))'])
    self.assertEqual(err.unexpected, [
        't5.lm_head.weight (differs from t5.shared.weight, which it should '
        'be tied to under this config)',
        'vit.encoder.extra.weight (2,)'])
    self.assertEqual(err.misshaped, [
        'score_predictor.overall.conv_layers.0.weight: file (8, 16, 5, 5), '
        'model needs (8, 16, 3, 3) (for score_overall/conv_0/kernel '
        '(3, 3, 16, 8))'])

  def test_head_layout_the_port_cannot_express(self):
    cfg = dataclasses.replace(
        self.config, heatmap_head=dataclasses.replace(
            self.config.heatmap_head, norm_type='layer'))
    with self.assertRaisesRegex(ValueError, "norm_type': 'layer'"):
      port.load(self.sd, cfg)
    cfg = dataclasses.replace(
        self.config, heatmap_head=dataclasses.replace(
            self.config.heatmap_head, refine_channels=(4,)))
    with self.assertRaisesRegex(ValueError, "refine_channels': \\(4,\\)"):
      port.load(self.sd, cfg)

  def test_port_architecture_config(self):
    cfg = port.port_rahf_config()
    self.assertEqual((cfg.vit.width, cfg.vit.depth, cfg.vit.grid),
                     (1024, 24, (24, 24)))
    self.assertTrue(cfg.vit.class_token)
    self.assertFalse(cfg.vit.gelu_approximate)
    self.assertEqual(cfg.vit.layernorm_epsilon, 1e-12)
    self.assertEqual(
        {k: getattr(cfg, k) for k in rahf.PORT_WIRING}, rahf.PORT_WIRING)
    self.assertEqual(cfg.patch_positions, (1, 577))
    # gin/models/rahf_large.gin (mirrored by the `large` preset) is the port.
    for variant in rahf.VARIANTS:
      self.assertEqual(port.port_rahf_config(variant),
                       info.rahf_preset_config('large', variant))
    self.assertEqual(cfg.score_head.conv_channels,
                     (768, 384, 192, 96, 48, 12))
    # Every row of the port's name table is a parameter of that model.
    table = port.rahf_table(cfg)
    flat = common.flatten(common.abstract_params(cfg))
    self.assertContainsSubset({row[0] for row in table}, set(flat))
    self.assertEqual(set(flat) - {row[0] for row in table},
                     {'img/cls', 'img/pos_embedding'})


def _read_forward():
  """(inputs, {variant: {output name: array}}) of port_tiny_forward.npz."""
  with np.load(_FORWARD, allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  inputs = {k.split('/', 1)[1]: v for k, v in arrays.items()
            if k.startswith('inputs/')}
  outputs = {}
  for k, v in arrays.items():
    if k.startswith('outputs/'):
      _, variant, name = k.split('/')
      outputs.setdefault(variant, {})[name] = v
  slots = json.loads(str(arrays['config']))['augmented_slots']
  assert slots == [t for t, _ in rahf.AUGMENTED_TASKS], slots
  return inputs, outputs


class PortForwardParityTest(parameterized.TestCase):
  """Our RAHF with the port's wiring reproduces the port's forward pass."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.sd = port.read_safetensors(_SAFETENSORS)
    cls.inputs, cls.outputs = _read_forward()

  def _run(self, variant, wiring):
    """Our outputs, named as the fixture's, for `variant` and `wiring`."""
    cfg = dataclasses.replace(tiny_port_config(variant), **wiring)
    sd = self.sd if variant == 'multihead' else single_head_state_dict(
        self.sd)
    params = port.load(sd, cfg)
    tokens = self.inputs['input_ids' if variant == 'multihead' else
                         'augmented_input_ids']
    out = rahf.RAHF(cfg).apply(
        {'params': params},
        self.inputs['pixel_values_nchw'].transpose(0, 2, 3, 1), tokens,
        self.inputs['decoder_input_ids'])
    got = {'logits': out['logits']}
    for k in rahf.HEATMAP_TYPES:
      got[f'heatmap_{k}'] = out[f'{k}_heatmap']
    for i, k in enumerate(rahf.SCORE_TYPES):
      got[f'score_{k}'] = out['scores'][:, i]
    return got

  def _max_diffs(self, got, want):
    self.assertEqual(set(got), set(want))
    for name in want:
      self.assertEqual(got[name].shape, want[name].shape, name)
    return {name: float(np.max(np.abs(np.asarray(got[name]) - want[name])))
            for name in want}

  @parameterized.parameters('multihead', 'augmented')
  def test_port_wiring_matches_the_port(self, variant):
    want = self.outputs[variant]
    # The fixture exercises unmasked padding and HF's label shift.
    self.assertTrue((self.inputs['input_ids'] == 0).any())
    np.testing.assert_array_equal(self.inputs['decoder_input_ids'][:, 1:],
                                  self.inputs['labels'][:, :-1])
    diffs = self._max_diffs(self._run(variant, rahf.PORT_WIRING), want)
    for name, diff in diffs.items():
      self.assertLessEqual(diff, _TOL, f'{variant} {name}: {diffs}')
    self.assertGreater(np.abs(want['logits']).max(), 1.0)

  @parameterized.parameters('multihead', 'augmented')
  def test_each_port_option_is_needed(self, variant):
    want = self.outputs[variant]
    # The encoder options change every output by far more than the
    # tolerance (so the parity check above can fail for each of them).
    for field, default in (('encoder_image_tokens', 'patches'),
                           ('encoder_padding_mask', True)):
      diffs = self._max_diffs(
          self._run(variant, {**rahf.PORT_WIRING, field: default}), want)
      self.assertGreater(min(diffs.values()), 5 * _TOL, f'{field}: {diffs}')
    # Cross-attending to the image positions changes only the logits.
    diffs = self._max_diffs(
        self._run(variant, {**rahf.PORT_WIRING, 'decoder_attends_to': 'all'}),
        want)
    self.assertGreater(diffs.pop('logits'), 0.1)
    self.assertLessEqual(max(diffs.values()), _TOL, diffs)

if __name__ == '__main__':
  absltest.main()
