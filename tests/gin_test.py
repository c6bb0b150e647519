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
"""Every gin file under gin/ parses, finalizes, and builds its model config."""

import glob
import os

from absl.testing import absltest
from absl.testing import parameterized
import gin

from richhf_jax import eval as eval_lib  # pylint: disable=unused-import
from richhf_jax import gin_utils
from richhf_jax import train as train_lib  # pylint: disable=unused-import
from richhf_jax.models import rahf

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GIN_FILES = sorted(
    os.path.relpath(p, _ROOT)
    for p in glob.glob(os.path.join(_ROOT, 'gin', '**', '*.gin'),
                       recursive=True))
_REQUIRED = ["MODEL_DIR = '/tmp/m'", "DATA_DIR = '/tmp/d'",
             "VOCAB_PATH = '/tmp/v.model'", "EVAL_OUTPUT_DIR = '/tmp/e'"]


def _build_model_config():
  ref = gin.query_parameter('%MODEL_CONFIG')
  return ref.scoped_configurable_fn()


class GinFilesTest(parameterized.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def test_found_the_gin_files(self):
    self.assertContainsSubset(
        {'gin/runs/finetune_richhf.gin', 'gin/runs/eval.gin',
         'gin/local_tiny.gin', 'gin/demo.gin', 'gin/models/rahf_tiny.gin',
         'gin/models/rahf_base.gin', 'gin/models/rahf_large.gin'},
        set(_GIN_FILES))

  @parameterized.parameters(*_GIN_FILES)
  def test_parses_and_builds_the_model_config(self, path):
    bindings = list(_REQUIRED) if 'runs/' in path else []
    gin_utils.parse_gin([path], bindings, [_ROOT])
    cfg = _build_model_config()
    self.assertIsInstance(cfg, rahf.RAHFConfig)

  def test_tiny_overlay_shrinks_a_run(self):
    gin_utils.parse_gin(['gin/runs/finetune_richhf.gin', 'gin/local_tiny.gin'],
                        _REQUIRED, [_ROOT])
    cfg = _build_model_config()
    self.assertEqual(cfg.t5.emb_dim, 64)
    self.assertEqual(gin.query_parameter('%TRAIN_STEPS'), 20)

  def test_required_values_are_required(self):
    with self.assertRaisesRegex(ValueError, 'MODEL_DIR.*gin.REQUIRED'):
      gin_utils.parse_gin(['gin/runs/finetune_richhf.gin'],
                          _REQUIRED[1:], [_ROOT])

  def test_large_is_the_port_configuration(self):
    gin_utils.parse_gin(['gin/models/rahf_large.gin'], [], [_ROOT])
    cfg = _build_model_config()
    self.assertEqual((cfg.vit.width, cfg.vit.depth, cfg.vit.image_size),
                     (1024, 24, 384))
    self.assertTrue(cfg.t5.logits_via_embedding)
    self.assertEqual(cfg.heatmap_size, (384, 384))

  def test_gin_flag_rewriting(self):
    self.assertEqual(
        gin_utils.rewrite_gin_args(
            ['prog', "--gin.MODEL_DIR='/x'", '--gin.TRAIN_STEPS', '5',
             '--other=1']),
        ['prog', "--gin_bindings=MODEL_DIR = '/x'",
         '--gin_bindings=TRAIN_STEPS = 5', '--other=1'])


if __name__ == '__main__':
  absltest.main()
