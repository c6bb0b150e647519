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
"""Tests for train-time augmentation and the port's augmented prompts.

Augmentation is checked on crafted records whose image is bright exactly
where both heatmaps are 1: after any flip / crop, the image brightness and
the heatmaps must still coincide.
"""

import dataclasses
import io
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image
import seqio
import tensorflow as tf

from richhf_jax import inference
from richhf_jax import test_utils
from richhf_jax.data import pipeline
from richhf_jax.data import preprocessors as pp
from richhf_jax.data import release
from richhf_jax.data import tasks
from richhf_jax.data import testing
from richhf_jax.models import rahf

_HEATMAPS = (pp.IMPLAUSIBILITY_HEATMAP, pp.MISALIGNMENT_HEATMAP)
# Blob boxes (top, left, bottom, right) in fractions of the side, all off
# the vertical centre line so that a flip moves them.
_BOXES = ((0.125, 0.5625, 0.5, 0.9375), (0.5, 0.0625, 0.875, 0.375),
          (0.25, 0.625, 0.75, 1.0), (0.0, 0.0, 0.375, 0.5),
          (0.5, 0.5, 1.0, 0.875), (0.125, 0.125, 0.625, 0.4375),
          (0.375, 0.6875, 0.8125, 0.9375))


def _mask(side, box):
  top, left, bottom, right = (int(round(v * side)) for v in box)
  m = np.zeros((side, side), bool)
  m[top:bottom, left:right] = True
  return m


def _png(array, mode):
  buf = io.BytesIO()
  Image.fromarray(array, mode).save(buf, format='PNG')
  return buf.getvalue()


def _blob_record(uid, box):
  """A joined example: image bright exactly where both heatmaps are 1."""
  image = np.where(_mask(64, box)[..., None], 230, 20).astype(np.uint8)
  heatmap = _png(np.where(_mask(release.HEATMAP_SIZE, box), 255, 0).astype(
      np.uint8), 'L')
  return testing.joined_example(
      uid=uid, prompt=f'a bright square number {uid}',
      image=_png(np.repeat(image, 3, axis=-1), 'RGB'), artifact_map=heatmap,
      overrides={release.MISALIGNMENT_MAP: heatmap})


def _brightness(image, side):
  """[S, S, 3] in [-1, 1] -> mean brightness [side, side] (block means)."""
  gray = image.mean(-1)
  k = gray.shape[0] // side
  return gray.reshape(side, k, side, k).mean((1, 3))


def _corr(a, b):
  return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _take(it, n):
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class AugmentExampleTest(absltest.TestCase):
  """`preprocessors.augment` on in-memory features."""

  def setUp(self):
    super().setUp()
    box = _BOXES[0]
    image = np.where(_mask(32, box)[..., None], 0.8, -0.8)
    self.heatmap = _mask(16, box).astype(np.float32)
    self.example = {
        pp.IMAGE: np.repeat(image, 3, axis=-1).astype(np.float32),
        pp.IMPLAUSIBILITY_HEATMAP: self.heatmap,
        pp.MISALIGNMENT_HEATMAP: self.heatmap.copy(),
        pp.SCORES: np.float32([0.1, 0.2, 0.3, 0.4])}

  def _augmented(self, mode, n=16, seed=0, start=0):
    ds = tf.data.Dataset.from_tensors(self.example).repeat(n)
    return list(pp.augment(ds, mode, seed, start=start).as_numpy_iterator())

  def test_heatmaps_move_with_the_image(self):
    for mode in ('flip', 'crop', 'flip_crop'):
      moved = 0
      for k, out in enumerate(self._augmented(mode)):
        where = f'{mode} example {k}'
        np.testing.assert_array_equal(out[pp.IMPLAUSIBILITY_HEATMAP],
                                      out[pp.MISALIGNMENT_HEATMAP], where)
        np.testing.assert_array_equal(out[pp.SCORES],
                                      self.example[pp.SCORES], where)
        hm = out[pp.IMPLAUSIBILITY_HEATMAP]
        bright = _brightness(out[pp.IMAGE], 16)
        self.assertGreater(_corr(bright, hm), 0.95, where)
        if np.abs(hm - self.heatmap).max() > 0.5:
          moved += 1
          # The moved heatmap fits the image better than the original.
          self.assertGreater(_corr(bright, hm), _corr(bright, self.heatmap),
                             where)
      self.assertGreater(moved, 4, mode)

  def test_flip_is_an_exact_coin_flip(self):
    outs = self._augmented('flip', n=32)
    flipped = 0
    for out in outs:
      hm = out[pp.IMPLAUSIBILITY_HEATMAP]
      if np.array_equal(hm, self.heatmap):
        np.testing.assert_array_equal(out[pp.IMAGE], self.example[pp.IMAGE])
      else:
        np.testing.assert_array_equal(hm, self.heatmap[:, ::-1])
        np.testing.assert_array_equal(out[pp.IMAGE],
                                      self.example[pp.IMAGE][:, ::-1])
        flipped += 1
    self.assertBetween(flipped, 8, 24)

  def test_crop_zooms_in_by_at_most_a_fifth(self):
    for out in self._augmented('crop'):
      hm = out[pp.IMPLAUSIBILITY_HEATMAP]
      self.assertBetween(float(hm.min()), 0.0, 1.0)
      self.assertBetween(float(hm.max()), 0.0, 1.0)
      # A crop of side f scales the blob's area by 1 / f^2, f in [0.8, 1]
      # (less where the crop cuts the blob off).
      self.assertLessEqual(hm.sum(), self.heatmap.sum() / 0.8**2 + 1e-3)
    areas = [o[pp.IMPLAUSIBILITY_HEATMAP].sum() for o in self._augmented(
        'crop')]
    self.assertGreater(np.ptp(areas), 1.0)  # Crops differ.

  def test_randomness_follows_seed_and_position(self):
    a = self._augmented('flip_crop', n=8)
    b = self._augmented('flip_crop', n=8)
    self.assertTrue(all(_equal(x, y) for x, y in zip(a, b)))
    tail = self._augmented('flip_crop', n=5, start=3)
    self.assertTrue(all(_equal(x, y) for x, y in zip(tail, a[3:])))
    other = self._augmented('flip_crop', n=8, seed=1)
    self.assertFalse(all(_equal(x, y) for x, y in zip(other, a)))

  def test_none_and_bad_mode(self):
    ds = tf.data.Dataset.from_tensors(self.example)
    self.assertIs(pp.augment(ds, 'none', 0), ds)
    with self.assertRaisesRegex(ValueError, 'augment=.rotate.*flip'):
      pp.augment(ds, 'rotate', 0)


class AugmentPipelineTest(absltest.TestCase):
  """The training stream of `pipeline.get_dataset` with augmentation."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(prefix='richhf_augment_')
    for split, n in (('train', 7), ('dev', 2), ('test', 2)):
      testing.write_records(
          os.path.join(root, f'{split}.tfrecord-00000-of-00001'),
          [_blob_record(f'{split}{i}', _BOXES[i]) for i in range(n)])
    cls.model_config = test_utils.tiny_config()  # 32 px, 16 x 16 heatmaps.
    cls.plain = pipeline.DataConfig(
        root, testing.synthetic_joined()['vocab'], input_length=16,
        target_length=16, shuffle_buffer_size=4, name_prefix='augment_test')
    cls.data = dataclasses.replace(cls.plain, augment='flip_crop')

  def _stream(self, data, start_step=0, split='train'):
    return pipeline.numpy_batches(pipeline.get_dataset(
        data, self.model_config, split, 3, shuffle=True, repeat=True,
        start_step=start_step))

  def test_training_heatmaps_move_with_the_image(self):
    got = _take(self._stream(self.data), 5)  # 15 examples, > 2 epochs
    plain = _take(self._stream(self.plain), 5)
    moved = 0
    for b, (aug, ref) in enumerate(zip(got, plain)):
      for key in aug:  # Same examples in the same order; only pixels move.
        if key not in (pp.IMAGE,) + _HEATMAPS:
          np.testing.assert_array_equal(aug[key], ref[key], key)
      for i in range(len(aug['scores'])):
        where = f'batch {b} example {i}'
        bright = _brightness(aug[pp.IMAGE][i], 16)
        for key in _HEATMAPS:
          self.assertGreater(_corr(bright, aug[key][i]), 0.9,
                             f'{where} {key}')
        if not np.allclose(aug[_HEATMAPS[0]][i], ref[_HEATMAPS[0]][i],
                           atol=0.05):
          moved += 1
    self.assertGreater(moved, 5)

  def test_resume_equals_uninterrupted_stream(self):
    full = _take(self._stream(self.data), 8)
    for start in (2, 5):  # Mid-epoch starts (7 records, batches of 3).
      resumed = _take(self._stream(self.data, start_step=start), 3)
      for k, (a, b) in enumerate(zip(resumed, full[start:start + 3])):
        self.assertTrue(_equal(a, b), f'start {start} batch {k}')
    cached = dataclasses.replace(self.data, cache_decoded=True)
    for k, (a, b) in enumerate(zip(_take(self._stream(cached), 8), full)):
      self.assertTrue(_equal(a, b), f'cached batch {k}')
    resumed = _take(self._stream(cached, start_step=5), 2)
    for k, (a, b) in enumerate(zip(resumed, full[5:7])):
      self.assertTrue(_equal(a, b), f'cached resumed batch {k}')

  def test_evaluation_data_is_never_augmented(self):
    def batches(data, split, repeat):
      ds = pipeline.get_dataset(data, self.model_config, split, 2,
                                shuffle=False, repeat=repeat)
      return _take(pipeline.numpy_batches(ds), 1 if split != 'train' else 3)

    # Validation as train.py reads it (repeat=True) and the training split
    # read once (eval's baseline statistics); evaluation (repeat=False) goes
    # through seqio.get_dataset, which never augments.
    for split, repeat in (('validation', True), ('train', False)):
      for k, (a, b) in enumerate(zip(batches(self.data, split, repeat),
                                     batches(self.plain, split, repeat))):
        self.assertTrue(_equal(a, b), f'{split} repeat={repeat} batch {k}')

  def test_bad_config(self):
    with self.assertRaisesRegex(ValueError, 'DataConfig.augment'):
      dataclasses.replace(self.plain, augment='rotate')
    with self.assertRaisesRegex(ValueError, 'DataConfig.augmented_prompts'):
      dataclasses.replace(self.plain, augmented_prompts='t5')


class AugmentedPromptsTest(absltest.TestCase):
  """'paper' vs 'port' task prompts, in the tasks and in `Predictor`."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = testing.synthetic_joined()
    cls.port_config = test_utils.tiny_config(
        variant='augmented', vit=dataclasses.replace(
            test_utils.tiny_config().vit, class_token=True),
        **rahf.PORT_WIRING)
    cls.paper_config = test_utils.tiny_config(variant='augmented')

  def _predictor(self, config, **kwargs):
    return inference.Predictor(config, {}, self.paths['vocab'],
                               input_length=24, target_length=8, **kwargs)

  def _batch(self, style, model_config):
    data = pipeline.DataConfig(
        self.paths['joined'], self.paths['vocab'], input_length=24,
        target_length=24, name_prefix=f'prompts_{style}',
        augmented_prompts=style)
    ds = pipeline.get_dataset(data, model_config, 'validation', 4,
                              shuffle=False, repeat=False)
    return next(pipeline.numpy_batches(ds))

  def _clean_prompts(self):
    task = seqio.get_mixture_or_task('prompts_port_augmented')
    raw = task.source.get_dataset(split='validation', shuffle=False)
    return [ex[release.CLEAN_PROMPT].decode()
            for ex in raw.take(4).as_numpy_iterator()]

  def test_port_prompts_in_task_and_predictor_agree(self):
    port = self._batch('port', self.port_config)['encoder_input_tokens']
    paper = self._batch('paper', self.paper_config)['encoder_input_tokens']
    multi = self._batch('paper', test_utils.tiny_config())
    prompts = self._clean_prompts()
    tokenizer = inference.Tokenizer(self.paths['vocab'], 24)
    keywords = [t for t, _ in rahf.PORT_AUGMENTED_TASKS].index('keywords')
    for i, prompt in enumerate(prompts):
      for k, (_, prefix) in enumerate(rahf.PORT_AUGMENTED_TASKS):
        np.testing.assert_array_equal(
            port[i, k], tokenizer.encode_text(rahf.augmented_prompt(
                prefix, prompt)), f'example {i} task {k}')
      # The keyword slot is the bare caption: the multi-head input tokens.
      np.testing.assert_array_equal(port[i, keywords],
                                    multi['encoder_input_tokens'][i])
      np.testing.assert_array_equal(port[i, keywords],
                                    tokenizer.encode_text(prompt))
    self.assertFalse(np.array_equal(port, paper))
    # The predictor picks the port strings for the port's wiring.
    np.testing.assert_array_equal(
        self._predictor(self.port_config).tokenize(prompts), port)
    np.testing.assert_array_equal(
        self._predictor(self.paper_config).tokenize(prompts), paper)

  def test_predictor_style_choice(self):
    self.assertEqual(self._predictor(self.port_config).augmented_prompts,
                     'port')
    self.assertEqual(self._predictor(self.paper_config).augmented_prompts,
                     'paper')
    told = self._predictor(self.port_config, augmented_prompts='paper')
    self.assertEqual(told.augmented_prompts, 'paper')
    tokens = told.tokenize(['a red cat'])
    tokenizer = told.tokenizer
    np.testing.assert_array_equal(tokens[0, -1], tokenizer.encode_text(
        'misaligned keywords a red cat'))
    with self.assertRaisesRegex(ValueError, 'augmented_prompts=.t5'):
      self._predictor(self.port_config, augmented_prompts='t5')
    with self.assertRaisesRegex(ValueError, 'augmented_prompts=.t5'):
      tasks.augmented_prefixes('t5')


if __name__ == '__main__':
  absltest.main()
