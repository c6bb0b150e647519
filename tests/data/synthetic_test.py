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
"""Tests for richhf_jax.data.synthetic."""

import glob
import io
import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image
import pyarrow.parquet as pq
import tensorflow as tf

from richhf_jax.data import release
from richhf_jax.data import synthetic
from richhf_jax.data import vocab

_COUNTS = dict(num_train=10, num_dev=4, num_test=4)


def _files(root):
  return sorted(os.path.relpath(p, root) for p in glob.glob(
      os.path.join(root, '**', '*'), recursive=True) if os.path.isfile(p))


def _records(path):
  return [tf.train.Example.FromString(r) for r in
          tf.data.TFRecordDataset(path).as_numpy_iterator()]


class SyntheticTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.dirs = [os.path.join(cls.tmp, n) for n in ('a', 'b', 'c')]
    # 'b' repeats 'a' with two worker processes: the same bytes.
    for d, seed, workers in zip(cls.dirs, (3, 3, 4), (1, 2, 1)):
      synthetic.generate(d, seed=seed, rows_per_shard=8, row_group_size=3,
                         workers=workers, **_COUNTS)
    cls.root = cls.dirs[0]
    cls.meta = {s: [json.loads(l) for l in open(
        os.path.join(cls.root, 'meta', f'{s}.jsonl'))]
                for s in synthetic.SPLITS}

  def test_layout(self):
    files = _files(self.root)
    for split in synthetic.SPLITS:
      self.assertIn(f'richhf18k/{split}.tfrecord', files)
    self.assertIn('vocab/spm.model', files)
    self.assertIn('pickapic/test-00000-of-00001.parquet', files)
    self.assertTrue(any(f.startswith('pickapic/train-00000-of-') for f in
                        files))

  def test_deterministic(self):
    files = _files(self.dirs[0])
    self.assertEqual(files, _files(self.dirs[1]))
    for f in files:
      with open(os.path.join(self.dirs[0], f), 'rb') as fa, open(
          os.path.join(self.dirs[1], f), 'rb') as fb:
        self.assertEqual(fa.read(), fb.read(), f)
    with open(os.path.join(self.dirs[0], 'richhf18k/train.tfrecord'),
              'rb') as fa, open(os.path.join(
                  self.dirs[2], 'richhf18k/train.tfrecord'), 'rb') as fc:
      self.assertNotEqual(fa.read(), fc.read())

  def test_release_schema(self):
    for split, n in zip(synthetic.SPLITS, _COUNTS.values()):
      exs = _records(os.path.join(self.root, 'richhf18k',
                                  f'{split}.tfrecord'))
      self.assertLen(exs, n)
      for ex, meta in zip(exs, self.meta[split]):
        feats = ex.features.feature
        self.assertCountEqual(feats.keys(), release.RELEASE_FIELDS)
        for name in release.FLOAT_FIELDS:
          self.assertEqual(feats[name].WhichOneof('kind'), 'float_list')
        for name in release.BYTES_FIELDS:
          self.assertEqual(feats[name].WhichOneof('kind'), 'bytes_list')
        rec = release.parse_release_example(ex, prompt=meta['prompt'])
        self.assertEqual(rec.filename, meta['uid'] + '.png')
        self.assertEqual(list(rec.labels), meta['labels'])
        for name in release.HEATMAP_FIELDS:
          with Image.open(io.BytesIO(feats[name].bytes_list.value[0])) as im:
            self.assertEqual((im.format, im.mode, im.size),
                             ('PNG', 'L', (512, 512)))
        for name in release.SCORE_FIELDS:
          expected = (np.mean(meta['likert'][name]) - 1) / 4
          self.assertAlmostEqual(feats[name].float_list.value[0], expected,
                                 places=6)

  def test_heatmaps_are_rater_means_of_discs(self):
    exs = _records(os.path.join(self.root, 'richhf18k', 'train.tfrecord'))
    nonzero = 0
    for ex, meta in zip(exs, self.meta['train']):
      rec = release.parse_release_example(ex)
      for arr, points in ((rec.artifact_map, meta['artifact_points']),
                          (rec.misalignment_map,
                           meta['misalignment_points'])):
        self.assertLessEqual(set(np.unique(arr)), {0, 85, 170, 255})
        self.assertLen(points, 3)
        np.testing.assert_array_equal(arr, synthetic.rater_heatmap(points))
        nonzero += bool(arr.any())
    self.assertGreater(nonzero, 0)
    # One point from one rater: a disc of radius 512/20 = 25.6 px at 85
    # (pixel centres within 25.6 px of (256, 256): 52 pixels across).
    one = synthetic.rater_heatmap([[(0.5, 0.5)], [], []])
    self.assertEqual(set(np.unique(one)), {0, 85})
    self.assertAlmostEqual((one > 0).sum() / (np.pi * 25.6 ** 2), 1.0,
                           delta=0.03)
    ys, xs = np.nonzero(one)
    self.assertEqual((xs.max() - xs.min() + 1, ys.max() - ys.min() + 1),
                     (52, 52))

  def test_rater_heatmap_equals_the_dense_definition(self):
    # Overlapping discs of one rater count once; discs cut by the border;
    # 1-4 raters (so 255 * k / n rounds); a rater with no points.
    rng = np.random.default_rng(11)
    size = 64
    centres = np.arange(size, dtype=np.float32) + 0.5
    for _ in range(40):
      raters = [[tuple(rng.uniform(-0.05, 1.05, 2))
                 for _ in range(int(rng.integers(0, 4)))]
                for _ in range(int(rng.integers(1, 5)))]
      raters[0] = raters[0] + [(raters[0] or [(0.5, 0.5)])[0]]
      union = [np.any([(centres[None, :] - x * size) ** 2 +
                       (centres[:, None] - y * size) ** 2
                       <= (size / 20) ** 2 for x, y in pts] or
                      [np.zeros((size, size), bool)], axis=0)
               for pts in raters]
      expected = np.round(np.mean(union, axis=0) * 255).astype(np.uint8)
      np.testing.assert_array_equal(
          synthetic.rater_heatmap(raters, size), expected, str(raters))

  def test_scores_follow_defects(self):
    art = {True: [], False: []}
    mis = {True: [], False: []}
    for i in range(150):
      ex, _ = synthetic.make_example(np.random.default_rng([7, i]), 'train',
                                     (64,))
      art[bool(ex.artifacts)].append(ex.scores['artifact_score'])
      mis[bool(ex.misalignments)].append(ex.scores['misalignment_score'])
      self.assertEqual(bool(ex.artifact_map.any()) and not ex.artifacts,
                       False)
      self.assertEqual(0 in ex.labels, bool(ex.misalignments))
    for d in (art, mis):
      self.assertGreater(len(d[True]), 20)
      self.assertGreater(len(d[False]), 20)
      self.assertGreater(np.mean(d[False]) - np.mean(d[True]), 0.2)

  def test_images_and_prompts(self):
    for meta in self.meta['train']:
      self.assertEqual(release.prompt_words(meta['prompt']),
                       release.prompt_words(meta['prompt'].strip()))
      self.assertIn(meta['image_size'], synthetic.IMAGE_SIZES)

  def test_parquet(self):
    labeled = {g: [m['uid'] for s in synthetic.SPLITS for m in self.meta[s]
                   if synthetic.PICKAPIC_SPLIT[s] == g]
               for g in ('train', 'test')}
    for group in ('train', 'test'):
      paths = sorted(glob.glob(os.path.join(self.root, 'pickapic',
                                            f'{group}-*.parquet')))
      table = pq.read_table(paths)
      for col in ('caption', 'image_0_uid', 'image_1_uid', 'jpg_0', 'jpg_1'):
        self.assertIn(col, table.column_names)
      u0 = table.column('image_0_uid').to_pylist()
      u1 = table.column('image_1_uid').to_pylist()
      all_uids = set(u0) | set(u1)
      self.assertLessEqual(set(labeled[group]), all_uids)
      self.assertGreater(len(all_uids - set(labeled[group])), 0)
      # Shuffled: the labeled uids do not come in release order.
      first = [u for pair in zip(u0, u1) for u in pair
               if u in set(labeled[group])]
      self.assertNotEqual(list(dict.fromkeys(first)), labeled[group])
      jpg = table.column('jpg_0').to_pylist()[0]
      with Image.open(io.BytesIO(jpg)) as im:
        self.assertEqual(im.format, 'JPEG')
    # Train and dev images live in Pick-a-Pic's train split only.
    test_uids = set(pq.read_table(glob.glob(os.path.join(
        self.root, 'pickapic', 'test-*.parquet'))).column(
            'image_0_uid').to_pylist())
    self.assertFalse(test_uids & {m['uid'] for m in self.meta['dev']})

  def test_vocab(self):
    path = os.path.join(self.root, 'vocab', 'spm.model')
    sp = vocab.load(path)
    self.assertEqual((sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()),
                     (0, 1, 2, -1))
    texts = []
    for split in synthetic.SPLITS:
      for m in self.meta[split]:
        words = release.prompt_words(m['prompt'])
        texts += [' '.join(words), release.marked_target(words, m['labels'])]
    self.assertEqual(vocab.round_trips(path, texts), [])
    words = {w for t in texts for w in t.replace('_0', ' ').split()}
    self.assertEqual([w for w in sorted(words) if len(sp.encode(w)) != 1],
                     [])


if __name__ == '__main__':
  absltest.main()
