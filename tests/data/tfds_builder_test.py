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
"""Tests for the `richhf18k` TFDS builder and the TFDS seqio source."""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import richhf_jax.data.richhf18k  # pylint: disable=unused-import  (registers)
from richhf_jax.data import release
from richhf_jax.data import tasks
from richhf_jax.data import testing

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _joined_records(joined, split):
  out = {}
  for path in sorted(glob.glob(os.path.join(joined,
                                            f'{split}.tfrecord-*-of-*'))):
    for rec in tf.data.TFRecordDataset(path).as_numpy_iterator():
      ex = tf.train.Example.FromString(rec)
      out[ex.features.feature['uid'].bytes_list.value[0].decode()] = ex
  return out


class TfdsBuilderTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = testing.synthetic_joined()
    cls.data_dir = tempfile.mkdtemp()
    cls.dl = tfds.download.DownloadConfig(manual_dir=cls.paths['joined'])
    cls.splits = {s: tfds.load('richhf18k', split=s, data_dir=cls.data_dir,
                               download_and_prepare_kwargs={
                                   'download_config': cls.dl})
                  for s in ('train', 'validation', 'test')}

  def test_splits_and_features_match_joined_shards(self):
    for split, name in (('train', 'train'), ('validation', 'dev'),
                        ('test', 'test')):
      records = _joined_records(self.paths['joined'], name)
      examples = list(self.splits[split].as_numpy_iterator())
      self.assertLen(examples, len(records))
      for ex in examples:
        f = records[ex['uid'].decode()].features.feature
        for key in ('prompt', 'clean_prompt', 'target', 'filename'):
          self.assertEqual(ex[key], f[key].bytes_list.value[0], key)
        for key in release.SCORE_FIELDS:
          self.assertEqual(ex[key].dtype, np.float32)
          self.assertAlmostEqual(float(ex[key]), f[key].float_list.value[0],
                                 places=6)
        for key in release.HEATMAP_FIELDS:
          self.assertEqual(ex[key].shape, (512, 512, 1))
          self.assertEqual(ex[key].dtype, np.uint8)
          np.testing.assert_array_equal(
              ex[key][..., 0],
              release.decode_heatmap(f[key].bytes_list.value[0]))
        want = tf.io.decode_image(f['image'].bytes_list.value[0],
                                  channels=3).numpy()
        np.testing.assert_array_equal(ex['image'], want)

  def test_reload_without_builder_code(self):
    # A fresh process that never imports the builder reads the prepared
    # dataset offline.
    code = ('import tensorflow_datasets as tfds;'
            f'ds = tfds.load("richhf18k", split="test", '
            f'data_dir={self.data_dir!r}, download=False);'
            'print(sum(1 for _ in ds))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    self.assertEqual(out.stdout.strip().splitlines()[-1],
                     str(len(_joined_records(self.paths['joined'], 'test'))))

  def test_tfds_build_cli(self):
    data_dir = tempfile.mkdtemp()
    subprocess.run(
        [sys.executable, '-m', 'richhf_jax.data.richhf18k.tfds_build',
         os.path.join(_ROOT, 'richhf_jax', 'data', 'richhf18k'),
         f'--manual_dir={self.paths["joined"]}', f'--data_dir={data_dir}'],
        capture_output=True, text=True, check=True, timeout=300, cwd=_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    builder = tfds.builder_from_directory(
        os.path.join(data_dir, 'richhf18k', '1.0.0'))
    self.assertEqual(builder.info.splits['validation'].num_examples,
                     len(_joined_records(self.paths['joined'], 'dev')))

  def test_build_from_release_and_parquet(self):
    manual = tempfile.mkdtemp()
    shutil.copytree(self.paths['release'], os.path.join(manual, 'richhf18k'))
    shutil.copytree(os.path.join(self.paths['synth'], 'pickapic'),
                    os.path.join(manual, 'pickapic'))
    builder = tfds.builder('richhf18k', data_dir=tempfile.mkdtemp())
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
    self.assertEqual(
        builder.info.splits['train'].num_examples,
        len(_joined_records(self.paths['joined'], 'train')))

  def test_bad_records_skipped_and_counted(self):
    manual = tempfile.mkdtemp()
    jpeg = testing.encode_image('RGB', 'JPEG', 32)
    examples = [testing.joined_example('good'),
                testing.joined_example('cmyk',
                                       image=testing.encode_image('CMYK')),
                testing.joined_example('trunc', image=jpeg[:100]),
                testing.joined_example('hm', artifact_map=testing.heatmap_png(
                    64)),
                testing.joined_example('mismatch', labels=[1, 1]),
                b'garbage']
    for split in ('train', 'dev', 'test'):
      testing.write_records(os.path.join(
          manual, f'{split}.tfrecord-00000-of-00001'), examples)
    builder = tfds.builder('richhf18k', data_dir=tempfile.mkdtemp())
    with self.assertLogs(level='WARNING') as logs:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual))
    ds = builder.as_dataset(split='test')
    got = {ex['uid'].decode(): ex for ex in ds.as_numpy_iterator()}
    self.assertCountEqual(got, ['good', 'cmyk'])
    self.assertEqual(got['cmyk']['image'].shape, (24, 24, 3))
    text = '\n'.join(logs.output)
    for what in ('CorruptImageError', 'CorruptRecordError',
                 'LabelCountMismatchError', 'uid trunc'):
      self.assertIn(what, text)

  def test_missing_manual_data(self):
    manual = tempfile.mkdtemp()
    with open(os.path.join(manual, 'notes.txt'), 'w') as f:
      f.write('not the data')
    builder = tfds.builder('richhf18k', data_dir=tempfile.mkdtemp())
    with self.assertRaisesRegex(FileNotFoundError, 'no joined shards'):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual))

  def test_seqio_tfds_source_equals_tfrecord_source(self):
    kw = dict(inputs_length=16, targets_length=32, image_size=16,
              heatmap_size=8, batch_size=8)
    a = tasks.register_tasks(self.data_dir, self.paths['vocab'], 16, 8,
                             name_prefix='src_tfds', source='tfds',
                             augmented=False)
    b = tasks.register_tasks(self.paths['joined'], self.paths['vocab'], 16, 8,
                             name_prefix='src_rec', augmented=False)
    x = next(tasks.get_dataset(a['multihead'], 'test',
                               **kw).as_numpy_iterator())
    y = next(tasks.get_dataset(b['multihead'], 'test',
                               **kw).as_numpy_iterator())
    # Orders differ: align by the targets' tokens.
    kx = [r.tobytes() for r in x['decoder_target_tokens']]
    ky = [r.tobytes() for r in y['decoder_target_tokens']]
    order = [kx.index(k) for k in ky]
    for key in y:
      np.testing.assert_allclose(x[key][order], y[key], atol=1e-6,
                                 err_msg=key)

  def test_tfds_source_missing(self):
    with self.assertRaisesRegex(FileNotFoundError, 'tfds build'):
      tasks.register_tasks(tempfile.mkdtemp(), self.paths['vocab'], 16, 8,
                           name_prefix='src_none', source='tfds')


if __name__ == '__main__':
  absltest.main()
