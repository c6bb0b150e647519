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
"""Tests for richhf_jax.data.pipeline: variants, resume, sources."""

import dataclasses

from absl.testing import absltest
import numpy as np
import seqio

from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax.data import pipeline
from richhf_jax.data import testing


def _take(it, n):
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class PipelineTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = testing.synthetic_joined()
    cls.model_config = test_utils.tiny_config()
    cls.data = pipeline.DataConfig(cls.paths['joined'], cls.paths['vocab'],
                                   input_length=16, target_length=24,
                                   shuffle_buffer_size=4)

  def _train(self, start_step=0, seed=None, data=None):
    ds = pipeline.get_dataset(data or self.data, self.model_config, 'train',
                              3, shuffle=True, repeat=True, seed=seed,
                              start_step=start_step)
    return pipeline.numpy_batches(ds)

  def test_resume_equals_uninterrupted_stream(self):
    # 8 train examples, batches of 3: steps 2 and 5 start mid-epoch.
    full = _take(self._train(), 8)
    for start in (2, 5):
      resumed = _take(self._train(start_step=start), 3)
      for k, (a, b) in enumerate(zip(resumed, full[start:start + 3])):
        self.assertTrue(_equal(a, b), f'start {start} batch {k}')
    # numpy_batches' own skip gives the same batches.
    skipped = _take(pipeline.numpy_batches(pipeline.get_dataset(
        self.data, self.model_config, 'train', 3, shuffle=True,
        repeat=True), start_step=5), 1)
    self.assertTrue(_equal(skipped[0], full[5]))

  def test_decoded_cache_gives_the_same_stream(self):
    cached = dataclasses.replace(self.data, cache_decoded=True)
    full = _take(self._train(), 8)
    got = _take(self._train(data=cached), 8)  # crosses 2 epoch boundaries
    for k, (a, b) in enumerate(zip(got, full)):
      self.assertTrue(_equal(a, b), f'batch {k}')
    resumed = _take(self._train(start_step=5, data=cached), 2)
    for k, (a, b) in enumerate(zip(resumed, full[5:7])):
      self.assertTrue(_equal(a, b), f'resumed batch {k}')

  def test_epochs_are_permutations_reshuffled(self):
    batches = _take(self._train(), 16)  # 48 examples = 6 epochs of 8
    scores = np.concatenate([b['scores'] for b in batches])
    epochs = [scores[8 * e:8 * e + 8] for e in range(6)]
    key = lambda x: sorted(map(tuple, x.round(6)))
    for e in epochs[1:]:
      self.assertEqual(key(e), key(epochs[0]))  # same examples
    self.assertTrue(any(not np.array_equal(e, epochs[0])
                        for e in epochs[1:]))  # in different orders
    other = _take(self._train(seed=1), 3)
    self.assertFalse(all(_equal(a, b) for a, b in zip(other, batches)))

  def test_eval_keeps_partial_batch(self):
    ds = pipeline.get_dataset(self.data, self.model_config, 'validation', 3,
                              shuffle=False, repeat=False)
    sizes = [len(b['scores']) for b in pipeline.numpy_batches(ds)]
    self.assertEqual(sizes, [3, 1])

  def test_augmented_variant_batches_fit_the_model(self):
    config = dataclasses.replace(self.model_config, variant='augmented')
    ds = pipeline.get_dataset(self.data, config, 'validation', 2,
                              shuffle=False, repeat=False)
    batch = next(pipeline.numpy_batches(ds))
    self.assertEqual(batch['encoder_input_tokens'].shape,
                     (2, config.num_tasks, self.data.input_length))
    model_lib.check_batch(batch, config)
    model_lib.check_batch(next(self._train()), self.model_config)

  def test_caption_task_targets_the_prompt(self):
    caption = dataclasses.replace(self.data, task='caption')
    lengths = {'input_length': 24, 'target_length': 24}
    labelled = next(pipeline.numpy_batches(pipeline.get_dataset(
        dataclasses.replace(self.data, **lengths), self.model_config,
        'validation', 3, shuffle=False, repeat=False)))
    cap = next(pipeline.numpy_batches(pipeline.get_dataset(
        dataclasses.replace(caption, **lengths), self.model_config,
        'validation', 3, shuffle=False, repeat=False)))
    strip = lambda row: [int(t) for t in row if t > 1]  # no pad, no EOS
    for i in range(3):
      # The decoder writes the (clean) prompt the labelled task encodes.
      self.assertEqual(strip(cap['decoder_target_tokens'][i]),
                       strip(labelled['encoder_input_tokens'][i]))
      # Every caption example has the same fixed encoder text.
      np.testing.assert_array_equal(cap['encoder_input_tokens'][i],
                                    cap['encoder_input_tokens'][0])
    self.assertFalse(np.array_equal(cap['decoder_target_tokens'][0],
                                    cap['decoder_target_tokens'][1]))
    np.testing.assert_array_equal(cap['heatmap_weight'], 0.0)
    np.testing.assert_array_equal(cap['score_weight'], 0.0)
    np.testing.assert_array_equal(labelled['heatmap_weight'], 1.0)
    train = next(self._train(data=caption))  # the training stream too
    model_lib.check_batch(train, self.model_config)
    np.testing.assert_array_equal(train['heatmap_weight'], 0.0)

  def test_mark_loss_weight_scales_only_mark_tokens(self):
    ids = pipeline.mark_token_ids(seqio.SentencePieceVocabulary(
        self.paths['vocab']))
    weighted = dataclasses.replace(self.data, mark_loss_weight=3.0)
    plain, got = _take(self._train(), 6), _take(self._train(data=weighted), 6)
    marks = 0
    for a, b in zip(plain, got):
      self.assertTrue(_equal({k: v for k, v in a.items()
                              if k != 'decoder_loss_weights'},
                             {k: v for k, v in b.items()
                              if k != 'decoder_loss_weights'}))
      is_mark = np.isin(a['decoder_target_tokens'], ids)
      marks += is_mark.sum()
      np.testing.assert_allclose(
          b['decoder_loss_weights'],
          np.where(is_mark, 3.0, 1.0) * a['decoder_loss_weights'])
    self.assertGreater(marks, 0)
    # Evaluation batches keep the plain weights.
    val = lambda d: next(pipeline.numpy_batches(pipeline.get_dataset(
        d, self.model_config, 'validation', 4, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(val(weighted)['decoder_loss_weights'],
                                  val(self.data)['decoder_loss_weights'])
    with self.assertRaisesRegex(ValueError, 'mark_loss_weight'):
      dataclasses.replace(self.data, mark_loss_weight=0.0)

  def test_mark_token_ids(self):
    vocab = seqio.SentencePieceVocabulary(self.paths['vocab'])
    ids = pipeline.mark_token_ids(vocab)
    self.assertEqual(vocab.decode(list(ids)), '_0')

    class TwoPieceMark:  # T5's vocabulary spells `_0` as '_' + '0'.
      def encode(self, text):
        word, _, mark = text.partition('_')
        return [100 + len(word)] + ([7, 8] if mark else []) + [1]

    self.assertEqual(pipeline.mark_token_ids(TwoPieceMark()), (7, 8))

  def test_start_step_needs_repeat(self):
    with self.assertRaisesRegex(ValueError, 'repeat'):
      pipeline.get_dataset(self.data, self.model_config, 'train', 2,
                           shuffle=False, repeat=False, start_step=3)

  def test_bad_config(self):
    with self.assertRaisesRegex(ValueError, 'source'):
      pipeline.DataConfig(self.paths['joined'], self.paths['vocab'],
                          source='parquet')
    with self.assertRaisesRegex(ValueError, r"task='captions'"):
      pipeline.DataConfig(self.paths['joined'], self.paths['vocab'],
                          task='captions')
    with self.assertRaisesRegex(ValueError, "needs source='tfrecord'"):
      pipeline.DataConfig(self.paths['joined'], self.paths['vocab'],
                          task='caption', source='tfds')


if __name__ == '__main__':
  absltest.main()
