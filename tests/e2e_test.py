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
"""End to end: generate -> join -> train -> checkpoint -> resume -> evaluate.

Runs the same entry points as `make demo` (gin-configured train and evaluate)
on a handful of synthetic examples.
"""

import json
import os
import tempfile

from absl.testing import absltest
import gin
import numpy as np

from richhf_jax import eval as eval_lib
from richhf_jax import gin_utils
from richhf_jax import train as train_lib
from richhf_jax.data import join
from richhf_jax.data import synthetic

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EndToEndTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    data = os.path.join(cls.tmp, 'data')
    synthetic.generate(data, num_train=24, num_dev=4, num_test=10, seed=3,
                       image_sizes=(96,))
    cls.joined = os.path.join(cls.tmp, 'joined')
    cls.join_summary = join.run_join(
        os.path.join(data, 'richhf18k'),
        os.path.join(data, 'pickapic', '*.parquet'), cls.joined,
        progress=False)
    cls.vocab = os.path.join(data, 'vocab', 'spm.model')
    cls.model_dir = os.path.join(cls.tmp, 'model')
    cls.logs = []
    cls.metrics = cls._train(steps=4)
    cls.resumed_metrics = cls._train(steps=6)
    cls.eval_dir = os.path.join(cls.tmp, 'eval')
    cls._parse('gin/runs/eval.gin', [f"EVAL_OUTPUT_DIR = '{cls.eval_dir}'",
                                     'EVAL_BATCH_SIZE = 4'])
    cls.result = eval_lib.evaluate(log_fn=cls.logs.append)
    gin.clear_config()

  @classmethod
  def _parse(cls, run_file, extra):
    gin.clear_config()
    gin_utils.parse_gin(
        [run_file, 'gin/local_tiny.gin'],
        [f"MODEL_DIR = '{cls.model_dir}'", f"DATA_DIR = '{cls.joined}'",
         f"VOCAB_PATH = '{cls.vocab}'", 'BATCH_SIZE = 4',
         'INPUT_LENGTH = 24', 'TARGET_LENGTH = 32'] + list(extra), [_ROOT])

  @classmethod
  def _train(cls, steps):
    cls._parse('gin/runs/finetune_richhf.gin',
               [f'TRAIN_STEPS = {steps}', 'richhf_jax.TrainConfig.log_every = 2',
                'richhf_jax.TrainConfig.checkpoint_every = 2'])
    return train_lib.train(log_fn=cls.logs.append)

  def test_join_matched_every_example(self):
    for split, n in (('train', 24), ('dev', 4), ('test', 10)):
      counts = self.join_summary['splits'][split]
      self.assertEqual(counts['written'], n, counts)

  def test_training_wrote_checkpoints_config_and_events(self):
    ckpts = sorted(os.listdir(os.path.join(self.model_dir, 'checkpoints')))
    self.assertIn('6', ckpts)
    self.assertTrue(os.path.exists(os.path.join(self.model_dir, 'config.gin')))
    self.assertTrue(os.path.exists(
        os.path.join(self.model_dir, 'model-info.txt')))
    events = os.listdir(os.path.join(self.model_dir, 'train'))
    self.assertTrue(any(e.startswith('events.out.tfevents') for e in events))
    self.assertTrue(np.isfinite(self.metrics['loss/total']))

  def test_second_run_resumed_from_the_checkpoint(self):
    self.assertTrue(any('resumed from' in l and 'step 4' in l
                        for l in self.logs), self.logs)
    self.assertTrue(any(l.startswith('step 6/6') for l in self.logs))

  def test_eval_wrote_the_report(self):
    with open(os.path.join(self.eval_dir, 'metrics.json')) as f:
      m = json.load(f)
    self.assertEqual(set(m), {'scores', 'heatmaps', 'keywords', 'baseline'})
    self.assertEqual(set(m['scores']),
                     {'plausibility', 'alignment', 'aesthetics', 'overall'})
    self.assertEqual(set(m['heatmaps']['implausibility']),
                     {'mse_all', 'mse_gt0', 'cc', 'kld', 'sim', 'nss',
                      'auc_judd'})
    self.assertEqual(set(m['keywords']), {'precision', 'recall', 'f1'})
    self.assertEqual(set(m['baseline']), {'scores', 'heatmaps', 'keywords'})
    report = open(os.path.join(self.eval_dir, 'report.md')).read()
    self.assertIn('Table 1', report)
    self.assertIn('Table 4', report)
    # Best / median / worst CC grids, one per heatmap type with GT > 0.
    self.assertContainsSubset(
        os.listdir(os.path.join(self.eval_dir, 'overlays')),
        {'implausibility.png', 'misalignment.png'})
    self.assertNotEmpty(os.listdir(os.path.join(self.eval_dir, 'overlays')))
    # All 10 test examples were evaluated (the last batch is partial).
    self.assertTrue(any('10 examples' in l for l in self.logs), self.logs)

  def test_vocabulary_larger_than_the_model_is_refused(self):
    self._parse('gin/runs/finetune_richhf.gin',
                ["richhf_jax.rahf_config.t5_overrides = {'vocab_size': 128}"])
    try:
      with self.assertRaisesRegex(ValueError, r'vocabulary .* has \d+ ids'):
        train_lib.train(log_fn=lambda s: None)
    finally:
      gin.clear_config()

  def test_eval_refuses_a_checkpoint_of_another_model(self):
    self._parse('gin/runs/eval.gin',
                [f"EVAL_OUTPUT_DIR = '{self.eval_dir}2'",
                 'EVAL_MODEL_CONFIG = %MODEL_CONFIG',
                 "richhf_jax.rahf_config.t5_overrides = "
                 "{'emb_dim': 32, 'vocab_size': 512}"])
    try:
      with self.assertRaisesRegex(ValueError, 'another model config'):
        eval_lib.evaluate(log_fn=lambda s: None)
    finally:
      gin.clear_config()


if __name__ == '__main__':
  absltest.main()
