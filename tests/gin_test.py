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
"""Every gin file under gin/ parses, finalizes, and builds its model config.

Every training run file also lowers its train step with the tiny overlay
(for fake batch shapes: the configs are what is under test, not the data).
"""

import dataclasses
import glob
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import gin

from richhf_jax import eval as eval_lib  # pylint: disable=unused-import
from richhf_jax import gin_utils
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax import train as train_lib  # pylint: disable=unused-import
from richhf_jax import trainer as trainer_lib
from richhf_jax.models import rahf

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GIN_FILES = sorted(
    os.path.relpath(p, _ROOT)
    for p in glob.glob(os.path.join(_ROOT, 'gin', '**', '*.gin'),
                       recursive=True))
_REQUIRED = ["MODEL_DIR = '/tmp/m'", "DATA_DIR = '/tmp/d'",
             "VOCAB_PATH = '/tmp/v.model'", "EVAL_OUTPUT_DIR = '/tmp/e'"]


# Run files of other entry points: eval (tests/eval_test.py, e2e_test.py) and
# infer (tests/predict_test.py), which configure no model.
_NON_TRAIN_RUNS = ('gin/runs/eval.gin', 'gin/runs/infer.gin')
# Run files that configure `richhf_jax.train`, and overlays to try on them
# (finetune_richhf.gin with the tiny overlay alone trains in e2e_test and
# resume_test, through the same gin files).
_TRAIN_RUNS = [
    ('gin/runs/pretrain_captioning.gin', ()),
    ('gin/runs/finetune_richhf.gin', ('gin/models/variant_augmented.gin',)),
    ('gin/runs/finetune_richhf.gin', ('gin/demo.gin',)),
]


def _build_model_config():
  ref = gin.query_parameter('%MODEL_CONFIG')
  return ref.scoped_configurable_fn()


def _files_for(path):
  """A variant overlay needs a model preset before it."""
  if os.path.basename(path).startswith('variant_'):
    return ['gin/models/rahf_tiny.gin', path]
  return [path]


class GinFilesTest(parameterized.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def test_found_the_gin_files(self):
    self.assertContainsSubset(
        {'gin/runs/finetune_richhf.gin', 'gin/runs/eval.gin',
         'gin/local_tiny.gin', 'gin/demo.gin', 'gin/models/rahf_tiny.gin',
         'gin/models/rahf_base.gin', 'gin/models/rahf_large.gin',
         'gin/runs/pretrain_captioning.gin',
         'gin/models/variant_augmented.gin',
         'gin/models/variant_multihead.gin'},
        set(_GIN_FILES))
    runs = {r for r, _ in _TRAIN_RUNS}
    for path in _GIN_FILES:
      if path.startswith('gin/runs/') and path not in _NON_TRAIN_RUNS:
        self.assertIn(path, runs, 'add the run file to _TRAIN_RUNS')

  @parameterized.parameters(*_TRAIN_RUNS)
  def test_train_step_lowers_with_the_tiny_overlay(self, run, overlays):
    gin_utils.parse_gin([run, 'gin/local_tiny.gin', *overlays], _REQUIRED,
                        [_ROOT])
    cfg = _build_model_config()
    tc = gin.query_parameter(
        'richhf_jax.train.train_config').scoped_configurable_fn()
    self.assertIsInstance(tc, trainer_lib.TrainConfig)
    tc = dataclasses.replace(tc, batch_size=2)
    tr = trainer_lib.Trainer(model_lib.RAHFModel(cfg), tc, 6, 7)
    # Traced and lowered for the abstract state: the whole train step
    # (losses, gradients, this run's optimizer) without compiling it; the
    # tiny run file trains for real in e2e_test and resume_test.
    tr.use_abstract_state()
    batch = test_utils.fake_batch(cfg, batch_size=2)
    lowered = tr.lower({k: trainer_lib.jax.ShapeDtypeStruct(v.shape, v.dtype)
                        for k, v in batch.items()})
    _, aux = lowered.out_info
    for k in ('loss/total', 'loss/text', 'grad_norm', 'learning_rate'):
      self.assertEqual(aux[k].shape, (), k)
    if 'pretrain' in run:  # Text loss only, on caption batches.
      self.assertEqual((cfg.heatmap_loss_weight, cfg.score_loss_weight,
                        cfg.text_loss_weight), (0.0, 0.0, 1.0))
      self.assertEqual(gin.query_parameter('richhf_jax.DataConfig.task'),
                       'caption')
    else:
      self.assertGreater(cfg.heatmap_loss_weight, 0)
      self.assertGreater(cfg.score_loss_weight, 0)
      self.assertIn('loss/implausibility_heatmap', aux)
    if 'variant_augmented' in ' '.join(overlays):
      self.assertEqual(cfg.variant, 'augmented')

  @parameterized.parameters(
      *[p for p in _GIN_FILES if p != 'gin/runs/infer.gin'])
  def test_parses_and_builds_the_model_config(self, path):
    bindings = list(_REQUIRED) if 'runs/' in path else []
    gin_utils.parse_gin(_files_for(path), bindings, [_ROOT])
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

  def test_variant_overlay_switches_the_variant(self):
    gin_utils.parse_gin(['gin/runs/finetune_richhf.gin', 'gin/local_tiny.gin',
                         'gin/models/variant_augmented.gin'], _REQUIRED,
                        [_ROOT])
    self.assertEqual(_build_model_config().variant, 'augmented')

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


# A program run through `gin_utils.run`; argv[1] picks how `fn` ends.
_RUN_PROGRAM = """
import sys
from richhf_jax import gin_utils
how = sys.argv.pop(1)
def fn():
  print('fn ran', flush=True)
  if how == 'exit':
    sys.exit(7)
  if how == 'raise':
    raise RuntimeError('boom')
gin_utils.run(fn, on_exit=lambda status: print('on_exit', status, flush=True))
"""


class GinRunTest(parameterized.TestCase):

  @parameterized.parameters(('return', 0, 'on_exit 0'),
                            ('exit', 7, 'on_exit 7'), ('raise', 1, None))
  def test_on_exit_sees_the_status(self, how, status, line):
    gin_file = os.path.join(tempfile.mkdtemp(), 'empty.gin')
    with open(gin_file, 'w') as f:
      f.write('# nothing to bind\n')
    proc = subprocess.run(
        [sys.executable, '-c', _RUN_PROGRAM, how, f'--gin_file={gin_file}'],
        cwd=_ROOT, text=True, capture_output=True, timeout=120, check=False)
    out = proc.stdout.splitlines()
    self.assertEqual(proc.returncode, status, proc.stderr[-2000:])
    self.assertEqual(out[0], 'fn ran', proc.stderr[-2000:])
    if line is None:
      self.assertLen(out, 1)  # An exception bypasses on_exit.
      self.assertIn('RuntimeError: boom', proc.stderr)
    else:
      self.assertEqual(out[1:], [line])


if __name__ == '__main__':
  absltest.main()
