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
"""Tests for richhf_jax.data.tasks and preprocessors."""

import os

from absl.testing import absltest
import numpy as np
import seqio
import tensorflow as tf

from richhf_jax.data import preprocessors as pp
from richhf_jax.data import release
from richhf_jax.data import tasks
from richhf_jax.data import testing
from richhf_jax.models import rahf

_S, _H, _L = 32, 8, 32


class TasksTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    paths = testing.synthetic_joined()
    cls.joined = paths['joined']
    cls.vocab_path = paths['vocab']
    cls.names = tasks.register_tasks(cls.joined, cls.vocab_path, _S, _H,
                                     name_prefix='test_richhf')

  def test_multihead_batches(self):
    ds = tasks.get_dataset(self.names['multihead'], 'train',
                           inputs_length=_L, targets_length=_L,
                           image_size=_S, heatmap_size=_H, batch_size=4,
                           shuffle=True, seed=0)
    batches = list(ds.as_numpy_iterator())
    self.assertLen(batches, 2)
    b = batches[0]
    expected = {
        'encoder_input_tokens': ((4, _L), np.int32),
        'decoder_input_tokens': ((4, _L), np.int32),
        'decoder_target_tokens': ((4, _L), np.int32),
        'decoder_loss_weights': ((4, _L), np.int32),
        'image': ((4, _S, _S, 3), np.float32),
        'implausibility_heatmap': ((4, _H, _H), np.float32),
        'misalignment_heatmap': ((4, _H, _H), np.float32),
        'scores': ((4, 4), np.float32),
        'heatmap_weight': ((4, 1), np.float32),
        'score_weight': ((4, 1), np.float32),
    }
    self.assertEqual({k: (v.shape, v.dtype) for k, v in b.items()},
                     expected)
    for batch in batches:
      self.assertBetween(batch['image'].min(), -1.0, 1.0)
      self.assertBetween(batch['image'].max(), -1.0, 1.0)
      self.assertGreater(batch['image'].std(), 0.05)
      for name in ('implausibility_heatmap', 'misalignment_heatmap'):
        self.assertBetween(batch[name].min(), 0.0, 1.0)
        self.assertBetween(batch[name].max(), 0.0, 1.0)
      self.assertBetween(batch['scores'].min(), 0.0, 1.0)
      self.assertBetween(batch['scores'].max(), 0.0, 1.0)
      np.testing.assert_array_equal(batch['heatmap_weight'], 1.0)
      np.testing.assert_array_equal(batch['score_weight'], 1.0)
      # EOS (id 1) ends every target.
      for row in batch['decoder_target_tokens']:
        self.assertEqual(row[np.count_nonzero(row) - 1], 1)

  def test_task_features_match_joined_records(self):
    task = seqio.get_mixture_or_task(self.names['multihead'])
    ds = task.get_dataset(None, split='validation', shuffle=False)
    vocab = task.output_features['targets'].vocabulary
    records = [tf.train.Example.FromString(r) for r in
               tf.data.TFRecordDataset(tf.io.gfile.glob(os.path.join(
                   self.joined, 'dev.tfrecord-*'))).as_numpy_iterator()]
    count = 0
    for ex in ds.as_numpy_iterator():
      count += 1
      target = vocab.decode(ex['targets'].tolist())
      inputs = vocab.decode(ex['inputs'].tolist())
      matches = [r for r in records
                 if r.features.feature['target'].bytes_list.value[0]
                 .decode() == target]
      self.assertNotEmpty(matches, target)
      f = matches[0].features.feature
      self.assertEqual(inputs, f['clean_prompt'].bytes_list.value[0].decode())
      np.testing.assert_allclose(
          ex['scores'], [f[n].float_list.value[0]
                         for n in release.SCORE_FIELDS], rtol=1e-6)
      self.assertEqual(ex['image'].shape, (_S, _S, 3))
    self.assertEqual(count, len(records))

  def test_reregister(self):
    names = tasks.register_tasks(self.joined, self.vocab_path, 16, 4,
                                 name_prefix='test_richhf2')
    names = tasks.register_tasks(self.joined, self.vocab_path, 16, 4,
                                 name_prefix='test_richhf2')
    ds = tasks.get_dataset(names['multihead'], 'test', inputs_length=_L,
                           targets_length=_L, image_size=16, heatmap_size=4,
                           batch_size=2)
    b = next(ds.as_numpy_iterator())
    self.assertEqual(b['image'].shape, (2, 16, 16, 3))

  def test_augmented(self):
    ds = tasks.get_dataset(self.names['augmented'], 'validation',
                           inputs_length=_L, targets_length=_L,
                           image_size=_S, heatmap_size=_H, batch_size=2,
                           augmented=True)
    multi = tasks.get_dataset(self.names['multihead'], 'validation',
                              inputs_length=_L, targets_length=_L,
                              image_size=_S, heatmap_size=_H, batch_size=2)
    b, m = next(ds.as_numpy_iterator()), next(multi.as_numpy_iterator())
    # Same per-image features as the multi-head task, plus the K prompts.
    for key, value in m.items():
      np.testing.assert_array_equal(b[key], value, err_msg=key)
    self.assertEqual(b[pp.AUGMENTED_INPUTS].shape,
                     (2, pp.NUM_AUGMENTED, _L))
    vocab = seqio.SentencePieceVocabulary(self.vocab_path)
    prompt = vocab.decode(m['encoder_input_tokens'][0].tolist())
    for k, (name, prefix) in enumerate(rahf.AUGMENTED_TASKS):
      self.assertEqual(pp.AUGMENTED_OUTPUTS[k], name)
      row = b[pp.AUGMENTED_INPUTS][0, k].tolist()
      self.assertEqual(vocab.decode(row), f'{prefix} {prompt}')
      # Row k is the tokenization of the whole augmented prompt, then EOS.
      ids = vocab.encode(f'{prefix} {prompt}')
      self.assertEqual(row[:len(ids) + 1], ids + [1])

  def test_augmented_prompt_truncated_with_eos(self):
    length = 6
    ds = tasks.get_dataset(self.names['augmented'], 'validation',
                           inputs_length=length, targets_length=_L,
                           image_size=_S, heatmap_size=_H, batch_size=4,
                           augmented=True)
    rows = next(ds.as_numpy_iterator())[pp.AUGMENTED_INPUTS]
    self.assertEqual(rows.shape[-1], length)
    np.testing.assert_array_equal(rows[..., -1], 1)  # all cut, EOS last

  def test_undecodable_image_names_uid(self):
    ex = {'image': tf.constant(b'not an image'),
          'uid': tf.constant(b'my-bad-uid')}
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                'my-bad-uid'):
      pp.decode_image(ex['image'], ex['uid'], 8)

  def test_decode_grayscale_and_rgba(self):
    for channels in (1, 4):
      img = tf.io.encode_png(tf.fill([10, 12, channels], tf.constant(
          255, tf.uint8)))
      out = pp.decode_image(img, tf.constant(b'u'), 8)
      self.assertEqual(out.shape, (8, 8, 3))
      np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-5)

  def test_feature_lengths(self):
    want = {'inputs': 16, 'targets': 24, 'image': 64,
            'implausibility_heatmap': 32, 'misalignment_heatmap': 32,
            'scores': 4, 'heatmap_weight': 1, 'score_weight': 1}
    self.assertEqual(tasks.task_feature_lengths(16, 24, 64, 32), want)
    self.assertEqual(tasks.task_feature_lengths(16, 24, 64, 32, True),
                     dict(want, augmented_inputs=7))


if __name__ == '__main__':
  absltest.main()
