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
"""Tests for richhf_jax.apps.inpaint: masks, the mask CLI, choose_best."""

import contextlib
import io
import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image

from richhf_jax import apps
from richhf_jax import inference
from richhf_jax import test_utils
from richhf_jax.apps import inpaint


def _crafted():
  """A 20x20 heatmap: a 4x4 block, a lone pixel and a ring with a hole."""
  hm = np.zeros((20, 20), np.float32)
  hm[2:6, 2:6] = 0.8
  hm[15, 3] = 0.9
  hm[10:15, 10:15] = 0.7
  hm[12, 12] = 0.1  # The hole.
  hm[0, 19] = 0.49  # Below threshold.
  return hm


class MaskTest(absltest.TestCase):

  def test_threshold_holes_and_specks(self):
    hm = _crafted()
    plain = apps.inpaint_mask(hm, 0.5, 0, fill_holes=False)
    np.testing.assert_array_equal(plain, hm >= 0.5)
    filled = inpaint.inpaint_mask(hm, 0.5, 0)
    self.assertTrue(filled[12, 12])
    self.assertEqual(int(filled.sum()), 16 + 1 + 25)
    no_speck = inpaint.inpaint_mask(hm, 0.5, 0, min_area_px=2)
    self.assertFalse(no_speck[15, 3])
    self.assertEqual(int(no_speck.sum()), 16 + 25)
    self.assertEqual(int(inpaint.inpaint_mask(hm, 0.95, 3).sum()), 0)

  def test_dilation_is_a_disk(self):
    hm = np.zeros((15, 15), np.float32)
    hm[7, 7] = 1.0
    for r in (1, 2, 4):
      mask = inpaint.inpaint_mask(hm, 0.5, r)
      yy, xx = np.mgrid[:15, :15]
      np.testing.assert_array_equal(
          mask, (yy - 7) ** 2 + (xx - 7) ** 2 <= r * r, err_msg=str(r))
    self.assertEqual(int(inpaint.inpaint_mask(hm, 0.5, 1).sum()), 5)

  def test_bad_inputs(self):
    hm = _crafted()
    for kwargs, pattern in (
        (dict(heatmap=hm[None]), r'shape \(1, 20, 20\)'),
        (dict(heatmap=hm, threshold=1.5), 'threshold=1.5'),
        (dict(heatmap=hm, dilation_px=-1), 'dilation_px=-1'),
        (dict(heatmap=hm, dilation_px=1.5), 'dilation_px=1.5'),
        (dict(heatmap=np.full((3, 3), np.nan)), 'non-finite')):
      with self.assertRaisesRegex(ValueError, pattern):
        inpaint.inpaint_mask(**kwargs)


class _FakePredictor:
  """Returns fixed plausibility scores and implausibility heatmaps."""

  def __init__(self, scores, heatmaps):
    self.scores, self.heatmaps = scores, heatmaps

  def predict(self, images, prompts, heatmap_size=None):
    del heatmap_size
    assert len(images) == len(prompts) == len(self.scores)
    return [inference.Prediction(
        implausibility_heatmap=h, misalignment_heatmap=h,
        scores={'plausibility': s, 'alignment': 0.0, 'aesthetics': 0.0,
                'overall': 0.0}, marked_prompt='', words=[], misaligned=[],
        misaligned_words=[], image_size=h.shape)
            for s, h in zip(self.scores, self.heatmaps)]


class ChooseBestTest(absltest.TestCase):

  def test_by_plausibility_then_with_the_mask(self):
    left = np.zeros((8, 8), np.float32)
    left[:, :4] = 0.9  # Artifacts where the mask is.
    right = np.zeros((8, 8), np.float32)
    right[:, 4:] = 0.9
    fake = _FakePredictor([0.8, 0.7, 0.75], [left, right, right])
    choice = inpaint.choose_best(['a', 'b', 'c'], 'a cat', fake)
    self.assertEqual(choice.index, 0)
    self.assertEqual(choice.values, [0.8, 0.7, 0.75])
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True  # The left half, at another resolution.
    choice = inpaint.choose_best(['a', 'b', 'c'], 'a cat', fake, mask=mask,
                                 mask_weight=0.5)
    self.assertEqual(choice.index, 2)
    np.testing.assert_allclose(choice.values, [0.8 - 0.45, 0.7, 0.75],
                               atol=1e-6)
    with self.assertRaisesRegex(ValueError, 'at least one candidate'):
      inpaint.choose_best([], 'a cat', fake)


class InpaintCliTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.export = test_utils.tiny_export(os.path.join(cls.tmp, 'export'))

  def _main(self, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      rc = inpaint.main(list(args))
    return rc, out.getvalue(), err.getvalue()

  def test_masks_from_saved_heatmaps(self):
    d = os.path.join(self.tmp, 'preds')
    os.makedirs(d)
    hm = _crafted()
    paths = {}
    for k in ('implausibility', 'misalignment'):
      paths[k] = os.path.join(d, f'x_{k}.png')
      data = hm if k == 'implausibility' else np.zeros_like(hm)
      Image.fromarray(np.round(data * 255).astype(np.uint8)).save(paths[k])
    preds = os.path.join(d, 'predictions.jsonl')
    with open(preds, 'w') as f:
      f.write(json.dumps({'image': 'x.png', 'image_size': [20, 20],
                          'heatmaps': paths}) + '\n')
      f.write(json.dumps({'image': 'y.png'}) + '\n')  # No heatmaps.
    out_dir = os.path.join(self.tmp, 'masks')
    rc, out, err = self._main('--predictions', preds, '--out_dir', out_dir,
                              '--threshold', '0.5', '--dilation_px', '0')
    self.assertEqual(rc, 0, err)
    self.assertIn('1 masks written', out)
    self.assertIn('--save_heatmaps', err)
    with open(os.path.join(out_dir, 'masks.jsonl')) as f:
      [line] = [json.loads(l) for l in f]
    with Image.open(line['mask']) as img:
      mask = np.asarray(img) > 127
    np.testing.assert_array_equal(mask, inpaint.inpaint_mask(hm, 0.5, 0))
    self.assertAlmostEqual(line['masked_fraction'], 42 / 400, places=5)

  def test_masks_by_running_the_predictor(self):
    d = os.path.join(self.tmp, 'imgs')
    os.makedirs(d)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 18, 3), np.uint8)).save(
        os.path.join(d, 'a.png'))
    Image.fromarray(rng.integers(0, 256, (12, 40), np.uint8)).save(
        os.path.join(d, 'b.png'))
    with open(os.path.join(d, 'c.png'), 'wb') as f:
      f.write(b'broken')
    table = os.path.join(d, 'in.jsonl')
    with open(table, 'w') as f:
      for name in ('a.png', 'b.png', 'c.png'):
        f.write(json.dumps({'image': name, 'prompt': 'a red circle'}) + '\n')
    out_dir = os.path.join(self.tmp, 'masks2')
    rc, out, err = self._main('--checkpoint', self.export, '--input_csv',
                              table, '--out_dir', out_dir, '--threshold',
                              '0.3', '--heatmap', 'both', '--batch_size',
                              '2')
    self.assertEqual(rc, 0, err)
    self.assertIn('2 masks written', out)
    self.assertIn('skipped c.png', err)
    with open(os.path.join(out_dir, 'masks.jsonl')) as f:
      lines = [json.loads(l) for l in f]
    for line, size in zip(lines, ((18, 30), (40, 12))):
      with Image.open(line['mask']) as img:
        self.assertEqual(img.size, size)
        self.assertEqual(img.mode, 'L')

  def test_choose_best_with_the_model(self):
    predictor = inference.Predictor.load(self.export, max_batch_size=2)
    rng = np.random.default_rng(3)
    cands = [rng.integers(0, 256, (32, 32, 3), np.uint8) for _ in range(2)]
    choice = inpaint.choose_best(cands, 'a red circle', predictor)
    want = [p.scores['plausibility']
            for p in predictor.predict(cands, ['a red circle'] * 2)]
    np.testing.assert_allclose(choice.values, want, atol=1e-6)
    self.assertEqual(choice.index, int(np.argmax(want)))


if __name__ == '__main__':
  absltest.main()
