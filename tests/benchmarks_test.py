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
"""Smoke tests of benchmarks/: each script runs one tiny case.

Each model benchmark's `main` runs in process on the tiny config (so the
suite's compile cache applies) and must print one valid JSON line per case
with the fields the README table reads. No timing is checked.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

from benchmarks import common
from benchmarks import components
from benchmarks import decoding
from benchmarks import deconv
from benchmarks import full_inference
from benchmarks import head_flops
from benchmarks import heatmap_ceiling
from benchmarks import heatmap_head_ablation
from benchmarks import inference
from benchmarks import run_all
from benchmarks import train_step
from benchmarks import xla_peak
from richhf_jax import compile_options
from richhf_jax import model as model_lib
from richhf_jax.data import synthetic
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.weights import port

TINY = ['--config', 'tiny', '--batch', '1', '--steps', '1', '--warmup', '0',
        '--matmul_size', '64']


# Heatmap heads over 2 slices of a batch of 2: a loop in the step.
_TRAIN_STEP_ARGV = TINY + ['--remat', '--heatmap_batch_chunks', '2', '--batch',
                           '2']


def _run(main, argv):
  """Runs a benchmark's main; returns its JSON lines."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rc = main(argv)
  if rc:
    raise AssertionError(f'exit status {rc}: {out.getvalue()}')
  rows = run_all.json_lines(out.getvalue())
  if not rows:
    raise AssertionError(f'no JSON line in: {out.getvalue()}')
  return rows


class ModelBenchmarksTest(absltest.TestCase):

  def _check_common(self, row, benchmark, batch=1):
    self.assertEqual(row['benchmark'], benchmark)
    self.assertEqual(row['config'], 'tiny')
    self.assertEqual(row['batch'], batch)
    self.assertGreater(row['sec_per_call'], 0)
    self.assertGreater(row['peak_memory_gib'], 0)
    self.assertEqual(row['memory_kind'], 'rss')
    self.assertGreater(row['matmul_peak_gflops'], 0)
    self.assertIn('load_avg', row)

  def test_train_step(self):
    # The program of test_train_step_compile_only: compiled once.
    (row,) = _run(train_step.main, _TRAIN_STEP_ARGV)
    self._check_common(row, 'train_step', batch=2)
    self.assertTrue(row['remat'])
    self.assertEqual(row['compiler_options'], compile_options.defaults())
    self.assertGreater(row['gflop_per_example'], 0)
    self.assertGreater(row['fraction_of_peak'], 0)
    self.assertEqual(row['heatmap_size'], [16, 16])
    self.assertGreater(row['xla_total_gib'], 0)
    # The high-water mark before the step cannot exceed the final one, nor
    # the RSS at that moment the high-water mark.
    self.assertBetween(row['rss_before_step_gib'], 0.01,
                       row['peak_before_step_gib'])
    self.assertLessEqual(row['peak_before_step_gib'], row['peak_memory_gib'])

  def test_train_step_compile_only(self):
    (row,) = _run(train_step.main, _TRAIN_STEP_ARGV + ['--compile_only'])
    self.assertTrue(row['compile_only'])
    self.assertEqual(row['heatmap_batch_chunks'], 2)
    self.assertGreater(row['xla_temp_gib'], 0)
    self.assertNotIn('sec_per_call', row)
    # XLA counts a loop body once; the figure is the loop-free step's.
    args = argparse.Namespace(dtype='float32', remat=True,
                              heatmap_head='port', warmup=0, steps=1,
                              optimizer='adamw', mu_dtype='',
                              cpu_memory_scheduler=True, wiring='paper')
    batch_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in
                  common.test_utils.fake_batch(
                      common.model_config('tiny'), 2,
                      *common.SEQUENCE_LENGTHS['tiny']).items()}
    trainer = train_step._trainer('tiny', 'multihead', 2, args,
                                  *common.SEQUENCE_LENGTHS['tiny'], 1, 1)
    trainer.use_abstract_state()
    flat_gflop = common.cost_flops(trainer.lower(batch_spec)) / 1e9
    self.assertAlmostEqual(row['gflop_per_example'], flat_gflop / 2,
                           delta=0.01)

  def test_inference_both_variants(self):
    rows = _run(inference.main, TINY + ['--variant', 'multihead,augmented'])
    self.assertEqual([r['variant'] for r in rows],
                     ['multihead', 'augmented'])
    for row in rows:
      self._check_common(row, 'inference')
      self.assertGreater(row['gflop_per_example'], 0)
      # Timed as the library compiles it.
      self.assertEqual(row['compiler_options'], compile_options.defaults())
    # The augmented variant runs the encoder once per task prompt.
    self.assertGreater(rows[1]['gflop_per_example'],
                       rows[0]['gflop_per_example'])

  def test_full_inference(self):
    (row,) = _run(full_inference.main, TINY + ['--compiler_options', 'none'])
    self._check_common(row, 'full_inference')
    self.assertEqual(row['compiler_options'], {})
    self.assertBetween(row['decoded_tokens'], 1, row['max_decode_length'])
    self.assertTrue(row['weight_major_steps'])  # As Predictor on CPU.

  def test_decoding(self):
    (row,) = _run(decoding.main, TINY)
    self._check_common(row, 'decoding')
    self.assertBetween(row['decoded_tokens'], 1, 8)
    self.assertAlmostEqual(
        row['ms_per_token'],
        1e3 * row['sec_per_call'] / row['decoded_tokens'], delta=1e-2)
    self.assertTrue(row['weight_major_steps'])
    self.assertGreater(row['step_kernels_ms'], 0)
    # The same tokens over the params as stored; no step kernels made.
    (plain,) = _run(decoding.main, TINY + ['--no-weight_major_steps'])
    self.assertFalse(plain['weight_major_steps'])
    self.assertIsNone(plain['step_kernels_ms'])
    self.assertEqual(plain['decoded_tokens'], row['decoded_tokens'])

  def test_decoding_speculative_brackets(self):
    # Drafting from the greedy output accepts every draft: 8 tokens in
    # ceil(8 / 4) calls; the random prompt accepts none: one per call.
    rows = {d: _run(decoding.main, TINY + ['--draft_tokens', '3', '--draft',
                                           d])[0]
            for d in ('output', 'prompt')}
    for d, row in rows.items():
      self.assertEqual(row['draft_tokens'], 3)
      self.assertEqual(row['draft'], d)
      self.assertGreater(row['draft_ms_per_token'], 0)
    tokens = rows['output']['decoded_tokens']
    self.assertEqual(rows['output']['decoder_calls'], -(-tokens // 4))
    self.assertEqual(rows['prompt']['decoder_calls'], tokens)

  def test_decoding_port_wiring(self):
    # The port's decoder attends to the prompt positions only.
    (row,) = _run(decoding.main, TINY + ['--wiring', 'port'])
    self.assertEqual(row['wiring'], 'port')
    self.assertEqual(row['encoded_length'], 8)
    (paper,) = _run(decoding.main, TINY)
    self.assertEqual(paper['wiring'], 'paper')
    self.assertGreater(paper['encoded_length'], 8)

  def test_decoding_marked_drafts(self):
    # Drafts accepted up to each of 2 marks per row; the decoder calls are
    # those that pattern takes.
    (row,) = _run(decoding.main, TINY + [
        '--target_length', '16', '--draft_tokens', '3', '--draft', 'marked',
        '--marks', '2'])
    self.assertEqual(row['draft'], 'marked')
    self.assertEqual(row['marks'], 2)
    self.assertEqual(row['decoder_calls'], row['expected_decoder_calls'])
    self.assertGreaterEqual(row['decoder_calls'],
                            -(-row['decoded_tokens'] // 4))

  def test_marked_source(self):
    greedy = np.array([[5, 6, 5, 7, 8, 1, 0, 0],
                       [9, 9, 4, 3, 2, 6, 7, 8]])
    source, removed = decoding.marked_source(greedy, 2)
    # Row 0: 6 tokens with the EOS (1); the first 5 recurs and the EOS
    # stays, so the marks are chosen among positions 1-4, near 2 and 4.
    self.assertEqual(removed, [[2, 4], [3, 5]])
    np.testing.assert_array_equal(
        source, [[5, 6, 7, 1, 0, 0, 0, 0], [9, 9, 4, 2, 7, 8, 0, 0]])
    # K = 1: segments 3 + 2 + 1 -> 2 + 1 + 1 calls; row 1: 4 + 2 + 2 ->
    # 2 + 1 + 1; the batch takes its slowest row.
    self.assertEqual(decoding.marked_calls(greedy, removed, 1), 4)
    self.assertEqual(decoding.marked_calls(greedy, [[], []], 1), 4)
    self.assertEqual(decoding.marked_calls(greedy, [[], []], 3), 2)
    with self.assertRaisesRegex(ValueError, 'row 0 .* only 4 tokens'):
      decoding.marked_source(greedy, 5)
    with self.assertRaisesRegex(ValueError, 'marks per row >= 0'):
      decoding.marked_source(greedy, -1)

  def test_components_rows_per_part(self):
    rows = _run(components.main, TINY)
    self.assertEqual([r['part'] for r in rows],
                     ['vit', 'heatmap_head', 'score_head'])
    for row in rows:
      self._check_common(row, 'components')
    self.assertGreater(rows[0]['gflop_per_example'], 0)
    # The tiny heatmap head upsamples: it costs more than the score head.
    self.assertGreater(rows[1]['gflop_per_example'],
                       rows[2]['gflop_per_example'])

  def test_failed_case_keeps_other_rows(self):
    def run_case(name, variant, batch, args, peak):
      del args, peak
      if batch == 2:
        raise MemoryError('out of memory')
      return dict(config=name, variant=variant, batch=batch, x=1.0)
    parser = argparse.ArgumentParser()
    common.add_model_flags(parser)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      rc = common.run_benchmark(parser, TINY[:2] + [
          '--batch', '1,2,3', '--matmul_size', '64'], 'fake', run_case,
                                ('batch', 'x'))
    self.assertEqual(rc, 1)
    rows = run_all.json_lines(out.getvalue())
    self.assertEqual([r['batch'] for r in rows], [1, 2, 3])
    self.assertIn('MemoryError: out of memory', rows[1]['error'])
    self.assertEqual(rows[2]['x'], 1.0)

  def test_head_flops(self):
    rows = _run(head_flops.main, ['--config', 'tiny', '--heatmap_head',
                                  'port'])
    (row,) = rows
    self.assertEqual(row['head_output'], '16x16')
    self.assertGreater(row['head_gflop'], 0)
    self.assertGreater(row['model_gflop_per_example'], row['head_gflop'])
    self.assertEqual(row['head_ratio_vs_port'], 1.0)

  def test_deconv_rows_per_shape_and_method(self):
    rows = _run(deconv.main, ['--shapes', '3:2:4', '--steps', '1',
                              '--warmup', '0'])
    self.assertEqual([r['method'] for r in rows], ['phase', 'dilated'])
    for r in rows:
      self.assertEqual((r['in_side'], r['out_side'], r['c_out']), (3, 6, 4))
      self.assertGreater(r['fwd_bwd_sec'], 0)
      self.assertIn('load_avg', r)
    self.assertGreater(rows[0]['speedup_fwd_bwd'], 0)
    self.assertEqual(deconv.port_shapes()[-1], (192, 384, 192))

  def test_rejects_unknown_config(self):
    with self.assertRaises(SystemExit), contextlib.redirect_stderr(
        io.StringIO()) as err:
      inference.main(['--config', 'huge'])
    self.assertIn("--config 'huge'", err.getvalue())


class HelpersTest(absltest.TestCase):

  def test_compiler_options_flag(self):
    parse = common.parse_compiler_options
    self.assertIsNone(parse('default'))
    self.assertEqual(parse('none'), {})
    self.assertEqual(parse('xla_a=1, xla_b=B'), {'xla_a': '1', 'xla_b': 'B'})
    for bad in ('xla_a', 'xla_a=', '=1', 'xla_a=1,'):
      with self.assertRaisesRegex(argparse.ArgumentTypeError, 'NAME=VALUE'):
        parse(bad)
    self.assertEqual(common.model_compiler_options(
        argparse.Namespace(compiler_options=None)), compile_options.defaults())
    self.assertEqual(common.model_compiler_options(
        argparse.Namespace(compiler_options={'xla_a': '1'})), {'xla_a': '1'})

  def test_model_configs(self):
    paper = common.model_config('paper')
    self.assertEqual(paper.heatmap_size, (384, 384))
    self.assertEqual(paper.grid, (24, 24))
    self.assertEqual(paper.t5.emb_dim, 768)
    small = common.model_config('small', 'augmented', 'bfloat16', True,
                                'efficient')
    self.assertEqual(small.heatmap_size, (224, 224))
    self.assertEqual(small.t5.num_encoder_layers, 6)
    self.assertEqual(small.t5.emb_dim, 512)
    self.assertTrue(small.vit.remat and small.t5.remat)
    self.assertTrue(small.heatmap_head.remat)
    self.assertEqual(small.heatmap_head.bilinear_upsample, 4)
    with self.assertRaisesRegex(ValueError, 'unknown benchmark config'):
      common.model_config('huge')
    # The port's wiring: the port's model exactly (as weights/port.py
    # builds it), same heads.
    wired = common.model_config('paper', wiring='port')
    self.assertEqual(wired.decoder_attends_to, 'text')
    self.assertTrue(wired.vit.class_token)
    self.assertEqual(wired.vit, port.port_rahf_config().vit)
    self.assertEqual(wired.heatmap_head, paper.heatmap_head)
    for field in rahf.PORT_WIRING:
      self.assertEqual(getattr(wired, field),
                       getattr(port.port_rahf_config(), field))
    with self.assertRaisesRegex(ValueError, "unknown wiring 'pt'"):
      common.model_config('paper', wiring='pt')

  def test_cost_flops_accepts_list_and_dict(self):

    class Fake:

      def __init__(self, cost):
        self.cost = cost

      def cost_analysis(self):
        return self.cost

    self.assertEqual(common.cost_flops(Fake({'flops': 3.0})), 3.0)
    self.assertEqual(common.cost_flops(Fake([{'flops': 5.0}])), 5.0)
    self.assertIsNone(common.cost_flops(Fake({})))
    self.assertIsNone(common.cost_flops(Fake([])))

  def test_print_report_writes_table_and_json(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      common.print_report([{'a': 1, 'b': 0.5}, {'a': 2, 'b': None}],
                          ('a', 'b'))
    lines = out.getvalue().splitlines()
    self.assertLen(lines, 5)
    self.assertEqual(json.loads(lines[3]), {'a': 1, 'b': 0.5})
    self.assertIn('-', lines[2])

  def test_heatmap_ceiling(self):
    maps = np.stack([
        synthetic.rater_heatmap([[(0.3, 0.4)], [(0.32, 0.41)], []], 128),
        synthetic.rater_heatmap([[(0.7, 0.2), (0.2, 0.8)]] * 3, 128),
    ]).astype(np.float32) / 255.0
    rows = heatmap_ceiling.ceiling(maps, [8, 32, 128], [128])
    cc = [r['cc'] for r in rows]
    self.assertAlmostEqual(cc[2], 1.0, places=5)  # No resampling.
    self.assertLess(cc[0], cc[1])
    self.assertLess(cc[1], cc[2])
    self.assertEqual(rows[0]['num_gt_positive'], 2)

  def test_ablation_heads_share_output_size(self):
    for size in heatmap_head_ablation.HEATMAP_SIZES:
      configs = {h: heatmap_head_ablation.model_config(h, size)
                 for h in heatmap_head_ablation.HEADS}
      for h, config in configs.items():
        self.assertEqual(config.heatmap_size, (size, size), (h, size))
      # The efficient head predicts at 32x32 and resizes the logits.
      eff = configs['efficient'].heatmap_head
      self.assertEqual(size // eff.bilinear_upsample, 32)
      for h in ('port', 'narrow'):
        head = configs[h].heatmap_head
        self.assertEqual(head.bilinear_upsample, 1, h)
        self.assertEqual(8 * head.conv_resolution_factor, size, h)
      narrow = configs['narrow'].heatmap_head.upsample_channels
      port = configs['port'].heatmap_head.upsample_channels
      self.assertTrue(all(n < p for n, p in zip(narrow, port)), size)
    # At 128x128 (the paper's 16x of the grid) the ablation's heads have 1/8
    # of the widths of the paper configuration's heads they stand for.
    self.assertEqual(
        heatmap_head_ablation.head_config('port').upsample_channels,
        tuple(c // 8 for c in heatmap_head.get_heatmap_head_config(
            'port').upsample_channels))
    self.assertEqual(
        heatmap_head_ablation.head_config('narrow').upsample_channels,
        (256 // 8, 128 // 8, 64 // 8, 32 // 8))
    with self.assertRaisesRegex(ValueError, 'heatmap_size'):
      heatmap_head_ablation.model_config('port', 96)
    gap = heatmap_head_ablation.relative_gap
    self.assertAlmostEqual(gap(0.5, 0.49, 'cc'), 0.02)
    self.assertAlmostEqual(gap(0.5, 0.51, 'kld'), 0.02)

  def test_ablation_summary_over_runs(self):
    keys = ['implausibility/cc', 'implausibility/kld']
    rows = [dict(head='port', **{keys[0]: 0.5, keys[1]: 2.0}),
            dict(head='efficient', **{keys[0]: 0.45, keys[1]: 2.2}),
            dict(head='port', **{keys[0]: 0.6, keys[1]: 2.2}),
            dict(head='efficient', **{keys[0]: 0.55, keys[1]: 2.4})]
    stats = heatmap_head_ablation.summarize(rows, 'port', keys)
    cc, kld = stats['efficient'][keys[0]], stats['efficient'][keys[1]]
    self.assertEqual(cc['n'], 2)
    self.assertAlmostEqual(cc['mean'], 0.5)
    self.assertAlmostEqual(cc['sd'], np.sqrt(0.005))
    # CC lower than the reference's 0.55 and KLD higher than its 2.1: both
    # worse, so both gaps positive.
    self.assertAlmostEqual(cc['gap'], 0.05 / 0.55)
    self.assertAlmostEqual(kld['gap'], 0.2 / 2.1)
    self.assertAlmostEqual(cc['gap_se'],
                           np.sqrt(0.005 / 2 + 0.005 / 2) / 0.55)
    self.assertEqual(stats['port'][keys[0]]['gap'], 0.0)
    one = heatmap_head_ablation.summarize(rows[:2], 'port', keys)
    self.assertTrue(np.isnan(one['efficient'][keys[0]]['sd']))
    self.assertTrue(np.isnan(one['efficient'][keys[0]]['gap_se']))
    with self.assertRaisesRegex(ValueError, 'narrow'):
      heatmap_head_ablation.summarize(rows, 'narrow', keys)
    with self.assertRaises(SystemExit), contextlib.redirect_stderr(
        io.StringIO()):
      heatmap_head_ablation.main(['--init_seeds', ','])

  def test_ablation_main_runs_every_init_seed_on_the_seeds_data(self):
    calls = []

    def fake_train(head, train, test, args, seed, order_seed=None):
      calls.append((head, seed, order_seed, train['image'].shape[0]))
      value = 0.5 + 0.1 * seed - (0.05 if head == 'efficient' else 0.0)
      return dict(head=head, **{
          f'{k}/{m}': value for k in ('implausibility', 'misalignment')
          for m in heatmap_head_ablation.METRICS})

    with mock.patch.object(heatmap_head_ablation, 'train_and_eval',
                           fake_train):
      rows = _run(heatmap_head_ablation.main, [
          '--num_train', '3', '--num_test', '2', '--heatmap_size', '64',
          '--heads', 'port,efficient', '--seeds', '7',
          '--init_seeds', '0,1'])
    self.assertEqual(calls, [('port', 0, 7, 3), ('efficient', 0, 7, 3),
                             ('port', 1, 7, 3), ('efficient', 1, 7, 3)])
    summary = rows[-1]
    self.assertEqual(summary['benchmark'], 'heatmap_head_ablation_summary')
    self.assertEqual(summary['runs_per_head'], 2)
    cc = summary['stats']['efficient']['implausibility/cc']
    # Means 0.55 (port) and 0.50 (efficient): CC 0.05 / 0.55 worse.
    self.assertAlmostEqual(cc['gap'], 0.05 / 0.55, places=5)
    self.assertEqual([r['init_seed'] for r in rows[:-1]], [0, 0, 1, 1])

  def test_ablation_frozen_backbone_trains_it_once_per_data_seed(self):
    calls = []

    def fake_model(head, train, args, seed, order_seed=None):
      calls.append(('backbone', head, seed, order_seed))
      return 'model', {'seed': seed}, 1.0, {'loss/total': 0.5}

    def fake_features(model, params, data, batch_size):
      return np.full((data['image'].shape[0], 2, 2, 3), params['seed'],
                     np.float32)

    def fake_heads(head, feats, train, test_feats, test, args, seed,
                   order_seed):
      calls.append((head, seed, order_seed, feats.shape[0],
                    test_feats.shape[0], float(feats[0, 0, 0, 0])))
      value = 0.5 - (0.05 if head == 'efficient' else 0.0)
      return dict(head=head, **{
          f'{k}/{m}': value + 0.01 * seed
          for k in ('implausibility', 'misalignment')
          for m in heatmap_head_ablation.METRICS})

    with mock.patch.multiple(heatmap_head_ablation, train_model=fake_model,
                             feature_maps=fake_features,
                             train_heads_on_features=fake_heads):
      rows = _run(heatmap_head_ablation.main, [
          '--num_train', '3', '--num_test', '2', '--heatmap_size', '64',
          '--heads', 'port,efficient', '--seeds', '7',
          '--init_seeds', '0,1', '--frozen_backbone', 'efficient'])
    self.assertEqual(calls, [
        ('backbone', 'efficient', 7, None),
        ('port', 0, 7, 3, 2, 7.0), ('efficient', 0, 7, 3, 2, 7.0),
        ('port', 1, 7, 3, 2, 7.0), ('efficient', 1, 7, 3, 2, 7.0)])
    self.assertEqual(rows[0]['benchmark'], 'heatmap_head_ablation_backbone')
    self.assertEqual(rows[0]['feature_shape'], [2, 2, 3])
    self.assertEqual({r['frozen_backbone'] for r in rows[1:]}, {'efficient'})
    self.assertEqual(rows[-1]['runs_per_head'], 2)
    self.assertEqual(rows[0]['feature_sum'], 7.0 * 3 * 2 * 2 * 3)
    # With a cache the backbone trains once for both invocations.
    calls.clear()
    with tempfile.TemporaryDirectory() as cache, mock.patch.multiple(
        heatmap_head_ablation, train_model=fake_model,
        feature_maps=fake_features, train_heads_on_features=fake_heads):
      argv = ['--num_train', '3', '--num_test', '2', '--heatmap_size', '64',
              '--heads', 'efficient', '--seeds', '7', '--frozen_backbone',
              'port', '--features_cache', cache]
      first = _run(heatmap_head_ablation.main, argv)
      second = _run(heatmap_head_ablation.main, argv)
    self.assertEqual(calls, [('backbone', 'port', 7, None),
                             ('efficient', 7, 7, 3, 2, 7.0),
                             ('efficient', 7, 7, 3, 2, 7.0)])
    self.assertIn('train_sec', first[0])
    self.assertEqual(second[0]['cached'], first[0]['cached'])
    self.assertEqual(second[0]['feature_sum'], first[0]['feature_sum'])
    with self.assertRaises(SystemExit), contextlib.redirect_stderr(
        io.StringIO()):
      heatmap_head_ablation.main(['--frozen_backbone', 'bilinear'])
    with self.assertRaises(SystemExit), contextlib.redirect_stderr(
        io.StringIO()):
      heatmap_head_ablation.main(['--features_cache', '/tmp'])

  def test_ablation_heads_on_features_see_the_models_input_and_learn(self):
    abl = heatmap_head_ablation
    args = argparse.Namespace(heatmap_size=64, steps=1, batch_size=4,
                              learning_rate=2e-3)
    model = model_lib.RAHFModel(abl.model_config('efficient', 64))
    params = model_lib.unbox(model.get_initial_variables(
        jax.random.PRNGKey(0), abl.INPUT_LENGTH,
        abl.TARGET_LENGTH)['params'])
    rng = np.random.default_rng(0)
    n = 6
    data = dict(
        image=rng.uniform(-1, 1, (n, abl.IMAGE_SIZE, abl.IMAGE_SIZE, 3)
                          ).astype(np.float32),
        encoder_input_tokens=rng.integers(
            3, 50, (n, abl.INPUT_LENGTH)).astype(np.int32))
    feats = abl.feature_maps(model, params, data, batch_size=4)
    self.assertEqual(feats.shape, (n, 8, 8, model.config.t5.emb_dim))
    # The model's own heads applied to the extracted features give its
    # heatmaps.
    out = model.module.apply({'params': params}, data['image'][:2],
                             data['encoder_input_tokens'][:2])
    head = heatmap_head.HeatmapHead(model.config.heatmap_head)
    for k in rahf.HEATMAP_TYPES:
      np.testing.assert_allclose(
          head.apply({'params': params[f'heatmap_{k}']}, feats[:2]),
          out[f'{k}_heatmap'], atol=1e-5, err_msg=k)
    # Heads trained on fixed features: a constant target is learned.
    for k in rahf.HEATMAP_TYPES:
      data[f'{k}_heatmap'] = np.full((n, 64, 64), 0.1, np.float32)
    losses = []
    for steps in (1, 40):
      args.steps = steps
      row = abl.train_heads_on_features('efficient', feats, data, feats,
                                        data, args, seed=0, order_seed=0)
      losses.append(row['final_train_loss'])
    self.assertLess(losses[1], 0.8 * losses[0])
    self.assertEqual(row['num_train'], n)
    self.assertLess(row['implausibility/mse_all'], 0.01)
    with self.assertRaisesRegex(ValueError, '5 feature maps for 6'):
      abl.train_heads_on_features('efficient', feats[:5], data, feats,
                                  data, args, seed=0, order_seed=0)

  def test_run_all_sets_are_valid_commands(self):
    for name, cases in run_all.SETS.items():
      for script, arguments in cases:
        self.assertTrue(script.endswith('.py'), name)
        self.assertNotIn('tiny', arguments)
    self.assertEqual(run_all.json_lines('x\n{"a": 1}\n{bad}\n'), [{'a': 1}])


# Compiles a function whose plan has two 512x512 float32 buffers alive at
# once (x and sin(x), both read by the last op), with XLA's dump on.
_DUMP_PROGRAM = '''
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jnp.sin(x) * (x @ x)))
f.lower(jax.ShapeDtypeStruct((512, 512), jnp.float32)).compile()
'''


class XlaPeakTest(absltest.TestCase):

  def test_reads_a_real_dump(self):
    with tempfile.TemporaryDirectory() as d:
      env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
          f'--xla_dump_to={d} --xla_dump_hlo_module_re=.*lambda.* '
          '--xla_dump_hlo_pass_re=NONE'))
      subprocess.run([sys.executable, '-c', _DUMP_PROGRAM], env=env,
                     check=True, capture_output=True)
      peak = xla_peak.read_peak(xla_peak.find_module(d, 'lambda'))
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        self.assertEqual(xla_peak.main([d, '--module', 'lambda']), 0)
      with self.assertRaisesRegex(FileNotFoundError, 'no_such_module'):
        xla_peak.find_module(d, 'no_such_module')
    big = [b for b in peak.alive if b.shape.startswith('f32[512,512]')]
    self.assertGreaterEqual(len(big), 2)
    self.assertGreaterEqual(peak.bytes, 2 * 512 * 512 * 4)
    self.assertEqual(peak.bytes, sum(b.size for b in peak.alive))
    self.assertLess(peak.index, peak.length)
    for b in peak.alive:
      self.assertLessEqual(b.start, peak.index)
      self.assertGreaterEqual(b.end, peak.index)
    shapes = xla_peak.by_shape(peak)
    self.assertTrue(shapes[0][0].startswith('f32[512,512]'), shapes)
    row = run_all.json_lines(out.getvalue())[0]
    self.assertEqual(row['benchmark'], 'xla_peak')
    self.assertAlmostEqual(row['peak_gib'], peak.bytes / 2**30, places=3)


if __name__ == '__main__':
  absltest.main()
