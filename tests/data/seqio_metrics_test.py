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
"""The paper's metrics on the seqio tasks, run through `seqio.Evaluator`."""

from absl.testing import absltest
import numpy as np
import seqio

from richhf_jax import metrics as metrics_lib
from richhf_jax.data import preprocessors as pp
from richhf_jax.data import seqio_metrics
from richhf_jax.data import tasks
from richhf_jax.data import testing

_S, _H, _L = 16, 8, 32


def _fake_model(vocab, seen):
  """A predict_with_aux_fn: marks the first word of every target misaligned.

  Heatmaps are the ground truth plus a ramp, scores the truth plus noise;
  everything it returns is recorded in `seen` for the reference metrics.
  """

  def fn(ds):
    outputs, aux = [], {k: [] for k in seqio_metrics.AUX_KEYS}
    for index, ex in ds.as_numpy_iterator():
      target = vocab.decode(ex['decoder_target_tokens'].tolist())
      words = target.split()
      words[0] = words[0] if words[0].endswith('_0') else words[0] + '_0'
      text = ' '.join(words)
      tokens = np.zeros(_L, np.int32)
      ids = vocab.encode(text)[:_L - 1] + [1]
      tokens[:len(ids)] = ids
      rng = np.random.default_rng(int(index))
      ramp = np.linspace(0, 0.5, _H * _H).reshape(_H, _H)
      pred = {
          'scores': np.clip(ex['scores'] + rng.normal(0, 0.1, 4), 0, 1),
          'implausibility_heatmap': np.clip(
              ex['implausibility_heatmap'] + ramp, 0, 1),
          'misalignment_heatmap': np.clip(
              ex['misalignment_heatmap'] * 0.5 + ramp[::-1], 0, 1),
      }
      outputs.append((int(index), tokens))
      for k, v in pred.items():
        aux[k].append(v)
      seen.append((int(index), text, target, pred, ex))
    return outputs, aux

  return fn


class SeqioMetricsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = testing.synthetic_joined()
    cls.names = tasks.register_tasks(cls.paths['joined'], cls.paths['vocab'],
                                     _S, _H, name_prefix='metrics_test')
    cls.vocab = tasks.load_vocab(cls.paths['vocab'])

  def _evaluate(self, augmented):
    name = self.names['augmented' if augmented else 'multihead']
    evaluator = seqio.Evaluator(
        name, feature_converter=tasks.feature_converter(augmented),
        eval_split='test', sequence_length=tasks.task_feature_lengths(
            _L, _L, _S, _H, augmented), logger_cls=())
    seen = []
    future, _ = evaluator.evaluate(
        compute_metrics=True, step=0,
        predict_with_aux_fn=_fake_model(self.vocab, seen))
    return future.result()[name], sorted(seen, key=lambda x: x[0])

  def _reference(self, seen):
    def stack(which, key):
      return np.stack([s[which][key] for s in seen])
    preds = {k: stack(3, k) for k in seqio_metrics.AUX_KEYS}
    preds['texts'] = [s[1] for s in seen]
    trues = {k: stack(4, k) for k in seqio_metrics.AUX_KEYS}
    trues['texts'] = [s[2] for s in seen]
    return metrics_lib.evaluate(preds, trues)

  def test_multihead_evaluator_matches_metrics_lib(self):
    result, seen = self._evaluate(augmented=False)
    self.assertLen(seen, 4)
    want = self._reference(seen)
    got = seqio_metrics.nested(result)
    self.assertEqual(set(got), {'scores', 'heatmaps', 'keywords'})
    for name in metrics_lib.SCORE_NAMES:
      for m in ('plcc', 'srcc'):
        self.assertAlmostEqual(got['scores'][name][m],
                               want['scores'][name][m], places=5)
    for name in metrics_lib.HEATMAP_NAMES:
      self.assertCountEqual(got['heatmaps'][name],
                            metrics_lib.HEATMAP_METRIC_NAMES)
      for m, v in want['heatmaps'][name].items():
        if np.isnan(v):
          self.assertTrue(np.isnan(got['heatmaps'][name][m]), m)
        else:
          self.assertAlmostEqual(got['heatmaps'][name][m], v, places=5)
    self.assertEqual(got['keywords'], want['keywords'])
    # Every target word marked on top of the truth: recall 1, precision < 1.
    self.assertEqual(got['keywords']['recall'], 1.0)
    self.assertLess(got['keywords']['precision'], 1.0)

  def test_augmented_evaluator(self):
    result, seen = self._evaluate(augmented=True)
    self.assertLen(seen, 4)
    self.assertEqual(seen[0][4][pp.AUGMENTED_INPUTS].shape,
                     (pp.NUM_AUGMENTED, _L))
    want = self._reference(seen)
    got = seqio_metrics.nested(result)
    self.assertAlmostEqual(got['scores']['overall']['plcc'],
                           want['scores']['overall']['plcc'], places=5)
    self.assertEqual(got['keywords'], want['keywords'])

  def test_missing_aux_key_is_named(self):
    targets = [{'texts': 'a b', 'scores': np.zeros(4),
                'implausibility_heatmap': np.zeros((2, 2)),
                'misalignment_heatmap': np.zeros((2, 2))}]
    with self.assertRaisesRegex(ValueError, "'scores'"):
      seqio_metrics.score_metrics(targets, ['a b'], {})
    with self.assertRaisesRegex(ValueError, 'shape'):
      seqio_metrics.heatmap_metrics(
          targets, ['a b'], {'implausibility_heatmap': np.zeros((1, 3, 3))})

  def test_postprocess(self):
    ex = {'scores': np.ones(4), 'implausibility_heatmap': np.zeros((2, 2)),
          'misalignment_heatmap': np.ones((2, 2))}
    out = seqio_metrics.postprocess(b'a b_0', example=ex, is_target=True)
    self.assertEqual(out['texts'], 'a b_0')
    np.testing.assert_array_equal(out['scores'], np.ones(4))
    self.assertEqual(seqio_metrics.postprocess(b'x_0'), 'x_0')
    with self.assertRaisesRegex(ValueError, 'scores'):
      seqio_metrics.postprocess('a', example={}, is_target=True)


if __name__ == '__main__':
  absltest.main()
