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
"""Tests for the trainer and the orbax checkpoints."""

import dataclasses
import itertools
import os
import tempfile

from absl.testing import absltest
import jax
import numpy as np

from richhf_jax import checkpoints
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax import trainer as trainer_lib


class TrainerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.cfg = test_utils.tiny_config()
    cls.tc = trainer_lib.TrainConfig(
        num_steps=12, batch_size=2, learning_rate=3e-3, warmup_steps=1,
        schedule='constant', log_every=4, checkpoint_every=6,
        keep_checkpoints=2)
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.trainer = trainer_lib.Trainer(model_lib.RAHFModel(cls.cfg), cls.tc,
                                      input_length=6, target_length=7)
    cls.trainer.init_state()
    cls.ckpt = checkpoints.Checkpointer(cls.tmp, max_to_keep=2)
    cls.logs = []
    cls.history = []
    orig = cls.trainer._log_window

    def spy(*args, **kwargs):
      out = orig(*args, **kwargs)
      cls.history.append(out)
      return out

    cls.trainer._log_window = spy
    cls.trainer.train(itertools.repeat(cls.batch), cls.ckpt,
                      {'model_config': cls.cfg}, None, cls.logs.append)

  def test_loss_goes_down_on_a_repeated_batch(self):
    self.assertLen(self.history, 3)
    self.assertLess(self.history[-1]['loss/total'],
                    self.history[0]['loss/total'])
    self.assertEqual(int(self.trainer.state.step), 12)
    self.assertTrue(any('eta' in line for line in self.logs), self.logs)

  def test_checkpoints_kept_and_restored_exactly(self):
    self.assertEqual(self.ckpt.manager.all_steps(), [6, 12])
    other = trainer_lib.Trainer(model_lib.RAHFModel(self.cfg), self.tc, 6, 7)
    meta = other.restore_state(checkpoints.Checkpointer(self.tmp))
    self.assertEqual(meta['step'], 12)
    self.assertEqual(int(other.state.step), 12)
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(self.trainer.state.params),
                 jax.device_get(other.state.params))
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(self.trainer.state.opt_state),
                 jax.device_get(other.state.opt_state))

  def test_mismatched_model_config_is_refused(self):
    meta = checkpoints.Checkpointer(self.tmp).manager.restore(
        12, args=checkpoints.ocp.args.Composite(
            meta=checkpoints.ocp.args.JsonRestore())).meta
    wider = dataclasses.replace(
        self.cfg, t5=dataclasses.replace(self.cfg.t5, emb_dim=96))
    with self.assertRaisesRegex(ValueError, r't5\.emb_dim: 64 vs 96'):
      checkpoints.check_model_config(meta, wider, self.tmp)
    checkpoints.check_model_config(meta, self.cfg, self.tmp)  # no error

  def test_restore_into_a_different_shape_fails_clearly(self):
    wider = dataclasses.replace(
        self.cfg, t5=dataclasses.replace(self.cfg.t5, mlp_dim=96))
    other = trainer_lib.Trainer(model_lib.RAHFModel(wider), self.tc, 6, 7)
    with self.assertRaises(ValueError):
      other.restore_state(checkpoints.Checkpointer(self.tmp))

  def test_non_finite_loss_names_the_term(self):
    bad = dict(self.batch)
    bad['scores'] = np.full_like(self.batch['scores'], np.nan)
    tr = self.trainer
    tr.config = dataclasses.replace(self.tc, num_steps=16)
    with self.assertRaisesRegex(trainer_lib.NonFiniteLossError,
                                r'steps 13 and 16.*plausibility_score'):
      tr.train(itertools.repeat(bad), None, None, None, lambda s: None)

  def test_model_info_lists_every_param(self):
    path = os.path.join(self.tmp, 'model-info.txt')
    self.trainer.write_model_info(path)
    lines = open(path).read().splitlines()
    n = len(jax.tree.leaves(self.trainer.state.params))
    self.assertLen(lines, n + 1)
    query = [l for l in lines
             if l.startswith('encoder/layers_0/attention/query/kernel\t')]
    self.assertEqual(query, [
        "encoder/layers_0/attention/query/kernel\t(64, 64)\tfloat32\t"
        "P(None, 'model')"])
    self.assertIn('total parameters', lines[-1])


class ConfigTest(absltest.TestCase):

  def test_bad_schedule_lists_choices(self):
    with self.assertRaisesRegex(ValueError, "'cosine', 'rsqrt', 'constant'"):
      trainer_lib.TrainConfig(schedule='linear')

  def test_schedules_warm_up(self):
    for name in ('cosine', 'rsqrt', 'constant'):
      cfg = trainer_lib.TrainConfig(num_steps=100, warmup_steps=10,
                                    learning_rate=1.0, schedule=name)
      lr = trainer_lib.learning_rate_schedule(cfg)
      self.assertLess(float(lr(1)), float(lr(10)))
      self.assertAlmostEqual(float(lr(10)), 1.0, places=5)

  def test_no_decay_on_vectors(self):
    mask = trainer_lib._decay_mask({'k': np.zeros((2, 2)), 'b': np.zeros(2)})
    self.assertEqual(mask, {'k': True, 'b': False})


if __name__ == '__main__':
  absltest.main()
