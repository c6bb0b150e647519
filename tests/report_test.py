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
"""Tests for richhf_jax.report: metrics.json, report.md and the PNGs."""

import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image

from richhf_jax import metrics
from richhf_jax import report

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _metrics(value, keyword_value=0.25):
  out = metrics.empty_metrics(value)
  out['keywords'] = {'precision': keyword_value, 'recall': 0.5, 'f1': 0.125}
  return out


def _reject_constant(name):
  raise ValueError(f'non-standard JSON constant {name}')


class _TempDirTestCase(parameterized.TestCase):
  """Gives each test a fresh temporary directory (pytest-safe)."""

  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.tmp_dir = tmp.name


def _read_png(path):
  with open(path, 'rb') as f:
    head = f.read(8)
  image = Image.open(path)
  image.load()
  return head, image


class MetricsJsonTest(_TempDirTestCase):

  def test_shape_floats_and_null(self):
    ours = _metrics(0.5)
    ours['heatmaps']['misalignment']['mse_gt0'] = float('nan')
    ours['scores']['overall']['plcc'] = np.float32(0.25)
    path = os.path.join(self.tmp_dir, 'sub', 'm.json')
    report.write_metrics_json(path, ours, baseline=_metrics(0.0))
    with open(path) as f:
      text = f.read()
    self.assertNotIn('NaN', text)
    loaded = json.loads(text, parse_constant=_reject_constant)
    self.assertEqual(set(loaded),
                     {'scores', 'heatmaps', 'keywords', 'baseline'})
    baseline = loaded.pop('baseline')
    metrics.check_metrics_structure(baseline)
    metrics.check_metrics_structure(loaded)
    self.assertIsNone(loaded['heatmaps']['misalignment']['mse_gt0'])
    self.assertEqual(loaded['scores']['overall']['plcc'], 0.25)
    self.assertEqual(loaded['keywords']['precision'], 0.25)
    self.assertEqual(baseline['heatmaps']['implausibility']['cc'], 0.0)

  def test_without_baseline(self):
    path = os.path.join(self.tmp_dir, 'm.json')
    report.write_metrics_json(path, _metrics(0.5))
    with open(path) as f:
      loaded = json.load(f)
    self.assertNotIn('baseline', loaded)

  def test_evaluate_output_round_trips(self):
    rng = np.random.default_rng(0)
    maps = rng.random((4, 6, 6))
    batch = {'scores': rng.random((4, 4)), 'implausibility_heatmap': maps,
             'misalignment_heatmap': maps, 'texts': ['a b_0'] * 4}
    result = metrics.evaluate(batch, batch)
    path = os.path.join(self.tmp_dir, 'm.json')
    report.write_metrics_json(path, result)
    with open(path) as f:
      loaded = json.load(f, parse_constant=_reject_constant)
    self.assertAlmostEqual(
        loaded['heatmaps']['implausibility']['cc'], 1.0)
    self.assertIsNone(loaded['heatmaps']['implausibility']['mse_gt0'])

  def test_wrong_shape_raises(self):
    bad = _metrics(0.5)
    del bad['heatmaps']['implausibility']['nss']
    with self.assertRaisesRegex(ValueError, 'nss'):
      report.write_metrics_json(
          os.path.join(self.tmp_dir, 'm.json'), bad)


class RenderReportTest(absltest.TestCase):

  def test_tables_and_reference_numbers(self):
    ours = _metrics(0.123, keyword_value=0.4567)
    ours['heatmaps']['implausibility']['mse_gt0'] = float('nan')
    text = report.render_report(ours, baseline=_metrics(0.0), title='T',
                                notes='synthetic split')
    self.assertTrue(text.startswith('# T\n'))
    self.assertIn('synthetic split', text)
    self.assertIn('not comparable', text)
    for n in range(1, 5):
      self.assertIn(f'## Table {n}', text)
    for header in ('MSE all', 'MSE GT=0', 'CC', 'KLD', 'SIM', 'NSS',
                   'AUC-Judd', 'Precision (%)', 'Plausibility PLCC'):
      self.assertIn(header, text)
    # Paper rows, one per table, and the PyTorch port's rows.
    for number in ('0.693 | 0.681', '0.00920 | 0.00095 | 0.556',
                   '0.00304 | 0.00006 | 0.212 | 2.933', '61.3 | 34.1 | 43.9',
                   '0.739 | -', '0.525 | - | - | 2.029 | 0.905',
                   '56.5 | 45.2 | 47.5'):
      self.assertIn(number, text)
    # Ours: keywords in percent, undefined values as n/a.
    self.assertIn('| **ours** | 45.7 | 50.0 | 12.5 |', text)
    self.assertIn('| **ours** | 0.12300 | n/a | 0.123 |', text)
    self.assertIn('| trivial baseline | 25.0 | 50.0 | 12.5 |', text)

  def test_every_table_has_ours_and_baseline(self):
    text = report.render_report(_metrics(0.5), baseline=_metrics(0.1))
    self.assertEqual(text.count('| **ours** |'), 4)
    self.assertEqual(text.count('| trivial baseline |'), 4)
    text = report.render_report(_metrics(0.5))
    self.assertNotIn('trivial baseline |', text)

  def test_negative_zero_prints_as_zero(self):
    ours = _metrics(0.5)
    ours['heatmaps']['implausibility']['kld'] = -1e-14
    text = report.render_report(ours)
    self.assertNotIn('-0.000', text)

  def test_resolution_and_figures(self):
    text = report.render_report(
        _metrics(0.5), heatmap_resolution='512x512, upsampled.',
        figures=[('overall scatter', 'scatter_overall.png'),
                 ('grid', 'overlays/implausibility.png')])
    self.assertIn('(fixations = pixels > 0). Resolution: 512x512, '
                  'upsampled.', text)
    # Figures come last, after Table 4.
    self.assertGreater(text.index('## Figures'), text.index('## Table 4'))
    self.assertIn('![overall scatter](scatter_overall.png)', text)
    self.assertIn('![grid](overlays/implausibility.png)', text)
    plain = report.render_report(_metrics(0.5))
    self.assertNotIn('Resolution:', plain)
    self.assertNotIn('## Figures', plain)

  def test_reference_rows_match_spec(self):
    rows = dict(report.REFERENCE_RESULTS['implausibility'])
    self.assertEqual(rows['RAHF augmented prompt (paper)']['nss'], 3.085)
    rows = dict(report.REFERENCE_RESULTS['scores'])
    self.assertEqual(rows['RAHF multi-head (paper)']['alignment'],
                     {'plcc': 0.487, 'srcc': 0.500})


class ImagesTest(_TempDirTestCase):

  @parameterized.parameters(np.uint8, np.float32)
  def test_overlays(self, dtype):
    rng = np.random.default_rng(0)
    if dtype == np.uint8:
      images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    else:
      images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    gts = np.zeros((2, 64, 64))
    gts[:, 8:24, 8:24] = 1.0
    preds = rng.random((2, 8, 8))
    out_dir = os.path.join(self.tmp_dir, 'overlays')
    paths = report.save_overlays(out_dir, images, gts, preds,
                                 ['ex/1', 'ex 2'], label_height=10)
    self.assertEqual([os.path.basename(p) for p in paths],
                     ['ex_1.png', 'ex_2.png'])
    for k, path in enumerate(paths):
      head, image = _read_png(path)
      self.assertEqual(head, _PNG_MAGIC)
      self.assertEqual(image.size, (96, 42))
      pixels = np.asarray(image.convert('RGB'))
      # The left panel is the image itself.
      expected = images[k] if dtype == np.uint8 else np.round(
          (images[k] + 1) / 2 * 255).astype(np.uint8)
      np.testing.assert_allclose(pixels[10:, :32].astype(int),
                                 expected.astype(int), atol=1)
      # The gt overlay keeps the image where gt is 0 and tints inside.
      np.testing.assert_array_equal(pixels[10 + 20:, 32 + 20:64],
                                    pixels[10 + 20:, 20:32])
      self.assertFalse(np.array_equal(pixels[10 + 5:10 + 11, 32 + 5:32 + 11],
                                      pixels[10 + 5:10 + 11, 5:11]))

  def test_overlay_grid(self):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    gts = np.zeros((3, 8, 8))
    gts[:, 2:6, 2:6] = 1.0
    preds = rng.random((3, 16, 16))
    path = os.path.join(self.tmp_dir, 'g', 'grid.png')
    out = report.save_overlay_grid(path, images, gts, preds,
                                   ['best', 'median', 'worst'], title='T',
                                   panel_size=64, text_height=10)
    self.assertEqual(out, path)
    head, image = _read_png(path)
    self.assertEqual(head, _PNG_MAGIC)
    # Header of 2 text lines, then per row a caption line and 64 px panels.
    self.assertEqual(image.size, (3 * 64, 2 * 10 + 3 * (10 + 64)))
    pixels = np.asarray(image.convert('RGB')).astype(int)
    for k in range(3):
      top = 20 + k * 74 + 10
      left = pixels[top:top + 64, :64]
      gt_panel = pixels[top:top + 64, 64:128]
      # The left panel is the image (upsampled 2x); the gt panel keeps it
      # where the ground truth is 0 and tints it inside the square.
      np.testing.assert_allclose(left[20:44, 20:44].mean(),
                                 images[k, 10:22, 10:22].mean(), atol=8)
      np.testing.assert_array_equal(gt_panel[:6, :6], left[:6, :6])
      self.assertGreater(np.abs(gt_panel[24:40, 24:40] -
                                left[24:40, 24:40]).sum(), 0)
    # The default panel is at least 160 px so captions fit.
    report.save_overlay_grid(path, images[:1], gts[:1], preds[:1], ['x'])
    self.assertEqual(_read_png(path)[1].size, (480, 14 + 14 + 160))

  def test_overlay_grid_bad_input_raises(self):
    path = os.path.join(self.tmp_dir, 'g.png')
    with self.assertRaisesRegex(ValueError, 'preds holds 1 examples but '
                                'captions holds 2'):
      report.save_overlay_grid(path, np.zeros((2, 8, 8, 3)),
                               np.zeros((2, 8, 8)), np.zeros((1, 8, 8)),
                               ['a', 'b'])
    with self.assertRaisesRegex(ValueError, 'captions is empty'):
      report.save_overlay_grid(path, np.zeros((0, 8, 8, 3)),
                               np.zeros((0, 8, 8)), np.zeros((0, 8, 8)), [])

  def test_overlays_length_mismatch_raises(self):
    with self.assertRaisesRegex(ValueError, 'gts holds 1 examples'):
      report.save_overlays(self.tmp_dir,
                           np.zeros((2, 8, 8, 3)), np.zeros((1, 8, 8)),
                           np.zeros((2, 8, 8)), ['a', 'b'])

  def test_colormap_endpoints(self):
    colors = report.colormap_jet(np.array([0.0, 0.5, 1.0, 2.0]))
    np.testing.assert_allclose(colors[0], [0, 0, 0.5])
    np.testing.assert_allclose(colors[1], [0.5, 1, 0.5])
    np.testing.assert_allclose(colors[2], [0.5, 0, 0])
    np.testing.assert_allclose(colors[3], colors[2])

  @parameterized.parameters(400, 240)
  def test_score_scatter(self, size):
    rng = np.random.default_rng(1)
    true = rng.random(30)
    pred = np.clip(true + rng.normal(0, 0.1, 30), 0, 1)
    path = os.path.join(self.tmp_dir, 'p', 'plaus.png')
    report.save_score_scatter(path, pred, true, 'plausibility', size=size)
    head, image = _read_png(path)
    self.assertEqual(head, _PNG_MAGIC)
    self.assertEqual(image.size, (size, size))
    pixels = np.asarray(image.convert('RGB'))
    # Some points in the marker colour were drawn.
    self.assertGreater(np.sum(np.all(pixels == (31, 119, 180), axis=-1)), 30)

  def test_score_scatter_constant_prediction(self):
    path = os.path.join(self.tmp_dir, 'c.png')
    report.save_score_scatter(path, np.full(5, 0.5), np.linspace(0, 1, 5),
                              'overall')
    self.assertEqual(_read_png(path)[1].size, (400, 400))

  def test_score_scatter_shape_mismatch_raises(self):
    with self.assertRaisesRegex(ValueError, '1-D of one length'):
      report.save_score_scatter('/nonexistent/x.png', np.zeros(3),
                                np.zeros(4), 'overall')


if __name__ == '__main__':
  absltest.main()
