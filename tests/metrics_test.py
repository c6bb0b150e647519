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
"""Tests for richhf_jax.metrics: hand-computed cases and conventions."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import scipy.stats

from richhf_jax import metrics


def _map(values):
  """A 3x3 map from 9 values in row-major order."""
  return np.asarray(values, dtype=np.float64).reshape(3, 3)


# Shared 3x3 maps. PRED_ONE is 1 at pixel 0; GT_TWO is 1 at pixels 0 and 1.
PRED_ONE = _map([1, 0, 0, 0, 0, 0, 0, 0, 0])
GT_TWO = _map([1, 1, 0, 0, 0, 0, 0, 0, 0])


def _random_split(seed, n, size=8, gt0_every=3):
  """Predictions and targets for n examples; every gt0_every-th gt is 0."""
  rng = np.random.default_rng(seed)
  targets = {'scores': rng.random((n, 4)), 'texts': []}
  predictions = {'scores': rng.random((n, 4)), 'texts': []}
  for key in ('implausibility_heatmap', 'misalignment_heatmap'):
    gt = rng.random((n, size, size)) * (rng.random((n, size, size)) > 0.7)
    gt[::gt0_every] = 0.0
    targets[key] = gt
    predictions[key] = rng.random((n, size, size)).astype(np.float32)
  words = ['a', 'red', 'cat', 'on', 'the', 'mat']
  for _ in range(n):
    flags = rng.random(len(words)) > 0.6
    pred_flags = rng.random(len(words)) > 0.6
    targets['texts'].append(' '.join(
        w + '_0' * int(f) for w, f in zip(words, flags)))
    predictions['texts'].append(' '.join(
        w + '_0' * int(f) for w, f in zip(words[1:], pred_flags)))
  return predictions, targets


class ScoreMetricsTest(parameterized.TestCase):

  def test_plcc_srcc_match_scipy(self):
    rng = np.random.default_rng(0)
    pred, true = rng.random(50), rng.random(50)
    self.assertAlmostEqual(metrics.plcc(pred, true),
                           scipy.stats.pearsonr(pred, true)[0], places=12)
    self.assertAlmostEqual(metrics.srcc(pred, true),
                           scipy.stats.spearmanr(pred, true)[0], places=12)

  def test_hand_computed(self):
    # pred = [1, 2, 3], true = [1, 3, 2]: centred [-1, 0, 1] and
    # [-1, 1, 0]; PLCC = 1 / (sqrt(2) sqrt(2)) = 0.5; ranks are the values,
    # so SRCC = 0.5 too. A monotone but non-linear relation has SRCC 1.
    self.assertAlmostEqual(metrics.plcc([1, 2, 3], [1, 3, 2]), 0.5)
    self.assertAlmostEqual(metrics.srcc([1, 2, 3], [1, 3, 2]), 0.5)
    self.assertAlmostEqual(metrics.srcc([1, 2, 3], [1, 10, 100]), 1.0)
    self.assertLess(metrics.plcc([1, 2, 3], [1, 10, 100]), 0.99)

  @parameterized.parameters(metrics.plcc, metrics.srcc)
  def test_constant_input_is_zero(self, fn):
    self.assertEqual(fn([0.3, 0.3, 0.3], [0.1, 0.5, 0.9]), 0.0)
    self.assertEqual(fn([0.1, 0.5, 0.9], [2.0, 2.0, 2.0]), 0.0)
    self.assertEqual(fn([0.4], [0.2]), 0.0)

  @parameterized.parameters(metrics.plcc, metrics.srcc)
  def test_bad_input_raises(self, fn):
    with self.assertRaisesRegex(ValueError, 'same length'):
      fn([1.0, 2.0], [1.0, 2.0, 3.0])
    with self.assertRaisesRegex(ValueError, 'NaN'):
      fn([1.0, float('nan')], [1.0, 2.0])

  def test_score_metrics_keys(self):
    out = metrics.score_metrics([1, 2, 3], [1, 3, 2])
    self.assertEqual(set(out), {'plcc', 'srcc'})
    self.assertAlmostEqual(out['plcc'], 0.5)
    self.assertAlmostEqual(out['srcc'], 0.5)


class HeatmapMetricsTest(parameterized.TestCase):

  def test_cc_hand_computed(self):
    # Means 1/9 and 2/9; cov sum = 1 - 9 (1/9)(2/9) = 7/9; variance sums
    # 1 - 1/9 = 8/9 and 2 - 4/9 = 14/9: CC = 7 / sqrt(8 * 14) = sqrt(7) / 4.
    self.assertAlmostEqual(metrics.heatmap_cc(PRED_ONE, GT_TWO),
                           math.sqrt(7) / 4)

  def test_sim_hand_computed(self):
    # P = [1, 0, ...], G = [1/2, 1/2, 0, ...]: sum of minima = 1/2.
    self.assertAlmostEqual(metrics.heatmap_sim(PRED_ONE, GT_TWO), 0.5)

  def test_sim_min_max_normalises_first(self):
    # MIT similarity.m: [2, 1, ..., 1] -> min-max -> [1, 0, ...] -> SIM 1/2.
    # Sum-normalising only (the PyTorch port) would give 0.2 + 0.1 = 0.3.
    pred = PRED_ONE + 1.0
    self.assertAlmostEqual(metrics.heatmap_sim(pred, GT_TWO), 0.5)

  def test_kld_hand_computed(self):
    # P = 1/4 on pixels 0-3, G = 1/2 on pixels 0-1:
    # KL(G || P) = 2 * (1/2) log((1/2) / (1/4)) = log 2.
    pred = _map([1, 1, 1, 1, 0, 0, 0, 0, 0])
    self.assertAlmostEqual(metrics.heatmap_kld(pred, GT_TWO), math.log(2),
                           places=10)

  def test_kld_scale_invariant_and_asymmetric(self):
    pred = _map([1, 1, 1, 1, 0, 0, 0, 0, 0])
    self.assertAlmostEqual(metrics.heatmap_kld(pred * 7, GT_TWO * 0.2),
                           math.log(2), places=10)
    # KL(P || G) puts mass where G is 0: about log(1/eps), far larger.
    self.assertGreater(metrics.heatmap_kld(GT_TWO, pred), 10.0)

  def test_nss_hand_computed(self):
    # mean 1/9, sample std sqrt((8/9) / 8) = 1/3: z = 8/3 at pixel 0 and
    # -1/3 elsewhere; fixations are pixels 0, 1: NSS = (8/3 - 1/3) / 2.
    self.assertAlmostEqual(metrics.heatmap_nss(PRED_ONE, GT_TWO), 7 / 6)

  def test_nss_uses_only_gt_support(self):
    # gt values other than > 0 do not matter: fixations are binary.
    self.assertAlmostEqual(metrics.heatmap_nss(PRED_ONE, GT_TWO * 0.01),
                           7 / 6)

  def test_auc_judd_hand_computed(self):
    # Fixations at the values 0.9 and 0.4; the 7 other values are
    # 0.1 0.8 0.2 0.3 0.5 0.6 0.7. Threshold 0.9: TPR 1/2, FPR 0;
    # threshold 0.4: TPR 1, FPR 4/7 (0.8 0.5 0.6 0.7). Curve (0, 0),
    # (0, 1/2), (4/7, 1), (1, 1): area = (4/7)(3/4) + 3/7 = 6/7.
    pred = _map([.9, .1, .8, .2, .3, .4, .5, .6, .7])
    gt = _map([1, 0, 0, 0, 0, 1, 0, 0, 0])
    self.assertAlmostEqual(metrics.heatmap_auc_judd(pred, gt), 6 / 7)

  def test_auc_judd_matches_mit_loop_without_ties(self):
    # A transcription of MIT AUC_Judd.m (without jitter, no ties here).
    rng = np.random.default_rng(1)
    pred = rng.random((12, 12))
    gt = (rng.random((12, 12)) > 0.8) * rng.random((12, 12))
    s, f = pred.ravel(), gt.ravel() > 0
    thresholds = np.sort(s[f])[::-1]
    n_fix, n_pix = thresholds.size, s.size
    tp = [0.0] + [(i + 1) / n_fix for i in range(n_fix)] + [1.0]
    fp = [0.0] + [(np.sum(s >= t) - (i + 1)) / (n_pix - n_fix)
                  for i, t in enumerate(thresholds)] + [1.0]
    expected = sum((fp[i + 1] - fp[i]) * (tp[i + 1] + tp[i]) / 2
                   for i in range(len(tp) - 1))
    self.assertAlmostEqual(metrics.heatmap_auc_judd(pred, gt), expected)

  def test_perfect_prediction(self):
    gt = _map([0, .5, 1, 0, .25, 0, 0, 0, .75])
    self.assertAlmostEqual(metrics.heatmap_cc(gt, gt), 1.0)
    self.assertAlmostEqual(metrics.heatmap_sim(gt, gt), 1.0)
    self.assertAlmostEqual(metrics.heatmap_kld(gt, gt), 0.0, places=10)
    self.assertAlmostEqual(metrics.heatmap_auc_judd(gt > 0, gt), 1.0)
    self.assertGreater(metrics.heatmap_nss(gt, gt), 0.5)

  def test_inverted_prediction(self):
    gt = _map([0, .5, 1, 0, .25, 0, 0, 0, .75])
    inverted = 1.0 - gt
    self.assertAlmostEqual(metrics.heatmap_cc(inverted, gt), -1.0)
    self.assertLess(metrics.heatmap_nss(inverted, gt), 0.0)
    self.assertLess(metrics.heatmap_auc_judd(inverted, gt), 0.5)
    self.assertLess(metrics.heatmap_sim(inverted, gt), 0.5)
    self.assertGreater(metrics.heatmap_kld(inverted, gt),
                       metrics.heatmap_kld(gt, gt) + 0.5)

  @parameterized.parameters(0.0, 0.4)
  def test_constant_prediction(self, value):
    # Constant (and all-zero) maps: CC 0, NSS 0, AUC-Judd 0.5; KLD and SIM
    # read them as uniform 1/9: KLD = 2 (1/2) log((1/2) / (1/9)) = log 4.5,
    # SIM = 2 min(1/9, 1/2) = 2/9.
    pred = np.full((3, 3), value)
    self.assertEqual(metrics.heatmap_cc(pred, GT_TWO), 0.0)
    self.assertEqual(metrics.heatmap_nss(pred, GT_TWO), 0.0)
    self.assertEqual(metrics.heatmap_auc_judd(pred, GT_TWO), 0.5)
    self.assertAlmostEqual(metrics.heatmap_kld(pred, GT_TWO), math.log(4.5),
                           places=10)
    self.assertAlmostEqual(metrics.heatmap_sim(pred, GT_TWO), 2 / 9)

  def test_auc_judd_ties_are_deterministic(self):
    # Pixels 0-4 share 1.0 (fixations 0, 1 among them), 5-8 are 0.
    # Threshold 1.0: TPR 1, FPR 3/7: area = (3/7)(1/2) + (4/7)(1) = 11/14.
    pred = _map([1, 1, 1, 1, 1, 0, 0, 0, 0])
    self.assertAlmostEqual(metrics.heatmap_auc_judd(pred, GT_TWO), 11 / 14)

  def test_auc_judd_all_fixated_is_half(self):
    self.assertEqual(
        metrics.heatmap_auc_judd(PRED_ONE, np.ones((3, 3))), 0.5)

  @parameterized.parameters(metrics.heatmap_nss, metrics.heatmap_auc_judd)
  def test_no_fixations_raises(self, fn):
    with self.assertRaisesRegex(ValueError, 'no pixel > 0'):
      fn(PRED_ONE, np.zeros((3, 3)))

  @parameterized.parameters(metrics.heatmap_cc, metrics.heatmap_kld,
                            metrics.heatmap_sim, metrics.heatmap_nss,
                            metrics.heatmap_auc_judd, metrics.heatmap_mse)
  def test_shape_mismatch_raises(self, fn):
    with self.assertRaisesRegex(ValueError, 'shape mismatch between pred'):
      fn(np.zeros((3, 3)), np.ones((4, 4)))

  @parameterized.parameters(metrics.heatmap_kld, metrics.heatmap_sim)
  def test_negative_values_raise(self, fn):
    with self.assertRaisesRegex(ValueError, 'non-negative'):
      fn(PRED_ONE - 0.5, GT_TWO)

  def test_nan_raises(self):
    with self.assertRaisesRegex(ValueError, 'pred contains NaN'):
      metrics.heatmap_cc(np.full((3, 3), np.nan), GT_TWO)

  def test_heatmap_metrics_gt0_handling(self):
    # Example 0 has GT>0 (the hand-computed pair), example 1 an all-zero gt
    # with pred 0.3 everywhere: MSE 0.09, excluded from the saliency means.
    preds = np.stack([PRED_ONE, np.full((3, 3), 0.3)])
    gts = np.stack([GT_TWO, np.zeros((3, 3))])
    out = metrics.heatmap_metrics(preds, gts)
    self.assertEqual(set(out), set(metrics.HEATMAP_METRIC_NAMES))
    mse0 = 1 / 9  # One wrong pixel (pixel 1) of nine.
    self.assertAlmostEqual(out['mse_all'], (mse0 + 0.09) / 2)
    self.assertAlmostEqual(out['mse_gt0'], 0.09)
    self.assertAlmostEqual(out['cc'], math.sqrt(7) / 4)
    self.assertAlmostEqual(out['sim'], 0.5)
    self.assertAlmostEqual(out['nss'], 7 / 6)

  def test_heatmap_metrics_empty_groups_are_nan(self):
    out = metrics.heatmap_metrics(PRED_ONE[None], GT_TWO[None])
    self.assertTrue(math.isnan(out['mse_gt0']))
    out = metrics.heatmap_metrics(PRED_ONE[None], np.zeros((1, 3, 3)))
    for key in metrics.SALIENCY_METRIC_NAMES:
      self.assertTrue(math.isnan(out[key]), key)
    self.assertAlmostEqual(out['mse_all'], 1 / 9)


class KeywordTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('identical', ['a yellow_0 cat'], ['a yellow_0 cat'], (1, 1, 1)),
      ('wrong_word', ['a yellow cat_0'], ['a yellow_0 cat'], (0, 0, 0)),
      # 'big' is inserted; words align so yellow is a TP and cat a FP.
      ('longer_prediction', ['a big yellow_0 cat_0'], ['a yellow_0 cat'],
       (0.5, 1, 2 / 3)),
      # 'yellow' is dropped: its target flag is a FN, cat is a TP.
      ('shorter_prediction', ['a cat_0'], ['a yellow_0 cat_0'],
       (1, 0.5, 2 / 3)),
      # A shift that position-by-position comparison would get wrong.
      ('shifted', ['yellow_0 cat'], ['a yellow_0 cat'], (1, 1, 1)),
      # Replaced word: its flags cannot match, FP + FN.
      ('replaced_word', ['a green_0 cat'], ['a yellow_0 cat'], (0, 0, 0)),
      ('empty_prediction', [''], ['a yellow_0 cat'], (0, 0, 0)),
      ('nothing_anywhere', ['a cat'], ['a cat'], (0, 0, 0)),
      # Pooled: TP 1, FN 3 -> P 1, R 1/4, F1 0.4 (a per-example average
      # of recalls would give 1/2).
      ('pooled', ['a yellow_0 cat', 'two red dogs'],
       ['a yellow_0 cat', 'two_0 red_0 dogs_0'], (1, 0.25, 0.4)),
      ('bytes', [b'a yellow_0 cat'], [b'a yellow_0 cat'], (1, 1, 1)),
  )
  def test_keyword_prf(self, predicted, target, expected):
    got = metrics.keyword_prf(predicted, target)
    for g, e in zip(got, expected):
      self.assertAlmostEqual(g, e)

  def test_counts(self):
    self.assertEqual(
        metrics.keyword_counts('a big yellow_0 cat_0', 'a yellow_0 cat'),
        (1, 1, 0))
    self.assertEqual(metrics.keyword_counts('', 'x_0 y_0'), (0, 0, 2))

  def test_parse_and_strip(self):
    self.assertEqual(metrics.parse_marked(' a  yellow_0 cat '),
                     (['a', 'yellow', 'cat'], [False, True, False]))
    self.assertEqual(metrics.strip_markers('a yellow_0 cat_0'),
                     'a yellow cat')

  def test_length_mismatch_raises(self):
    with self.assertRaisesRegex(ValueError, '2 predicted texts and 1'):
      metrics.keyword_prf(['a', 'b'], ['a'])


class EvaluateTest(parameterized.TestCase):

  def _assert_structure(self, result):
    metrics.check_metrics_structure(result)
    for group in result.values():
      for sub in group.values():
        values = sub.values() if isinstance(sub, dict) else [sub]
        for v in values:
          self.assertIsInstance(v, float)

  def test_exact_shape(self):
    predictions, targets = _random_split(0, 9)
    result = metrics.evaluate(predictions, targets)
    self._assert_structure(result)
    self.assertEqual(list(result['scores']), list(metrics.SCORE_NAMES))
    self.assertEqual(list(result['heatmaps']), list(metrics.HEATMAP_NAMES))
    self.assertEqual(list(result['heatmaps']['implausibility']),
                     list(metrics.HEATMAP_METRIC_NAMES))
    self.assertEqual(list(result['keywords']), ['precision', 'recall', 'f1'])

  def test_values_follow_parts(self):
    predictions, targets = _random_split(1, 9)
    result = metrics.evaluate(predictions, targets)
    for k, name in enumerate(metrics.SCORE_NAMES):
      self.assertAlmostEqual(
          result['scores'][name]['plcc'],
          scipy.stats.pearsonr(predictions['scores'][:, k],
                               targets['scores'][:, k])[0])
    self.assertEqual(
        result['heatmaps']['misalignment'],
        metrics.heatmap_metrics(predictions['misalignment_heatmap'],
                                targets['misalignment_heatmap']))
    self.assertEqual(
        tuple(result['keywords'].values()),
        metrics.keyword_prf(predictions['texts'], targets['texts']))

  @parameterized.parameters(1, 2, 4, 10)
  def test_accumulator_equals_evaluate(self, batch_size):
    predictions, targets = _random_split(2, 10)
    accumulator = metrics.MetricsAccumulator()
    for start in range(0, 10, batch_size):
      piece = slice(start, start + batch_size)
      accumulator.add({k: v[piece] for k, v in predictions.items()},
                      {k: v[piece] for k, v in targets.items()})
    self.assertEqual(accumulator.num_examples, 10)
    self.assertEqual(accumulator.result(),
                     metrics.evaluate(predictions, targets))

  def test_failed_add_leaves_accumulator_unchanged(self):
    predictions, targets = _random_split(3, 4)
    accumulator = metrics.MetricsAccumulator()
    accumulator.add(predictions, targets)
    before = accumulator.result()
    bad = dict(predictions)
    bad['misalignment_heatmap'] = np.full((4, 8, 8), np.nan)
    with self.assertRaises(ValueError):
      accumulator.add(bad, targets)
    self.assertEqual(accumulator.result(), before)

  def test_empty_accumulator_raises(self):
    with self.assertRaisesRegex(ValueError, 'no example'):
      metrics.MetricsAccumulator().result()

  def test_input_errors(self):
    predictions, targets = _random_split(4, 3)
    missing = dict(predictions)
    del missing['texts']
    with self.assertRaisesRegex(ValueError, 'missing keys'):
      metrics.evaluate(missing, targets)
    bad = dict(predictions, scores=np.zeros((3, 3)))
    with self.assertRaisesRegex(ValueError, r'\[N, 4\]'):
      metrics.evaluate(bad, targets)
    bad = dict(predictions, implausibility_heatmap=np.zeros((3, 4, 4)))
    with self.assertRaisesRegex(ValueError, 'must both be'):
      metrics.evaluate(bad, targets)

  def test_trivial_baseline(self):
    _, train = _random_split(5, 12)
    _, targets = _random_split(6, 7)
    stats = metrics.TrainStatistics()
    stats.add({k: v[:5] for k, v in train.items()})
    stats.add({k: v[5:] for k, v in train.items()})
    stats = stats.result()
    np.testing.assert_allclose(stats['scores'], train['scores'].mean(0))
    np.testing.assert_allclose(stats['misalignment_heatmap'],
                               train['misalignment_heatmap'].mean(0))
    baseline = metrics.trivial_baseline(targets, stats)
    self.assertEqual(baseline['scores'].shape, (7, 4))
    self.assertEqual(baseline['implausibility_heatmap'].shape, (7, 8, 8))
    np.testing.assert_allclose(baseline['implausibility_heatmap'][3],
                               train['implausibility_heatmap'].mean(0),
                               rtol=1e-6)
    self.assertEqual(baseline['texts'][0],
                     metrics.strip_markers(targets['texts'][0]))
    self.assertNotIn('_0', ' '.join(baseline['texts']))
    result = metrics.evaluate(baseline, targets)
    for name in metrics.SCORE_NAMES:
      self.assertEqual(result['scores'][name], {'plcc': 0.0, 'srcc': 0.0})
    self.assertEqual(result['keywords'],
                     {'precision': 0.0, 'recall': 0.0, 'f1': 0.0})

  def test_trivial_baseline_shape_mismatch_raises(self):
    _, targets = _random_split(7, 3)
    stats = metrics.train_statistics(targets)
    stats['misalignment_heatmap'] = np.zeros((4, 4))
    with self.assertRaisesRegex(ValueError, 'misalignment_heatmap'):
      metrics.trivial_baseline(targets, stats)


if __name__ == '__main__':
  absltest.main()
