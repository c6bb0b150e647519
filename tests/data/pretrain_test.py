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
"""Captioning task and the `richhf_pretrain_mixture`."""

import os
import tempfile

from absl.testing import absltest
import numpy as np
import seqio
import tensorflow as tf

from richhf_jax.data import preprocessors as pp
from richhf_jax.data import tasks
from richhf_jax.data import testing

_S, _H, _L = 16, 8, 24
# Words of the synthetic vocabulary.
_CAPTIONS = ('a red circle', 'two blue squares', 'a big green triangle')


def _caption_records(path, n):
  examples = []
  for i in range(n):
    examples.append(tf.train.Example(features=tf.train.Features(feature={
        'jpeg': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[testing.encode_image('RGB', 'JPEG', 20, seed=i)])),
        'text': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[_CAPTIONS[i].encode()]))})))
  return testing.write_records(path, examples)


class PretrainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = testing.synthetic_joined()
    cls.vocab = tasks.load_vocab(cls.paths['vocab'])
    cls.richhf = tasks.register_tasks(cls.paths['joined'],
                                      cls.paths['vocab'], _S, _H,
                                      name_prefix='pre_richhf')

  def _batch(self, name, split='train', augmented=False, n=8, **kw):
    ds = seqio.get_dataset(
        name, task_feature_lengths=tasks.task_feature_lengths(
            _L, _L, _S, _H, augmented), dataset_split=split,
        feature_converter=tasks.feature_converter(augmented), num_epochs=1,
        shuffle=False, **kw)
    return next(ds.batch(n).as_numpy_iterator())

  def test_caption_task_from_tfrecords(self):
    d = tempfile.mkdtemp()
    _caption_records(os.path.join(d, 'c.tfrecord'), 3)
    source = tasks.caption_tfrecord_source(
        {'train': os.path.join(d, '*.tfrecord')}, 'jpeg', 'text')
    name = tasks.register_caption_task(
        'pre_caption_rec', source, self.paths['vocab'], _S, _H,
        image_key='jpeg', caption_key='text')
    b = self._batch(name)
    self.assertLen(b['image'], 3)
    texts = sorted(self.vocab.decode(r.tolist())
                   for r in b['decoder_target_tokens'])
    self.assertEqual(texts, sorted(_CAPTIONS))
    for row in b['encoder_input_tokens']:
      self.assertEqual(self.vocab.decode(row.tolist()), pp.CAPTION_PROMPT)
    np.testing.assert_array_equal(b['heatmap_weight'], 0.0)
    np.testing.assert_array_equal(b['score_weight'], 0.0)
    np.testing.assert_array_equal(b['implausibility_heatmap'], 0.0)
    np.testing.assert_array_equal(b['scores'], 0.0)
    self.assertGreater(b['image'].std(), 0.1)
    self.assertEqual(b['decoder_loss_weights'].sum(),
                     np.count_nonzero(b['decoder_target_tokens']))

  def test_mixture_rates(self):
    caption = tasks.register_caption_task(
        'pre_caption_joined', tasks.caption_joined_source(
            self.paths['joined']), self.paths['vocab'], _S, _H,
        image_key='image', caption_key='prompt')
    for rate, lo, hi in ((0.0, 0, 0), (1.0, 30, 90)):
      name = tasks.register_pretrain_mixture(
          self.richhf['multihead'], caption, richhf_rate=1.0,
          caption_rate=rate)
      self.assertEqual(name, tasks.PRETRAIN_MIXTURE)
      ds = seqio.get_dataset(
          name, task_feature_lengths=tasks.task_feature_lengths(
              _L, _L, _S, _H), dataset_split='train',
          feature_converter=tasks.feature_converter(), num_epochs=None,
          shuffle=True, seed=0)
      weights = [float(ex['heatmap_weight'][0]) for ex in
                 ds.take(120).as_numpy_iterator()]
      self.assertLen(weights, 120)
      # Equal rates: about half the examples are captions.
      self.assertBetween(weights.count(0.0), lo, hi)

  def test_augmented_caption_task_mixes_with_augmented_richhf(self):
    caption = tasks.register_caption_task(
        'pre_caption_aug', tasks.caption_joined_source(self.paths['joined']),
        self.paths['vocab'], _S, _H, image_key='image', caption_key='prompt',
        augmented=True)
    b = self._batch(caption, augmented=True, n=2)
    rows = b[pp.AUGMENTED_INPUTS]
    self.assertEqual(rows.shape, (2, pp.NUM_AUGMENTED, _L))
    self.assertEqual(self.vocab.decode(rows[0, -1].tolist()),
                     pp.CAPTION_PROMPT)
    name = tasks.register_pretrain_mixture(
        self.richhf['augmented'], caption, name='pre_mix_aug')
    mixed = self._batch(name, augmented=True, n=4, seed=0)
    self.assertEqual(mixed[pp.AUGMENTED_INPUTS].shape,
                     (4, pp.NUM_AUGMENTED, _L))

  def test_bad_rates(self):
    with self.assertRaisesRegex(ValueError, 'rates'):
      tasks.register_pretrain_mixture('a', 'b', richhf_rate=0,
                                      caption_rate=0)

  def test_missing_caption_named(self):
    d = tempfile.mkdtemp()
    testing.write_records(os.path.join(d, 'c.tfrecord'), [
        tf.train.Example(features=tf.train.Features(feature={
            'image': tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[testing.encode_image()]))}))])
    name = tasks.register_caption_task(
        'pre_caption_bad', tasks.caption_tfrecord_source(
            {'train': os.path.join(d, '*.tfrecord')}), self.paths['vocab'],
        _S, _H)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                'missing or empty caption'):
      self._batch(name)


if __name__ == '__main__':
  absltest.main()
