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
"""Param-tree goldens, logical axis names, and preset parameter counts.

The goldens in tests/testdata/param_trees/ fix the checkpoint format of each
RAHF preset; regenerate them with tests/testdata/make_param_trees.py only for
an intended change.
"""

import contextlib
import dataclasses
import io
import json
import os

from absl.testing import absltest
from absl.testing import parameterized
import gin

from richhf_jax import partitioning
from richhf_jax.weights import info

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_GOLDENS = os.path.join(_ROOT, 'tests', 'testdata', 'param_trees')
_REGEN = 'python tests/testdata/make_param_trees.py'


def _read_golden(name):
  with open(os.path.join(_GOLDENS, f'{name}.json')) as f:
    return json.load(f)


def _describe_diff(got, want):
  """Readable differences between two variants' param lists."""
  g = {e['path']: e for e in got['params']}
  w = {e['path']: e for e in want['params']}
  lines = [f'  new: {p}' for p in sorted(set(g) - set(w))]
  lines += [f'  gone: {p}' for p in sorted(set(w) - set(g))]
  lines += [f'  changed: {p}: golden {w[p]} now {g[p]}'
            for p in sorted(set(g) & set(w)) if g[p] != w[p]]
  return '\n'.join(lines[:30])


class ParamTreeGoldenTest(parameterized.TestCase):

  @parameterized.parameters(*info.RAHF_PRESETS)
  def test_matches_golden(self, name):
    want = _read_golden(name)
    got = info.param_tree_golden(name)
    self.assertEqual(want['preset'], name)
    for variant in ('multihead', 'augmented'):
      self.assertEqual(
          got[variant], want[variant],
          f'{name}/{variant} param tree changed (regenerate with {_REGEN} '
          f'if intended):\n{_describe_diff(got[variant], want[variant])}')
    # Golden text is what the generator writes (so diffs stay readable).
    self.assertEqual(info.golden_to_json(want), info.golden_to_json(got))

  def test_goldens_cover_both_t5_variants_and_axes(self):
    large = {e['path']: e for e in _read_golden('large')['multihead']['params']}
    base = {e['path']: e for e in _read_golden('base')['multihead']['params']}
    self.assertNotIn('decoder/logits_dense/kernel', large)  # tied (v1.0)
    self.assertIn('encoder/layers_0/mlp/wi/kernel', large)
    self.assertEqual(base['decoder/logits_dense/kernel']['axes'],
                     ['embed', 'vocab'])  # untied (v1.1)
    self.assertEqual(large['img/pos_embedding']['shape'], [1, 576, 1024])
    self.assertTrue(all(e['axes'] for e in large.values()))

  def test_every_axis_name_is_in_the_rules_table(self):
    names = set()
    for name in info.RAHF_PRESETS:
      golden = _read_golden(name)
      for variant in ('multihead', 'augmented'):
        for e in golden[variant]['params']:
          self.assertLen(e['axes'], len(e['shape']), e['path'])
          names.update(e['axes'])
    # Scanned stacks add the 'layers' axis.
    cfg = info.rahf_preset_config('tiny')
    scanned = dataclasses.replace(
        cfg, vit=dataclasses.replace(cfg.vit, scan=True),
        t5=dataclasses.replace(cfg.t5, scan=True))
    scanned_names = {a for e in info.param_entries(scanned)
                     for a in e['axes']}
    self.assertIn('layers', scanned_names)
    names.update(scanned_names)
    ruled = {n for n, _ in partitioning.standard_logical_axis_rules()}
    self.assertEmpty(names - set(partitioning.LOGICAL_AXES))
    self.assertEmpty(names - ruled)


class ParamCountTest(parameterized.TestCase):

  @parameterized.parameters(*sorted(info.PUBLISHED_COUNTS))
  def test_matches_published_count(self, key):
    n = info.preset_count(key)
    published = info.PUBLISHED_COUNTS[key]
    self.assertLess(abs(n / published - 1), 0.01,
                    f'{key}: {n:,} vs published ~{published:,.0f}')

  def test_cli_prints_counts(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      info.main(['--preset', 'vit:tiny', '--preset', 't5:tiny'])
    self.assertRegex(out.getvalue(), r'vit:tiny\s+80,448')
    self.assertRegex(out.getvalue(), r't5:tiny\s+214,016')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      info.main(['--rahf', 'tiny', '--tree'])
    self.assertIn('img/embedding/kernel\t(8, 8, 3, 64)\tfloat32\t'
                  "('conv_height', 'conv_width', 'conv_in', 'conv_out')",
                  out.getvalue())
    total = _read_golden('tiny')['multihead']['num_params']
    self.assertIn(f'{total:,}', out.getvalue())


class PresetsMirrorGinTest(parameterized.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  @parameterized.parameters(*info.RAHF_PRESETS)
  def test_gin_model_file_builds_the_same_config(self, name):
    from richhf_jax import gin_utils  # pylint: disable=g-import-not-at-top
    gin_utils.parse_gin([f'gin/models/rahf_{name}.gin'], [], [_ROOT])
    cfg = gin.query_parameter('%MODEL_CONFIG').scoped_configurable_fn()
    self.assertEqual(cfg, info.rahf_preset_config(name, cfg.variant))


if __name__ == '__main__':
  absltest.main()
