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
"""Tests for richhf_jax.apps.select: fine-tuning data selection."""

import contextlib
import csv
import io
import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image

from richhf_jax import inference
from richhf_jax import test_utils
from richhf_jax.apps import select


def _scores(p, al, ae, o):
  return {'plausibility': p, 'alignment': al, 'aesthetics': ae, 'overall': o}


# Three prompts; the second has no image above a 0.5 threshold, the third a
# tie (the earlier row wins).
_ROWS = [
    {'prompt': 'a cat', 'image': 'c1.png', 'scores': _scores(.2, .9, .5, .4)},
    {'prompt': 'a cat', 'image': 'c2.png', 'scores': _scores(.9, .1, .6, .7)},
    {'prompt': 'a dog ', 'image': 'd1.png', 'scores': _scores(.3, .3, .3, .3)},
    {'prompt': 'a cat', 'image': 'c3.png', 'scores': _scores(.5, .5, .5, .5)},
    {'prompt': 'a bird', 'image': 'b1.png', 'scores': _scores(.6, .6, .6, .6)},
    {'prompt': 'a bird', 'image': 'b2.png', 'scores': _scores(.6, .6, .6, .6)},
    {'prompt': 'a dog', 'image': 'd2.png', 'scores': _scores(.4, .4, .4, .4)},
]


class SelectTest(absltest.TestCase):

  def test_parse_weights(self):
    self.assertEqual(select.parse_weights(), {'overall': 1.0})
    self.assertEqual(select.parse_weights('aesthetics'), {'aesthetics': 1.0})
    self.assertEqual(select.parse_weights(weights='plausibility=1, overall=3'),
                     {'plausibility': 1.0, 'overall': 3.0})
    for bad, pattern in (('beauty=1', r"unknown score names \['beauty'\]"),
                         ('overall', 'NAME=NUMBER'),
                         ('overall=x', 'NAME=NUMBER'),
                         ('overall=-1', '>= 0'), ('overall=0', 'positive')):
      with self.assertRaisesRegex(ValueError, pattern):
        select.parse_weights(weights=bad)

  def test_selection(self):
    by_overall, n = select.select_per_prompt(_ROWS, {'overall': 1.0}, 0.5)
    self.assertEqual(n, 3)
    self.assertEqual([(r['prompt'], r['image'], r['candidates'])
                      for r in by_overall],
                     [('a cat', 'c2.png', 3), ('a bird', 'b1.png', 2)])
    weights = {'alignment': 3.0, 'plausibility': 1.0}
    by_mix, _ = select.select_per_prompt(_ROWS, weights, 0.0)
    self.assertEqual([r['image'] for r in by_mix],
                     ['c1.png', 'd2.png', 'b1.png'])
    self.assertAlmostEqual(by_mix[0]['score'], (3 * .9 + .2) / 4)

  def test_histogram(self):
    h = select.histogram([0.0, 0.05, 0.15, 0.99, 1.0, 1.2], bins=10)
    self.assertEqual(h['counts'], [2, 1, 0, 0, 0, 0, 0, 0, 0, 3])
    self.assertLen(h['edges'], 11)

  def _main(self, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      rc = select.main(list(args))
    return rc, out.getvalue(), err.getvalue()

  def test_cli_on_scored_rows(self):
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, 'scored.jsonl')
    with open(path, 'w') as f:
      for row in _ROWS:
        f.write(json.dumps(row) + '\n')
    out_dir = os.path.join(tmp, 'out')
    rc, out, err = self._main('--input', path, '--out_dir', out_dir,
                              '--threshold', '0.5')
    self.assertEqual(rc, 0, err)
    self.assertIn('kept 2 of 3 prompts', out)
    with open(os.path.join(out_dir, 'summary.json')) as f:
      summary = json.load(f)
    self.assertEqual((summary['images_scored'], summary['prompts'],
                      summary['prompts_kept']), (7, 3, 2))
    self.assertEqual(summary['histograms']['all']['overall']['counts'],
                     [0, 0, 0, 1, 2, 1, 2, 1, 0, 0])
    self.assertEqual(sum(summary['histograms']['selected']['combined'][
        'counts']), 2)
    with open(os.path.join(out_dir, 'selected.jsonl')) as f:
      self.assertEqual([json.loads(l)['image'] for l in f],
                       ['c2.png', 'b1.png'])
    with open(os.path.join(out_dir, 'summary.md')) as f:
      self.assertIn('prompts kept: 2 of 3', f.read())
    rc, _, err = self._main('--input', path, '--out_dir', out_dir,
                            '--rescore')
    self.assertEqual(rc, 1)
    self.assertIn('--checkpoint', err)

  def test_cli_with_the_model(self):
    tmp = tempfile.mkdtemp()
    export = test_utils.tiny_export(os.path.join(tmp, 'export'))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
      name = f'{i}.png'
      Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)).save(
          os.path.join(tmp, name))
      rows.append((name, 'a red circle' if i < 2 else 'three triangles'))
    with open(os.path.join(tmp, 'bad.png'), 'wb') as f:
      f.write(b'nope')
    rows.append(('bad.png', 'a red circle'))
    table = os.path.join(tmp, 'in.csv')
    with open(table, 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['prompt', 'image'])
      w.writerows([(p, n) for n, p in rows])
    out_dir = os.path.join(tmp, 'out')
    rc, out, err = self._main('--input', table, '--out_dir', out_dir,
                              '--checkpoint', export, '--weights',
                              'plausibility=1,aesthetics=1',
                              '--batch_size', '2')
    self.assertEqual(rc, 0, err)
    self.assertIn('kept 2 of 2 prompts (4 images scored, 1 skipped)', out)
    predictor = inference.Predictor.load(export, max_batch_size=2)
    preds = predictor.predict([os.path.join(tmp, f'{i}.png')
                               for i in range(4)], [p for _, p in rows[:4]])
    value = [(p.scores['plausibility'] + p.scores['aesthetics']) / 2
             for p in preds]
    with open(os.path.join(out_dir, 'selected.jsonl')) as f:
      selected = [json.loads(l) for l in f]
    self.assertEqual([s['image'] for s in selected],
                     [f'{int(np.argmax(value[:2]))}.png',
                      f'{2 + int(np.argmax(value[2:]))}.png'])
    self.assertAlmostEqual(selected[0]['score'], max(value[:2]), places=5)


if __name__ == '__main__':
  absltest.main()
