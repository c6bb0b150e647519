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
"""Tests for richhf_jax.data.release."""

import io
import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image

from richhf_jax.data import release


def _png(arr, mode='L'):
  buf = io.BytesIO()
  Image.fromarray(arr, mode=mode).save(buf, format='PNG')
  return buf.getvalue()


def _example(**overrides):
  hm = np.zeros((512, 512), np.uint8)
  hm[10:20, 10:20] = 255
  kwargs = dict(filename='abc-123.png',
                scores={n: 0.5 for n in release.SCORE_FIELDS},
                artifact_map_png=_png(hm), misalignment_map_png=_png(hm * 0),
                labels=[1, 0, 1])
  kwargs.update(overrides)
  return release.release_example(**kwargs)


class WordsTest(parameterized.TestCase):

  @parameterized.parameters(
      ('a yellow cat.', ['a', 'yellow', 'cat']),
      ('Hi,  "there": you?!;x', ['Hi', 'there', 'you', 'x']),
      ('', []),
      ('  ,,. ', []),
      ("don't stop-now", ["don't", 'stop-now']),
  )
  def test_prompt_words(self, prompt, words):
    self.assertEqual(release.prompt_words(prompt), words)

  def test_clean_and_marked(self):
    words = release.prompt_words('a yellow cat.')
    self.assertEqual(release.clean_prompt('a yellow cat.'), 'a yellow cat')
    target = release.marked_target(words, [1, 0, 1])
    self.assertEqual(target, 'a yellow_0 cat')
    self.assertEqual(release.parse_marked(target), (words, [1, 0, 1]))

  def test_marked_round_trip_all_patterns(self):
    words = ['two', 'red', 'squares']
    for bits in range(8):
      labels = [(bits >> i) & 1 for i in range(3)]
      self.assertEqual(
          release.parse_marked(release.marked_target(words, labels)),
          (words, labels))

  def test_marked_count_mismatch(self):
    with self.assertRaises(release.LabelCountMismatchError):
      release.marked_target(['a', 'cat'], [1])

  def test_uid_from_filename(self):
    self.assertEqual(release.uid_from_filename('dir/ab-cd.png'), 'ab-cd')
    self.assertEqual(release.uid_from_filename('ab-cd'), 'ab-cd')


class ParseTest(absltest.TestCase):

  def test_valid(self):
    rec = release.parse_release_example(_example().SerializeToString(),
                                        prompt='a yellow cat.')
    self.assertEqual(rec.uid, 'abc-123')
    self.assertEqual(rec.labels, (1, 0, 1))
    self.assertEqual(rec.artifact_map.shape, (512, 512))
    self.assertEqual(rec.artifact_map.dtype, np.uint8)
    self.assertEqual(rec.artifact_map.max(), 255)
    self.assertEqual(rec.scores, (0.5,) * 4)

  def test_exact_fields(self):
    self.assertCountEqual(_example().features.feature.keys(),
                          release.RELEASE_FIELDS)

  def test_missing_field(self):
    ex = _example()
    del ex.features.feature['artifact_score']
    with self.assertRaisesRegex(release.CorruptRecordError,
                                'abc-123.png.*artifact_score'):
      release.parse_release_example(ex.SerializeToString())

  def test_wrong_type(self):
    ex = _example()
    ex.features.feature['overall_score'].Clear()
    ex.features.feature['overall_score'].bytes_list.value.append(b'0.5')
    with self.assertRaisesRegex(release.CorruptRecordError, 'float_list'):
      release.parse_release_example(ex.SerializeToString())

  def test_bad_heatmap_size(self):
    ex = _example(artifact_map_png=_png(np.zeros((256, 256), np.uint8)))
    with self.assertRaisesRegex(release.CorruptRecordError,
                                'abc-123.png.*512x512, got 256x256'):
      release.parse_release_example(ex.SerializeToString())

  def test_bad_heatmap_channels(self):
    ex = _example(misalignment_map_png=_png(
        np.zeros((512, 512, 3), np.uint8), mode='RGB'))
    with self.assertRaisesRegex(release.CorruptRecordError, 'single-channel'):
      release.parse_release_example(ex.SerializeToString())

  def test_undecodable_heatmap(self):
    ex = _example(artifact_map_png=b'not a png')
    with self.assertRaisesRegex(release.CorruptRecordError, 'decodable'):
      release.parse_release_example(ex.SerializeToString())

  def test_bad_scores(self):
    for value in (math.nan, math.inf, 1.5, -0.1):
      scores = {n: 0.5 for n in release.SCORE_FIELDS}
      scores['misalignment_score'] = value
      with self.assertRaisesRegex(release.CorruptRecordError,
                                  'misalignment_score'):
        release.parse_release_example(
            _example(scores=scores).SerializeToString())

  def test_bad_label(self):
    ex = _example()
    ex.features.feature['prompt_misalignment_label'].bytes_list.value[0] = (
        b'1 2 0')
    with self.assertRaisesRegex(release.CorruptRecordError, "'2'"):
      release.parse_release_example(ex.SerializeToString())

  def test_count_mismatch_is_distinct(self):
    with self.assertRaises(release.LabelCountMismatchError) as cm:
      release.parse_release_example(_example().SerializeToString(),
                                    prompt='a yellow cat sits')
    self.assertNotIsInstance(cm.exception, release.CorruptRecordError)
    self.assertIn('abc-123.png', str(cm.exception))

  def test_not_an_example(self):
    with self.assertRaises(release.CorruptRecordError):
      release.parse_release_example(b'\xff\x00garbage')


if __name__ == '__main__':
  absltest.main()
