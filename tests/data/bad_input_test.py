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
"""Bad input (issue "Bad input"): clear errors or counted, logged skips.

Join: corrupt / truncated release records, corrupt or truncated images,
empty prompts are skipped and counted; grayscale / RGBA / CMYK / 16-bit
images are kept. Pipeline: missing fields, wrong heatmap sizes, non-finite
scores, empty prompts, undecodable images and unparseable records fail with
an error naming the uid (or the problem); images of every mode decode to
RGB; prompts longer than the sequence length are truncated and counted.
"""

import glob
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from richhf_jax.data import join
from richhf_jax.data import pipeline
from richhf_jax.data import preprocessors as pp
from richhf_jax.data import release
from richhf_jax.data import tasks
from richhf_jax.data import testing
from richhf_jax.data import validate

_S, _H = 16, 8
_JPEG = testing.encode_image('RGB', 'JPEG', 32)
_PNG = testing.encode_image('RGB', 'PNG', 32)
_MODES = {
    'gray_jpeg': testing.encode_image('L', 'JPEG'),
    'cmyk_jpeg': testing.encode_image('CMYK', 'JPEG'),
    'rgba_png': testing.encode_image('RGBA', 'PNG'),
    'gray16_png': testing.encode_image('I;16', 'PNG'),
    'palette_png': testing.encode_image('P', 'PNG'),
}
_BROKEN = {
    'truncated_jpeg': _JPEG[:len(_JPEG) // 2],
    'truncated_png': _PNG[:len(_PNG) // 2],
    'not_an_image': b'GIF8 but nothing else',
}


def _features(examples):
  """The preprocessor on parsed records, read through `numpy_batches`."""
  serialized = [ex.SerializeToString() for ex in examples]
  ds = tf.data.Dataset.from_tensor_slices(serialized).map(
      lambda x: tf.io.parse_single_example(x, pp.feature_description()))
  ds = pp.rahf_features(ds, _S, _H).batch(8)
  return list(pipeline.numpy_batches(ds))


class PipelineBadInputTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.vocab = testing.synthetic_joined()['vocab']
    cls.tmp = tempfile.mkdtemp()

  def _batches(self, name, examples, input_length=16):
    d = os.path.join(self.tmp, name)
    os.makedirs(d)
    testing.write_records(os.path.join(d, 'test.tfrecord-00000-of-00001'),
                          examples)
    names = tasks.register_tasks(d, self.vocab, _S, _H,
                                 name_prefix=f'bad_{name}', augmented=False)
    ds = tasks.get_dataset(names['multihead'], 'test',
                           inputs_length=input_length, targets_length=32,
                           image_size=_S, heatmap_size=_H, batch_size=8)
    return list(pipeline.numpy_batches(ds))

  @parameterized.named_parameters(
      ('missing_prompt', dict(drop=['clean_prompt']),
       'uid u1: missing or empty clean_prompt'),
      ('missing_image', dict(drop=['image']), 'uid u1: missing or undecod'),
      ('missing_uid', dict(drop=['uid']), '<missing uid>'),
      ('missing_score', dict(drop=['overall_score']),
       'uid u1: missing score or score not finite'),
      ('missing_heatmap', dict(drop=['misalignment_map']),
       'uid u1: missing misalignment_map'),
      ('heatmap_size', dict(artifact_map=testing.heatmap_png(256)),
       r'uid u1: artifact_map must be 512x512 .*\[256 256 1\]'),
      ('nan_score', dict(scores={n: float('nan')
                                 for n in release.SCORE_FIELDS}),
       'uid u1: missing score or score not finite'),
      ('inf_score', dict(scores=dict({n: 0.5 for n in release.SCORE_FIELDS},
                                     overall_score=float('inf'))),
       'uid u1: missing score or score not finite'),
      ('empty_prompt', dict(prompt=' , '), 'uid u1: missing or empty'),
      ('unknown_image_format', dict(image=b'RIFF....WEBPVP8 '),
       'uid u1: missing or undecodable image'),
  )
  def test_error_names_uid(self, kwargs, pattern):
    examples = [testing.joined_example('u0'),
                testing.joined_example('u1', **kwargs)]
    with self.assertRaisesRegex(ValueError, pattern):
      _features(examples)

  @parameterized.named_parameters(*[(k, v) for k, v in _BROKEN.items()])
  def test_broken_image_is_a_clear_error(self, image):
    with self.assertRaisesRegex(ValueError, 'bad input .*validate'):
      _features([testing.joined_example('u2', image=image)])

  def test_valid_features(self):
    (batch,) = _features([testing.joined_example('u0'),
                          testing.joined_example('u1')])
    self.assertEqual(batch['image'].shape, (2, _S, _S, 3))
    np.testing.assert_allclose(batch['scores'], 0.5)

  def test_unparseable_record(self):
    with self.assertRaisesRegex(ValueError, 'Could not parse example'):
      self._batches('garbage', [b'definitely not a tf.train.Example'])

  def test_truncated_shard(self):
    d = os.path.join(self.tmp, 'trunc_src')
    os.makedirs(d)
    path = testing.write_records(
        os.path.join(d, 'x.tfrecord'),
        [testing.joined_example(f'u{i}') for i in range(3)])
    data = open(path, 'rb').read()
    examples = [data[:len(data) - 50]]  # written raw below
    d2 = os.path.join(self.tmp, 'trunc')
    os.makedirs(d2)
    with open(os.path.join(d2, 'test.tfrecord-00000-of-00001'), 'wb') as f:
      f.write(examples[0])
    names = tasks.register_tasks(d2, self.vocab, _S, _H,
                                 name_prefix='bad_trunc', augmented=False)
    ds = tasks.get_dataset(names['multihead'], 'test', inputs_length=16,
                           targets_length=32, image_size=_S, heatmap_size=_H,
                           batch_size=8)
    with self.assertRaisesRegex(ValueError, 'bad input .*truncated record at'):
      list(pipeline.numpy_batches(ds))

  def test_every_image_mode_decodes_to_rgb(self):
    examples = [testing.joined_example(f'u_{k}', image=v)
                for k, v in _MODES.items()]
    (batch,) = self._batches('modes', examples)
    self.assertEqual(batch['image'].shape, (len(_MODES), _S, _S, 3))
    self.assertBetween(float(batch['image'].min()), -1.0, 1.0)
    # Random content: every image has spread, none decoded to a constant.
    self.assertTrue(np.all(batch['image'].std(axis=(1, 2, 3)) > 0.1))

  def test_long_prompt_truncated_and_counted(self):
    pp.reset_truncation_counts()
    long_prompt = ' '.join(['red'] * 20)
    examples = [testing.joined_example('short', prompt='a cat'),
                testing.joined_example('long', prompt=long_prompt)]
    with self.assertLogs(level='WARNING') as logs:
      (batch,) = self._batches('long', examples, input_length=8)
    self.assertEqual(pp.truncation_counts(), {'inputs': 1})
    self.assertTrue(any('truncated inputs' in m for m in logs.output))
    # The long prompt fills the sequence and ends with EOS.
    rows = batch['encoder_input_tokens']
    self.assertEqual(sorted(int(r[-1]) for r in rows), [0, 1])


def _write_parquet(path, rows):
  cols = {c: [r[c] for r in rows] for c in join.COLUMNS}
  pq.write_table(pa.table({
      'caption': pa.array(cols['caption'], pa.string()),
      'image_0_uid': pa.array(cols['image_0_uid'], pa.string()),
      'image_1_uid': pa.array(cols['image_1_uid'], pa.string()),
      'jpg_0': pa.array(cols['jpg_0'], pa.binary()),
      'jpg_1': pa.array(cols['jpg_1'], pa.binary())}), path)


class JoinBadInputTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp()
    rel, pick = os.path.join(tmp, 'release'), os.path.join(tmp, 'pickapic')
    os.makedirs(rel)
    os.makedirs(pick)
    images = dict(ok=_JPEG, **_MODES, **_BROKEN)
    prompts = {uid: 'a red cat' for uid in images}
    prompts['empty'] = ' . '
    images['empty'] = _JPEG
    release_examples = []
    for uid in images:
      words = release.prompt_words(prompts[uid])
      release_examples.append(release.release_example(
          filename=f'{uid}.png', scores={n: 0.5 for n in
                                         release.SCORE_FIELDS},
          artifact_map_png=testing.heatmap_png(),
          misalignment_map_png=testing.heatmap_png(),
          labels=[1] * len(words)))
    # Train: the examples, a garbage record and a torn tail.
    path = testing.write_records(
        os.path.join(rel, 'train.tfrecord'),
        release_examples + [b'garbage record'])
    with open(path, 'ab') as f:
      f.write(open(path, 'rb').read()[:40])
    testing.write_records(os.path.join(rel, 'dev.tfrecord'), [])
    testing.write_records(os.path.join(rel, 'test.tfrecord'), [])
    _write_parquet(os.path.join(pick, 'train-00000-of-00001.parquet'), [
        dict(caption=prompts[uid], image_0_uid=uid, image_1_uid='other',
             jpg_0=img, jpg_1=_JPEG) for uid, img in images.items()])
    cls.out = os.path.join(tmp, 'joined')
    cls.summary = join.run_join(rel, os.path.join(pick, '*.parquet'),
                                cls.out, num_shards=1, progress=False)
    cls.train = cls.summary['splits']['train']

  def test_counts(self):
    s = self.train
    self.assertEqual(s['written'], 1 + len(_MODES))
    self.assertEqual(s['corrupt_image'], len(_BROKEN))
    self.assertCountEqual(s['corrupt_image_uids'], list(_BROKEN))
    self.assertEqual(s['empty_prompt'], 1)
    self.assertEqual(s['empty_prompt_uids'], ['empty'])
    # The garbage record and the torn tail.
    self.assertEqual(s['corrupt'], 2)
    self.assertTrue(any('unreadable' in e for e in s['corrupt_examples']))
    self.assertTrue(any('not a tf.train.Example' in e
                        for e in s['corrupt_examples']))

  def test_written_shards_validate_and_load(self):
    (path,) = glob.glob(os.path.join(self.out, 'train.tfrecord-*'))
    result = validate.validate_file(path)
    self.assertEqual(result['ok'], 1 + len(_MODES))
    self.assertEqual(result['counts'], {})
    names = tasks.register_tasks(self.out, testing.synthetic_joined()['vocab'],
                                 _S, _H, name_prefix='bad_join',
                                 augmented=False)
    ds = tasks.get_dataset(names['multihead'], 'train', inputs_length=8,
                           targets_length=8, image_size=_S, heatmap_size=_H,
                           batch_size=16)
    (batch,) = list(pipeline.numpy_batches(ds))
    self.assertLen(batch['image'], 1 + len(_MODES))

  def test_validate_flags_broken_image_in_joined_file(self):
    path = testing.write_records(
        os.path.join(tempfile.mkdtemp(), 'j.tfrecord'),
        [testing.joined_example('good'),
         testing.joined_example('bad', image=_BROKEN['truncated_jpeg'])])
    result = validate.validate_file(path)
    self.assertEqual(result['counts'], {'corrupt_image': 1})
    self.assertIn('uid bad', result['examples']['corrupt_image'][0])
    self.assertEqual(validate.main([path]), 1)


class ImageHelpersTest(parameterized.TestCase):

  @parameterized.named_parameters(*[(k, v) for k, v in _MODES.items()])
  def test_rgb_image_bytes(self, data):
    out = release.rgb_image_bytes(data, uid='x')
    fmt, mode, size = release.check_image(out)
    self.assertIn(fmt, ('JPEG', 'PNG'))
    self.assertIn(mode, ('RGB', 'L'))
    self.assertEqual(size, (24, 24))

  def test_rgb_kept_as_is(self):
    self.assertIs(release.rgb_image_bytes(_JPEG), _JPEG)

  def test_sixteen_bit_scaled(self):
    out = release.rgb_image_bytes(testing.encode_image('I;16', 'PNG'))
    import io  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top
    arr = np.asarray(Image.open(io.BytesIO(out)))
    # value * 257 >> 8 == value: the 8-bit source comes back.
    rng = np.random.default_rng(0)
    want = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)[..., 0]
    np.testing.assert_array_equal(arr[..., 0], want)

  @parameterized.named_parameters(*[(k, v) for k, v in _BROKEN.items()])
  def test_check_image_rejects(self, data):
    with self.assertRaisesRegex(release.CorruptImageError, 'uid z'):
      release.check_image(data, uid='z')


if __name__ == '__main__':
  absltest.main()
