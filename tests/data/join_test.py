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
"""Tests for richhf_jax.data.join."""

import glob
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf

from richhf_jax.data import join
from richhf_jax.data import release
from richhf_jax.data import synthetic


def _read_split(out_dir, split):
  exs = []
  for path in sorted(glob.glob(os.path.join(out_dir,
                                            f'{split}.tfrecord-*-of-*'))):
    exs += [tf.train.Example.FromString(r) for r in
            tf.data.TFRecordDataset(path).as_numpy_iterator()]
  return exs


def _bytes(ex, name):
  return ex.features.feature[name].bytes_list.value[0]


class JoinTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = os.path.join(cls.tmp, 'synth')
    cls.gen = synthetic.generate(
        cls.data, num_train=16, num_dev=4, num_test=5, seed=1,
        rows_per_shard=6, row_group_size=2, label_mismatch_rate=0.15,
        image_sizes=(64,), write_vocab=False)
    cls.glob = os.path.join(cls.data, 'pickapic', '*.parquet')
    cls.out = os.path.join(cls.tmp, 'out')
    cls.summary = join.run_join(os.path.join(cls.data, 'richhf18k'),
                                cls.glob, cls.out, num_shards=2,
                                progress=False)
    cls.meta = {s: [json.loads(l) for l in open(
        os.path.join(cls.data, 'meta', f'{s}.jsonl'))] for s in join.SPLITS}

  def test_shard_group(self):
    self.assertEqual(join.shard_group('d/train-00001-of-00645-ab.parquet'),
                     'train')
    self.assertEqual(join.shard_group('d/test_unique-00000.parquet'), 'test')
    self.assertIsNone(join.shard_group('d/validation-00000.parquet'))

  def test_every_uid_matched(self):
    mismatched = set(self.gen['label_mismatch_uids'])
    self.assertNotEmpty(mismatched)
    for split in join.SPLITS:
      s = self.summary['splits'][split]
      n = len(self.meta[split])
      bad = sum(m['uid'] in mismatched for m in self.meta[split])
      self.assertEqual(s['release_records'], n)
      self.assertEqual(s['missing'], 0)
      self.assertEqual(s['corrupt'], 0)
      self.assertEqual(s['label_mismatch'], bad)
      self.assertEqual(s['written'], n - bad)
      self.assertLen(_read_split(self.out, split), n - bad)
    with open(os.path.join(self.out, join.SUMMARY_FILE)) as f:
      self.assertEqual(json.load(f)['splits'], self.summary['splits'])

  def test_joined_fields(self):
    table = pq.read_table(glob.glob(self.glob),
                          columns=['caption', 'image_0_uid', 'image_1_uid',
                                   'jpg_0', 'jpg_1'])
    images = {}
    for k in (0, 1):
      for uid, jpg in zip(table.column(f'image_{k}_uid').to_pylist(),
                          table.column(f'jpg_{k}').to_pylist()):
        images[uid] = jpg
    meta = {m['uid']: m for s in join.SPLITS for m in self.meta[s]}
    exs = _read_split(self.out, 'train')
    # Record k goes to shard k mod n: release order within each shard.
    order = [m['uid'] for m in self.meta['train']]
    for path in glob.glob(os.path.join(self.out, 'train.tfrecord-*')):
      idx = [order.index(tf.train.Example.FromString(r).features.feature[
          'uid'].bytes_list.value[0].decode())
             for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]
      self.assertEqual(idx, sorted(idx))
    for ex in exs:
      self.assertCountEqual(ex.features.feature.keys(),
                            release.JOINED_FIELDS)
      uid = _bytes(ex, 'uid').decode()
      m = meta[uid]
      self.assertEqual(_bytes(ex, 'filename').decode(), uid + '.png')
      self.assertEqual(_bytes(ex, 'image'), images[uid])
      self.assertEqual(_bytes(ex, 'prompt').decode(), m['prompt'])
      words = release.prompt_words(m['prompt'])
      self.assertEqual(_bytes(ex, 'clean_prompt').decode(), ' '.join(words))
      self.assertEqual(_bytes(ex, 'target').decode(),
                       release.marked_target(words, m['labels']))

  def test_resume_skips_done_shards_and_is_identical(self):
    before = {p: open(p, 'rb').read() for p in glob.glob(
        os.path.join(self.out, '*.tfrecord-*'))}
    again = join.run_join(os.path.join(self.data, 'richhf18k'), self.glob,
                          self.out, num_shards=2, progress=False)
    self.assertEqual(again['scanned_shards'], 0)
    self.assertEqual(again['skipped_done_shards'],
                     self.summary['num_parquet_shards'])
    after = {p: open(p, 'rb').read() for p in glob.glob(
        os.path.join(self.out, '*.tfrecord-*'))}
    self.assertEqual(before, after)
    self.assertEqual(again['splits'], self.summary['splits'])

  def test_worker_count_and_chunking_do_not_change_the_output(self):
    # Small chunks: records are validated concurrently across several
    # chunks; shards and summary must equal the one-thread join's.
    outs = {}
    for workers in (1, 3):
      out = os.path.join(self.tmp, f'workers{workers}')
      shutil.copytree(os.path.join(self.out, '_work'),
                      os.path.join(out, '_work'))
      with mock.patch.object(join, '_CHUNK', 3):
        summary = join.run_join(os.path.join(self.data, 'richhf18k'),
                                self.glob, out, num_shards=2,
                                progress=False, workers=workers)
      outs[workers] = {os.path.basename(p): open(p, 'rb').read()
                       for p in glob.glob(os.path.join(out, '*.tfrecord-*'))}
      self.assertEqual(summary['splits'], self.summary['splits'])
    self.assertEqual(outs[1], outs[3])
    self.assertLen(outs[1], 6)

  def test_partial_resume(self):
    out = os.path.join(self.tmp, 'partial')
    shutil.copytree(self.out, out)
    markers = sorted(glob.glob(os.path.join(out, '_work', 'shards', '*')))
    os.remove(markers[0])
    again = join.run_join(os.path.join(self.data, 'richhf18k'), self.glob,
                          out, num_shards=2, progress=False)
    self.assertEqual(again['scanned_shards'], 1)
    self.assertEqual(again['splits'], self.summary['splits'])

  def test_missing_uid_reported(self):
    # Drop the Pick-a-Pic rows holding one labeled train uid.
    victim = next(m['uid'] for m in self.meta['train']
                  if m['uid'] not in self.gen['label_mismatch_uids'])
    pdir = os.path.join(self.tmp, 'pickapic_missing')
    os.makedirs(pdir, exist_ok=True)
    for path in glob.glob(self.glob):
      table = pq.read_table(path)
      keep = pc.invert(pc.or_(pc.equal(table.column('image_0_uid'), victim),
                              pc.equal(table.column('image_1_uid'), victim)))
      pq.write_table(table.filter(keep),
                     os.path.join(pdir, os.path.basename(path)))
    out = os.path.join(self.tmp, 'out_missing')
    summary = join.run_join(os.path.join(self.data, 'richhf18k'),
                            os.path.join(pdir, '*.parquet'), out,
                            num_shards=1, progress=False)
    s = summary['splits']['train']
    self.assertEqual(s['missing'], 1)
    self.assertEqual(s['missing_uids'], [victim])
    self.assertEqual(s['written'],
                     self.summary['splits']['train']['written'] - 1)

  def test_cli_and_test_uids_not_matched_in_train_shards(self):
    # Only train shards: every test uid is missing, train/dev are matched.
    out = os.path.join(self.tmp, 'out_cli')
    rc = join.main(['--richhf_dir', os.path.join(self.data, 'richhf18k'),
                    '--pickapic', os.path.join(self.data, 'pickapic',
                                               'train-*.parquet'),
                    '--out_dir', out, '--num_shards', '1', '--no_progress'])
    self.assertEqual(rc, 0)
    with open(os.path.join(out, join.SUMMARY_FILE)) as f:
      splits = json.load(f)['splits']
    self.assertEqual(splits['test']['missing'], len(self.meta['test']))
    self.assertEqual(splits['dev']['missing'], 0)


if __name__ == '__main__':
  absltest.main()
