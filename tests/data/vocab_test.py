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
"""Tests for richhf_jax.data.vocab."""

import os
import tempfile

from absl.testing import absltest

from richhf_jax.data import release
from richhf_jax.data import vocab

_PROMPTS = ['a red circle and two blue squares on a green background',
            'three yellow triangles', 'a big orange diamond at the top']


class VocabTest(absltest.TestCase):

  def test_round_trip_and_single_pieces(self):
    targets = [release.marked_target(p.split(), [i % 2 for i in range(
        len(p.split()))]) for p in _PROMPTS]
    tmp = tempfile.mkdtemp()
    path = vocab.train_vocab(_PROMPTS + targets, os.path.join(tmp, 'spm'))
    self.assertEqual(vocab.round_trips(path, _PROMPTS + targets), [])
    sp = vocab.load(path)
    self.assertEqual((sp.pad_id(), sp.eos_id(), sp.unk_id()), (0, 1, 2))
    for word in {w for p in _PROMPTS for w in p.split()}:
      self.assertLen(sp.encode(word), 1, word)
    self.assertEqual(sp.encode('red_0', out_type=str), ['▁red', '_0'])

  def test_deterministic(self):
    tmp = tempfile.mkdtemp()
    a = vocab.train_vocab(_PROMPTS, os.path.join(tmp, 'a'))
    b = vocab.train_vocab(list(reversed(_PROMPTS)), os.path.join(tmp, 'b'))
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
      self.assertEqual(fa.read(), fb.read())

  def test_empty(self):
    with self.assertRaises(ValueError):
      vocab.train_vocab([], os.path.join(tempfile.mkdtemp(), 'x'))


if __name__ == '__main__':
  absltest.main()
