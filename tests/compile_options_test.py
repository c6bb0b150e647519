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
"""Tests for richhf_jax.compile_options."""

import re
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

from richhf_jax import compile_options
from richhf_jax.models import heatmap_head


def library_fused_convolutions(hlo: str) -> int:
  """Number of YNNPACK fusions whose computation holds a convolution."""
  count = 0
  for called in re.findall(r'%ynn_fusion[\w.]* = .*?calls=%([\w.\-]+)', hlo):
    body = re.search(r'\n%?' + re.escape(called) + r' .*?\{\n(.*?)\n\}', hlo,
                     re.S)
    if body and ' convolution(' in body.group(1):
      count += 1
  return count


class CompileOptionsTest(absltest.TestCase):

  def test_resolve(self):
    self.assertEqual(compile_options.resolve(None),
                     compile_options.defaults())
    self.assertEqual(compile_options.resolve({}), {})
    self.assertEqual(compile_options.resolve({'xla_a': 1}), {'xla_a': 1})
    with self.assertRaisesRegex(ValueError, 'compiler_options=.*mapping'):
      compile_options.resolve('xla_a=1')
    # Backends without entries get none (nothing is compiled to check).
    self.assertNotIn('tpu', compile_options.DEFAULT_OPTIONS)
    self.assertEqual(compile_options.defaults('tpu'), {})

  def test_unsupported_option_is_dropped_with_a_warning(self):
    wanted = dict(compile_options.DEFAULT_OPTIONS['cpu'],
                  xla_cpu_no_such_option_for_this_test='1')
    with mock.patch.dict(compile_options.DEFAULT_OPTIONS, {'cpu': wanted}):
      with self.assertLogs(level='WARNING') as logs:
        got = compile_options.defaults('cpu')
    self.assertNotIn('xla_cpu_no_such_option_for_this_test', got)
    self.assertIn('xla_cpu_no_such_option_for_this_test', '\n'.join(
        logs.output))
    # The real options survive (when this jaxlib has them).
    self.assertEqual(got, compile_options.defaults('cpu'))

  def test_cpu_heads_compile_their_convolutions_outside_ynnpack(self):
    options = compile_options.defaults('cpu')
    if not options:
      # An XLA without the option: it was dropped, and said so.
      # pylint: disable-next=protected-access
      compile_options._supported.cache_clear()
      with self.assertLogs(level='WARNING'):
        compile_options.defaults('cpu')
      return
    config = heatmap_head.get_heatmap_head_config('tiny')
    head = heatmap_head.HeatmapHead(config)
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 32)).astype(
        np.float32)
    params = head.init(jax.random.key(0), x)
    lowered = jax.jit(head.apply).lower(params, x)
    plain = lowered.compile()
    tuned = lowered.compile(compiler_options=options)
    # Without the options XLA:CPU fuses this head's convolutions into
    # YNNPACK subgraphs (the slow case); with them it does not.
    self.assertGreater(library_fused_convolutions(plain.as_text()), 0)
    self.assertEqual(library_fused_convolutions(tuned.as_text()), 0)
    np.testing.assert_allclose(np.asarray(tuned(params, x)),
                               np.asarray(plain(params, x)), atol=1e-5)


if __name__ == '__main__':
  absltest.main()
