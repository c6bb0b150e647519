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
"""Tests for richhf_jax.export: config JSON round trip, export, reload."""

import contextlib
import dataclasses
import io
import json
import os
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import checkpoints
from richhf_jax import export
from richhf_jax import inference
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax import trainer as trainer_lib
from richhf_jax.models import heatmap_head


def _save_run(model_dir, state, meta, step):
  ckpt = checkpoints.Checkpointer(model_dir, async_save=False)
  ckpt.save(step, state, dict(meta, step=step))
  ckpt.close()


class ConfigJsonTest(absltest.TestCase):

  def test_round_trips(self):
    base = test_utils.tiny_config()
    variants = [
        base,
        dataclasses.replace(base, variant='augmented', heatmap_loss='bce'),
        dataclasses.replace(
            base,
            vit=dataclasses.replace(base.vit, dtype='bfloat16'),
            t5=dataclasses.replace(base.t5, mlp_activations=('relu',)),
            heatmap_head=heatmap_head.get_heatmap_head_config(
                'tiny', output_size=(12, 10), dtype=jnp.bfloat16)),
    ]
    for cfg in variants:
      data = export.config_to_json(cfg)
      self.assertEqual(export.config_from_json(data), cfg)
      self.assertEqual(export.config_from_json(json.dumps(data)), cfg)
    head = export.config_from_json(
        export.config_to_json(variants[2])).heatmap_head
    self.assertEqual(head.output_size, (12, 10))  # A tuple again.
    self.assertIs(head.dtype, jnp.bfloat16)

  def test_missing_fields_take_defaults(self):
    data = export.config_to_json(test_utils.tiny_config())
    del data['text_loss_weight']
    self.assertEqual(export.config_from_json(data).text_loss_weight, 1.0)

  def test_errors_name_the_field(self):
    data = export.config_to_json(test_utils.tiny_config())
    cases = [
        (dict(data, colour='red'), r"unknown RAHFConfig fields \['colour'\]"),
        (dict(data, vit=[1, 2]), r'model_config\.vit: expected a JSON object'),
        (dict(data, variant='both'), r"variant='both'"),
        (dict(data, t5=dict(data['t5'], emb_dim=-1)),
         r'model_config\.t5: invalid T5Config.*emb_dim'),
        ('{"vit": ', 'not valid JSON'),
    ]
    for bad, pattern in cases:
      with self.assertRaisesRegex(ValueError, pattern):
        export.config_from_json(bad)


class ExportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.cfg = test_utils.tiny_config()
    cls.vocab = test_utils.tiny_vocab(os.path.join(cls.tmp, 'vocab', 'spm'))
    tr = trainer_lib.Trainer(model_lib.RAHFModel(cls.cfg),
                             trainer_lib.TrainConfig(num_steps=1),
                             input_length=8, target_length=8)
    state = tr.init_state()
    cls.meta = {'model_config': cls.cfg,
                'data': {'vocab_path': cls.vocab, 'input_length': 10,
                         'target_length': 12}}
    cls.model_dir = os.path.join(cls.tmp, 'run')
    cls.params = {2: jax.device_get(state.params)}
    _save_run(cls.model_dir, state, cls.meta, 2)
    # A later step with different parameters.
    later = state.replace(params=jax.tree.map(lambda x: x + 1.0,
                                              state.params))
    cls.params[5] = jax.device_get(later.params)
    _save_run(cls.model_dir, later, cls.meta, 5)

  def _main(self, *args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(
        io.StringIO()):
      rc = export.main(list(args))
    return rc, err.getvalue()

  def _assert_params(self, got, step):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(got),
                 self.params[step])

  def test_export_latest_and_reload(self):
    out = os.path.join(self.tmp, 'export_latest')
    rc, err = self._main('--checkpoint', self.model_dir, '--out', out)
    self.assertEqual(rc, 0, err)
    self.assertEqual(sorted(os.listdir(out)),
                     ['config.json', 'params', 'spm.model', 'spm.vocab'])
    info, params = export.load_export(out)
    self.assertEqual(info.config, self.cfg)
    self.assertEqual((info.step, info.input_length, info.target_length),
                     (5, 10, 12))
    with open(info.vocab_path, 'rb') as a, open(self.vocab, 'rb') as b:
      self.assertEqual(a.read(), b.read())
    self._assert_params(params, 5)
    # The export holds no optimizer state: far smaller than the run.
    self.assertFalse(any('opt_state' in f for _, _, fs in os.walk(out)
                         for f in fs))

  def test_export_a_given_step(self):
    out = os.path.join(self.tmp, 'export_step2')
    rc, err = self._main('--checkpoint', self.model_dir, '--out', out,
                         '--step', '2', '--target_length', '6')
    self.assertEqual(rc, 0, err)
    info, params = export.load_export(out)
    self.assertEqual((info.step, info.target_length), (2, 6))
    self._assert_params(params, 2)

  def test_export_the_best_checkpoint(self):
    ckpt = checkpoints.Checkpointer(self.model_dir, async_save=False,
                                    subdir='best')
    ckpt.save(2, {'params': self.params[2]}, dict(self.meta, step=2))
    ckpt.close()
    out = os.path.join(self.tmp, 'export_best')
    rc, err = self._main('--checkpoint', self.model_dir, '--out', out,
                         '--best')
    self.assertEqual(rc, 0, err)
    info, params = export.load_export(out)
    self.assertEqual(info.step, 2)
    self._assert_params(params, 2)

  def test_predictor_loads_export_and_training_dir(self):
    out = export.export(self.model_dir, os.path.join(self.tmp, 'export_p'))
    from_export = inference.Predictor.load(out)
    from_run = inference.Predictor.load(self.model_dir, step=2)
    self._assert_params(from_export.params, 5)
    self._assert_params(from_run.params, 2)
    self.assertEqual(from_export.tokenizer.length, 10)
    self.assertEqual(from_run.max_decode_length, 12)

  def test_no_checkpoint_is_a_clear_error(self):
    empty = tempfile.mkdtemp()
    rc, err = self._main('--checkpoint', empty, '--out', empty + '_out')
    self.assertEqual(rc, 1)
    self.assertIn('no checkpoints/ directory', err)
    os.makedirs(os.path.join(empty, 'checkpoints'))
    with self.assertRaisesRegex(FileNotFoundError, 'no checkpoint under'):
      export.export(empty, empty + '_out')
    with self.assertRaisesRegex(FileNotFoundError, r'step 7 .*\[2, 5\]'):
      export.export(self.model_dir, empty + '_out', step=7)

  def test_invalid_config_json_is_a_clear_error(self):
    state = jax.tree.map(np.asarray, {'params': self.params[2]})
    bad_dir = os.path.join(self.tmp, 'bad_run')
    bad_meta = {'model_config': {'vit': {'patch_size': 7}}}
    _save_run(bad_dir, state, bad_meta, 1)
    rc, err = self._main('--checkpoint', bad_dir, '--out', bad_dir + '_out')
    self.assertEqual(rc, 1)
    self.assertIn('meta model_config', err)
    self.assertFalse(os.path.exists(bad_dir + '_out'))

  def test_vocab_and_out_dir_errors(self):
    no_vocab = os.path.join(self.tmp, 'run_no_vocab')
    _save_run(no_vocab, jax.tree.map(np.asarray, {'params': self.params[2]}),
              {'model_config': self.cfg}, 1)
    with self.assertRaisesRegex(FileNotFoundError, '--vocab'):
      export.export(no_vocab, os.path.join(self.tmp, 'nv'))
    out = export.export(no_vocab, os.path.join(self.tmp, 'nv'),
                        vocab_path=self.vocab)
    with self.assertRaisesRegex(FileExistsError, '--overwrite'):
      export.export(no_vocab, out, vocab_path=self.vocab)
    export.export(no_vocab, out, vocab_path=self.vocab, overwrite=True)
    with open(os.path.join(out, export.CONFIG_FILE)) as f:
      data = json.load(f)
    self.assertEqual(data['input_length'], export.DEFAULT_INPUT_LENGTH)
    data['version'] = 99
    with open(os.path.join(out, export.CONFIG_FILE), 'w') as f:
      json.dump(data, f)
    with self.assertRaisesRegex(ValueError, 'export version 99'):
      export.load_export(out)


if __name__ == '__main__':
  absltest.main()
