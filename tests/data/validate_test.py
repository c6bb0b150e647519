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
"""Tests for richhf_jax.data.validate."""

import io
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image
import tensorflow as tf

from richhf_jax.data import release
from richhf_jax.data import validate


def _png(side):
  buf = io.BytesIO()
  Image.fromarray(np.zeros((side, side), np.uint8), mode='L').save(
      buf, format='PNG')
  return buf.getvalue()


def _example(uid, side=512, labels=(1, 1)):
  return release.release_example(
      filename=f'{uid}.png', scores={n: 0.5 for n in release.SCORE_FIELDS},
      artifact_map_png=_png(side), misalignment_map_png=_png(512),
      labels=labels)


def _write(path, examples):
  with tf.io.TFRecordWriter(path) as w:
    for ex in examples:
      w.write(ex if isinstance(ex, bytes) else ex.SerializeToString())
  return path


class ValidateTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()

  def test_good_file(self):
    path = _write(os.path.join(self.tmp, 'good.tfrecord'),
                  [_example('u1'), _example('u2')])
    self.assertEqual(validate.validate_file(path)['ok'], 2)
    self.assertEqual(validate.main([path]), 0)

  def test_bad_heatmap_fails(self):
    path = _write(os.path.join(self.tmp, 'bad.tfrecord'),
                  [_example('u1'), _example('bad-uid', side=256)])
    result = validate.validate_file(path)
    self.assertEqual(result['counts'], {'corrupt': 1})
    self.assertIn('bad-uid.png', result['examples']['corrupt'][0])
    self.assertEqual(validate.main([path]), 1)

  def test_garbage_record_fails(self):
    path = _write(os.path.join(self.tmp, 'garbage.tfrecord'),
                  [b'\xff\x00garbage'])
    self.assertEqual(validate.main([path]), 1)

  def test_truncated_file_fails(self):
    path = _write(os.path.join(self.tmp, 'trunc.tfrecord'),
                  [_example('u1'), _example('u2')])
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:-100])
    result = validate.validate_file(path)
    self.assertEqual(result['counts'].get('unreadable'), 1)
    self.assertEqual(validate.main([path]), 1)

  def test_label_mismatch_counted_not_fatal(self):
    ex = _example('u1', labels=(1, 1, 0))
    ex.features.feature['prompt'].bytes_list.value.append(b'a cat')
    path = _write(os.path.join(self.tmp, 'joined.tfrecord'), [ex])
    result = validate.validate_file(path)
    self.assertEqual(result['counts'], {'label_mismatch': 1})
    self.assertEqual(validate.main([path]), 0)

  def test_missing_file(self):
    self.assertEqual(validate.main([os.path.join(self.tmp, 'nope')]), 2)


if __name__ == '__main__':
  absltest.main()
