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
"""Tests for the predict CLI: every image mode, corrupt files, batch modes."""

import contextlib
import csv
import io
import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image

import gin

from richhf_jax import gin_utils
from richhf_jax import infer
from richhf_jax import predict
from richhf_jax import test_utils
from richhf_jax.data import release

_PROMPTS = {'rgb': 'a red circle', 'gray': 'three yellow triangles',
            'rgba': 'a big orange star', 'cmyk': 'two blue squares',
            'sixteen': 'a green background', 'palette': 'a red star'}


def _write_images(directory):
  """One image per mode plus broken files; returns {stem: file name}."""
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (36, 24, 3), dtype=np.uint8)
  images = {
      'rgb': (Image.fromarray(rgb), 'rgb.png'),
      'gray': (Image.fromarray(rgb[..., 0]), 'gray.png'),
      'rgba': (Image.fromarray(np.dstack([rgb, rgb[..., :1]])), 'rgba.png'),
      'cmyk': (Image.fromarray(rgb).convert('CMYK'), 'cmyk.jpg'),
      'sixteen': (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
                  'sixteen.png'),
      'palette': (Image.fromarray(rgb).convert('P'), 'palette.png'),
  }
  names = {}
  for stem, (img, fname) in images.items():
    img.save(os.path.join(directory, fname))
    names[stem] = fname
  with open(os.path.join(directory, 'corrupt.png'), 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n this is not a png')
  with open(os.path.join(directory, 'rgb.png'), 'rb') as f:
    data = f.read()
  with open(os.path.join(directory, 'truncated.png'), 'wb') as f:
    f.write(data[:len(data) // 2])
  return names


class PredictCliTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.export = test_utils.tiny_export(os.path.join(cls.tmp, 'export'))
    cls.images = os.path.join(cls.tmp, 'images')
    os.makedirs(cls.images)
    cls.names = _write_images(cls.images)
    with open(os.path.join(cls.images, 'notes.md'), 'w'):
      pass  # Not an image extension: ignored by --input_dir.

  def _main(self, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      rc = predict.main(['--checkpoint', self.export, '--batch_size', '2']
                        + list(args))
    return rc, out.getvalue(), err.getvalue()

  @staticmethod
  def _lines(path):
    with open(path) as f:
      return [json.loads(l) for l in f]

  def test_single_image(self):
    out_dir = os.path.join(self.tmp, 'single')
    rc, out, err = self._main(
        '--image', os.path.join(self.images, 'rgba.png'),
        '--prompt', 'a big orange star', '--out_dir', out_dir)
    self.assertEqual(rc, 0, err)
    self.assertRegex(out, r'scores: plausibility=0\.\d{3} alignment=0\.\d{3} '
                     r'aesthetics=0\.\d{3} overall=0\.\d{3}')
    self.assertIn('misaligned words: ', out)
    self.assertIn('marked prompt: ', out)
    overlay = os.path.join(out_dir, 'overlays', 'rgba.png')
    self.assertIn(f'overlay: {overlay}', out)
    with Image.open(overlay) as img:
      # Small images are drawn enlarged (longer side 256).
      self.assertEqual(img.size, (3 * 171, 256 + 14))

  def test_single_corrupt_image_fails(self):
    rc, _, err = self._main(
        '--image', os.path.join(self.images, 'corrupt.png'),
        '--prompt', 'a cat')
    self.assertEqual(rc, 1)
    self.assertIn('corrupt.png', err)

  def test_csv_every_mode_and_broken_files(self):
    table = os.path.join(self.images, 'inputs.csv')
    with open(table, 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['image', 'prompt', 'id'])
      for n, (stem, fname) in enumerate(self.names.items()):
        w.writerow([fname, _PROMPTS[stem], n])
      w.writerow(['corrupt.png', 'a cat', 90])
      w.writerow(['truncated.png', 'a cat', 91])
      w.writerow(['missing.png', 'a cat', 92])
      w.writerow(['rgb.png', '', 93])
    out_dir = os.path.join(self.tmp, 'csv')
    rc, out, err = self._main('--input_csv', table, '--out_dir', out_dir,
                              '--overlays', '--save_heatmaps',
                              '--heatmap_size', 'image')
    self.assertEqual(rc, 0, err)
    self.assertIn('6 predicted, 4 skipped', out)
    self.assertIn('[10/10]', err)  # The progress display's last line.
    lines = self._lines(os.path.join(out_dir, 'predictions.jsonl'))
    self.assertEqual([l['image'] for l in lines], list(self.names.values()))
    for line in lines:
      self.assertEqual(line['words'], release.prompt_words(line['prompt']))
      self.assertLen(line['misaligned'], len(line['words']))
      self.assertLen(line['scores'], 4)
      self.assertEqual(line['image_size'], [36, 24])
      self.assertTrue(os.path.isfile(line['overlay']))
      for path in line['heatmaps'].values():
        hm = predict.read_heatmap_png(path)
        self.assertEqual(hm.shape, (36, 24))
        self.assertAlmostEqual(float(hm.mean()), line['heatmap_stats'][
            os.path.basename(path).rsplit('_', 1)[1][:-4]]['mean'], places=2)
    self.assertEqual(lines[0]['id'], '0')
    skipped = self._lines(os.path.join(out_dir, 'skipped.jsonl'))
    self.assertEqual([s['image'] for s in skipped],
                     ['corrupt.png', 'truncated.png', 'missing.png',
                      'rgb.png'])
    self.assertIn('no prompt', skipped[-1]['error'])
    for name in ('corrupt.png', 'truncated.png', 'missing.png'):
      self.assertIn(f'skipped {name}', err)

  def test_input_dir_prompt_sources(self):
    with open(os.path.join(self.images, 'gray.txt'), 'w') as f:
      f.write('three yellow triangles\n')
    prompts = os.path.join(self.tmp, 'prompts.json')
    with open(prompts, 'w') as f:
      json.dump({'rgb.png': 'a red circle'}, f)
    out_dir = os.path.join(self.tmp, 'dir')
    rc, _, err = self._main('--input_dir', self.images, '--prompts_file',
                            prompts, '--prompt', 'a star', '--out_dir',
                            out_dir, '--no_progress')
    self.assertEqual(rc, 0, err)
    lines = {l['image']: l['prompt']
             for l in self._lines(os.path.join(out_dir, 'predictions.jsonl'))}
    self.assertEqual(lines['rgb.png'], 'a red circle')
    self.assertEqual(lines['gray.png'], 'three yellow triangles')
    self.assertEqual(lines['cmyk.jpg'], 'a star')
    self.assertLen(lines, 6)
    skipped = {s['image'] for s in self._lines(
        os.path.join(out_dir, 'skipped.jsonl'))}
    self.assertEqual(skipped, {'corrupt.png', 'truncated.png'})

  def test_tfrecord(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def feature(v):
      if isinstance(v, float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
      return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    path = os.path.join(self.tmp, 'test.tfrecord-00000-of-00001')
    with open(os.path.join(self.images, 'gray.png'), 'rb') as f:
      good = f.read()
    with tf.io.TFRecordWriter(path) as w:
      for uid, image in (('u1', good), ('u2', b'garbage'), ('u3', good)):
        feats = {'image': feature(image), 'uid': feature(uid.encode()),
                 'prompt': feature(b'a red circle.')}
        for i, name in enumerate(release.SCORE_FIELDS):
          feats[name] = feature(0.25 * i)
        w.write(tf.train.Example(features=tf.train.Features(
            feature=feats)).SerializeToString())
    output = os.path.join(self.tmp, 'tfr', 'out.jsonl')
    rc, _, err = self._main('--tfrecord', path.replace('00000', '?????'),
                            '--output', output)
    self.assertEqual(rc, 0, err)
    lines = self._lines(output)
    self.assertEqual([l['uid'] for l in lines], ['u1', 'u3'])
    self.assertEqual(lines[0]['true_scores'], {
        'plausibility': 0.0, 'alignment': 0.25, 'aesthetics': 0.5,
        'overall': 0.75})
    self.assertEqual(lines[0]['words'], ['a', 'red', 'circle'])
    self.assertIn('skipped u2', err)

  def test_usage_errors(self):
    with self.assertRaises(SystemExit):
      self._main('--image', 'x.png')  # No --prompt.
    with self.assertRaises(SystemExit):
      self._main('--input_dir', self.images)  # No --out_dir / --output.
    rc, _, err = self._main('--input_csv', '/nonexistent.csv', '--output',
                            os.path.join(self.tmp, 'x.jsonl'))
    self.assertEqual(rc, 1)
    self.assertIn('/nonexistent.csv', err)

  def test_infer_gin_run(self):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(self.tmp, 'infer')
    bindings = [f"CHECKPOINT_PATH = '{self.export}'",
                f"INFER_OUTPUT_DIR = '{out_dir}'",
                f"INFER_INPUT_DIR = '{self.images}'",
                "INFER_PROMPT = 'a red circle'", 'INFER_BATCH_SIZE = 2']
    try:
      gin_utils.parse_gin(['gin/runs/infer.gin'], bindings, [root])
      with contextlib.redirect_stderr(io.StringIO()):
        rc = infer.infer()
      lines = self._lines(os.path.join(out_dir, 'predictions.jsonl'))
      self.assertEqual(rc, 0)
      self.assertEqual(len(lines), len(self.names))
      self.assertEqual({l['prompt'] for l in lines}, {'a red circle'})
      gin.clear_config()
      gin_utils.parse_gin(['gin/runs/infer.gin'], bindings[:2], [root])
      with self.assertRaisesRegex(ValueError, 'exactly one of'):
        infer.infer()
    finally:
      gin.clear_config()


if __name__ == '__main__':
  absltest.main()
