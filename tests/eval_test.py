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
"""Tests for richhf_jax.eval on a freshly initialised tiny checkpoint.

One training run directory (step 3) and its export are evaluated on the tiny
synthetic test split: the stream evaluator from the run directory, the seqio
evaluator from the step path (the two must agree), and the export through
gin/runs/eval.gin at 512x512. The model compiles once (batch size 3).
"""

import json
import math
import os
import re
import types

import gin
import numpy as np
from PIL import Image
import pytest

from richhf_jax import checkpoints
from richhf_jax import eval as eval_lib
from richhf_jax import export
from richhf_jax import gin_utils
from richhf_jax import metrics as metrics_lib
from richhf_jax import test_utils
from richhf_jax.data import pipeline
from richhf_jax.data import testing
from richhf_jax.models import config as config_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BATCH = 3
_STEP = 3
_NUM_TEST = 4  # testing.synthetic_joined()'s test split.


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  paths = testing.synthetic_joined()
  # Room for the synthetic vocabulary (~300 pieces).
  cfg = test_utils.tiny_config(
      t5=config_lib.t5_config('tiny', vocab_size=512))
  params = test_utils.init_params(cfg)
  tmp = tmp_path_factory.mktemp('eval')
  run = str(tmp / 'run')
  ckpt = checkpoints.Checkpointer(run, async_save=False)
  ckpt.save(_STEP, {'params': params}, {
      'model_config': cfg, 'step': _STEP,
      'data': {'vocab_path': paths['vocab'], 'input_length': 16,
               'target_length': 24}})
  ckpt.close()
  return types.SimpleNamespace(
      cfg=cfg, run=run, tmp=tmp, paths=paths,
      export=export.export(run, str(tmp / 'export')),
      data=pipeline.DataConfig(paths['joined'], paths['vocab'],
                               input_length=16, target_length=24))


def _evaluate(setup, name, **kwargs):
  logs = []
  out = str(setup.tmp / name)
  result = eval_lib.evaluate(data=setup.data, output_dir=out,
                             batch_size=_BATCH, progress_every_s=0.0,
                             log_fn=logs.append, **kwargs)
  with open(os.path.join(out, 'eval_info.json')) as f:
    info = json.load(f)
  with open(os.path.join(out, 'metrics.json')) as f:
    saved = json.load(f)
  with open(os.path.join(out, 'report.md')) as f:
    report_md = f.read()
  return types.SimpleNamespace(result=result, out=out, logs=logs, info=info,
                               saved=saved, report=report_md)


@pytest.fixture(scope='module')
def stream(setup):
  return _evaluate(setup, 'stream', checkpoint_path=setup.run)


@pytest.fixture(scope='module')
def seqio_eval(setup):
  return _evaluate(setup, 'seqio', evaluator='seqio',
                   checkpoint_path=os.path.join(setup.run, 'checkpoints',
                                                str(_STEP)))


@pytest.fixture(scope='module')
def export_512(setup):
  """The export through the gin run file, heatmaps at 512x512.

  Its keywords are decoded speculatively (DRAFT_TOKENS = 3).
  """
  out = str(setup.tmp / 'export_512')
  gin.clear_config()
  try:
    gin_utils.parse_gin(['gin/runs/eval.gin'], [
        f"CHECKPOINT_PATH = '{setup.export}'", 'EVAL_MODEL_CONFIG = None',
        f"DATA_DIR = '{setup.paths['joined']}'",
        f"VOCAB_PATH = '{setup.paths['vocab']}'",
        f"EVAL_OUTPUT_DIR = '{out}'", f'EVAL_BATCH_SIZE = {_BATCH}',
        'HEATMAP_EVAL_SIZE = 512', 'INPUT_LENGTH = 16', 'TARGET_LENGTH = 24',
        'DRAFT_TOKENS = 3',
    ], [_ROOT])
    logs = []
    result = eval_lib.evaluate(log_fn=logs.append)
  finally:
    gin.clear_config()
  with open(os.path.join(out, 'eval_info.json')) as f:
    info = json.load(f)
  with open(os.path.join(out, 'report.md')) as f:
    report_md = f.read()
  return types.SimpleNamespace(result=result, out=out, logs=logs, info=info,
                               report=report_md)


def _flat(tree, prefix=''):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f'{prefix}{k}/'))
    return out
  return {prefix[:-1]: tree}


def _assert_close(got, want, keys=None):
  got, want = _flat(got), _flat(want)
  assert set(got) == set(want)
  for k in keys or sorted(want):
    g, w = got[k], want[k]
    if w is None or (isinstance(w, float) and math.isnan(w)):
      assert g is None or math.isnan(g), k
    else:
      assert g == pytest.approx(w, rel=1e-5, abs=1e-6), k


# ----------------------------------------------------------------------------
# End to end.
# ----------------------------------------------------------------------------


def test_stream_writes_metrics_report_and_plots(stream):
  metrics_lib.check_metrics_structure(stream.result)
  assert set(stream.saved) == {'scores', 'heatmaps', 'keywords', 'baseline'}
  info = stream.info
  assert info['num_examples'] == _NUM_TEST
  assert (info['step'], info['checkpoint_kind']) == (_STEP, 'training')
  assert info['heatmap_resolution'] == [16, 16]
  assert not info['upsampled']
  assert "Resolution: 16x16, the heatmap head's output resolution" in (
      stream.report)
  assert '![implausibility heatmap' in stream.report
  for name in ('plausibility', 'alignment', 'aesthetics', 'overall'):
    assert os.path.isfile(os.path.join(stream.out, f'scatter_{name}.png'))
  # Predictions of an initialised model are finite and in range.
  for v in _flat(stream.result).values():
    assert not (isinstance(v, float) and math.isinf(v))


def test_overlays_show_refetched_examples_with_their_cc(stream):
  shown = 0
  for name in metrics_lib.HEATMAP_NAMES:
    rows = stream.info['overlays'][name]
    path = os.path.join(stream.out, 'overlays', f'{name}.png')
    if not rows:
      assert not os.path.exists(path)
      continue
    shown += 1
    ranks = [r['rank'] for r in rows]
    assert ranks == sorted(set(ranks))
    assert rows[0]['group'] == 'best' and rows[0]['rank'] == 1
    ccs = [r['cc'] for r in rows]
    assert ccs == sorted(ccs, reverse=True)
    for r in rows:
      # The second read predicts the same example again.
      assert r['cc_refetched'] == pytest.approx(r['cc'], abs=1e-6)
      assert 0 <= r['index'] < _NUM_TEST
    with Image.open(path) as img:
      # Title + labels, then a caption and 160 px panels per row.
      assert img.size == (3 * 160, 2 * 14 + len(rows) * (14 + 160))
  assert shown  # The synthetic split has examples with GT > 0.


def test_progress_lines(stream):
  counts = [l for l in stream.logs if re.match(r'\s+\d+/4 examples', l)]
  assert counts[0].startswith(f'  {_BATCH}/4 examples (first batch')
  assert re.match(r'\s+4/4 examples, [\d.]+ examples/s$', counts[-1])
  assert any(l.startswith('evaluated 4 examples in') for l in stream.logs)


def test_seqio_evaluator_agrees_with_stream(stream, seqio_eval):
  assert seqio_eval.info['evaluator'] == 'seqio'
  assert seqio_eval.info['num_examples'] == _NUM_TEST
  _assert_close(seqio_eval.result, stream.result)
  _assert_close(seqio_eval.saved, stream.saved)  # Baseline included.
  # seqio's example indices are the stream's positions.
  for name in metrics_lib.HEATMAP_NAMES:
    got, want = (info['overlays'][name]
                 for info in (seqio_eval.info, stream.info))
    assert [r['index'] for r in got] == [r['index'] for r in want]
    assert [r['cc'] for r in got] == pytest.approx([r['cc'] for r in want])


def test_export_at_512_through_gin(stream, export_512):
  info = export_512.info
  assert (info['checkpoint_kind'], info['step']) == ('export', _STEP)
  assert info['heatmap_resolution'] == [512, 512]
  assert info['head_resolution'] == [16, 16] and info['upsampled']
  assert ("Resolution: 512x512: predictions upsampled bilinearly from the "
          "heatmap head's 16x16; ground truth 512x512 as released") in (
              export_512.report)
  # Same parameters: equal scores and keywords (greedy vs speculative
  # decoding), other heatmap metrics.
  assert any(re.match(r'keyword decoding \(draft_tokens=3\): \d+ tokens of '
                      r'4 examples in \d+ decoder calls', l)
             for l in export_512.logs), export_512.logs
  keys = [k for k in _flat(stream.result) if not k.startswith('heatmaps')]
  _assert_close(export_512.result, stream.result, keys)
  hm, hm16 = (_flat(r['heatmaps']) for r in (export_512.result,
                                              stream.result))
  assert hm['implausibility/mse_all'] != pytest.approx(
      hm16['implausibility/mse_all'])
  for rows in info['overlays'].values():
    for r in rows:
      assert r['cc_refetched'] == pytest.approx(r['cc'], abs=1e-6)


# ----------------------------------------------------------------------------
# Checkpoint paths and arguments.
# ----------------------------------------------------------------------------


def test_resolve_checkpoint_forms(setup):
  ref = eval_lib.resolve_checkpoint(setup.run)
  assert (ref.kind, ref.model_dir, ref.step) == ('training', setup.run, None)
  ref = eval_lib.resolve_checkpoint(setup.run, step=_STEP)
  assert ref.step == _STEP
  step_path = os.path.join(setup.run, 'checkpoints', str(_STEP))
  ref = eval_lib.resolve_checkpoint(step_path)
  assert (ref.kind, ref.model_dir, ref.subdir, ref.step) == (
      'training', setup.run, 'checkpoints', _STEP)
  assert eval_lib.resolve_checkpoint(setup.export).kind == 'export'
  loaded = eval_lib.load_checkpoint(eval_lib.resolve_checkpoint(step_path))
  assert loaded.config == setup.cfg and loaded.step == _STEP


def test_resolve_checkpoint_errors(setup):
  with pytest.raises(ValueError, match='disagrees with the step path'):
    eval_lib.resolve_checkpoint(
        os.path.join(setup.run, 'checkpoints', str(_STEP)), step=_STEP + 1)
  with pytest.raises(ValueError, match='is an export'):
    eval_lib.resolve_checkpoint(setup.export, step=_STEP)
  with pytest.raises(ValueError, match='is not a checkpoint; expected a '
                     'training run directory'):
    eval_lib.resolve_checkpoint(str(setup.tmp))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    eval_lib.resolve_checkpoint(str(setup.tmp / 'nowhere'))
  with pytest.raises(ValueError, match='no checkpoint given'):
    eval_lib.resolve_checkpoint('')


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(evaluator='fast'), r"evaluator='fast'; expected one of"),
    (dict(heatmap_eval_size=0), 'heatmap_eval_size=0; expected None'),
    (dict(draft_tokens=-1), r'draft_tokens=-1; expected >= 0'),
    (dict(split='dev'), r"split='dev'; expected one of"),
    (dict(model_dir='/elsewhere'), 'both CHECKPOINT_PATH=.* and MODEL_DIR'),
    (dict(checkpoint_step=99), 'no checkpoint for step 99'),
    (dict(model_config=test_utils.tiny_config()),
     'another model config.*EVAL_MODEL_CONFIG = None'),
])
def test_bad_arguments_are_named(setup, kwargs, pattern):
  kwargs.setdefault('checkpoint_path', setup.run)
  with pytest.raises((ValueError, FileNotFoundError), match=pattern):
    eval_lib.evaluate(data=setup.data, output_dir=str(setup.tmp / 'bad'),
                      log_fn=lambda s: None, **kwargs)


# ----------------------------------------------------------------------------
# Pieces.
# ----------------------------------------------------------------------------


def test_select_overlay_examples():
  ccs = [(i, c) for i, c in enumerate([0.1, 0.9, -0.2, 0.5, 0.3, 0.7, 0.0])]
  rows = eval_lib.select_overlay_examples(ccs, per_group=2)
  # Sorted by CC: 1 (.9), 5 (.7), 3 (.5), 4 (.3), 0 (.1), 6 (0), 2 (-.2).
  assert [(r['group'], r['rank'], r['index']) for r in rows] == [
      ('best', 1, 1), ('best', 2, 5), ('median', 3, 3), ('median', 4, 4),
      ('worst', 6, 6), ('worst', 7, 2)]
  # Fewer examples than groups: each example once, in its first group.
  rows = eval_lib.select_overlay_examples([(4, 0.2), (9, 0.8)], per_group=1)
  assert [(r['group'], r['index'], r['cc']) for r in rows] == [
      ('best', 9, 0.8), ('worst', 4, 0.2)]
  assert not eval_lib.select_overlay_examples(ccs, per_group=0)
  assert not eval_lib.select_overlay_examples([], per_group=2)


def test_fetch_examples_reads_only_the_needed_batches():
  def batch(start, n):
    ids = np.arange(start, start + n, dtype=np.float32)
    maps = np.broadcast_to(ids[:, None, None], (n, 2, 2)).copy()
    return {'scores': np.zeros((n, 4)), 'image': ids,
            'encoder_input_tokens': ids,
            'implausibility_heatmap': maps, 'misalignment_heatmap': -maps}

  calls = []

  def predictor(image, tokens):
    del tokens
    calls.append(image.tolist())
    maps = np.broadcast_to(image[:, None, None], (len(image), 2, 2)) * 10
    return {'implausibility_heatmap': maps, 'misalignment_heatmap': maps}

  batches = [batch(0, 3), batch(3, 3), batch(6, 2)]
  out = eval_lib.fetch_examples(iter(batches), [4, 1], predictor)
  assert sorted(out) == [1, 4]
  assert calls == [[0, 1, 2], [3, 4, 5]]  # Stops after the last hit.
  assert out[4]['image'] == 4
  assert out[4]['implausibility_heatmap'][0, 0] == 4
  assert out[4]['implausibility_pred'][0, 0] == 40
  with pytest.raises(ValueError, match=r'examples \[9\] are past the end'):
    eval_lib.fetch_examples(iter(batches), [9], predictor)


def test_decode_texts_matches_seqio_vocabulary_decode(setup):
  import seqio  # pylint: disable=g-import-not-at-top
  vocab = seqio.SentencePieceVocabulary(setup.paths['vocab'])
  # Pads before EOS, ids past the vocabulary, no EOS, EOS first.
  rows = np.array([[5, 0, 7, 1, 9, 9], [600, 4, 1, 0, 0, 0],
                   [3, 4, 5, 6, 7, 8], [1, 5, 6, 0, 0, 0]])
  texts = eval_lib.decode_texts(vocab, rows)
  assert texts == [vocab.decode(r.tolist()) for r in rows]
  assert texts[3] == '' and texts[0] == vocab.decode([5, 0, 7])


def test_resize_heatmaps_is_bilinear_and_clipped():
  maps = np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32)
  up = np.asarray(eval_lib.resize_heatmaps(maps, (4, 4)))
  assert up.shape == (1, 4, 4)
  # Half-pixel centres: the columns interpolate 0 -> 1 as 0, .25, .75, 1.
  np.testing.assert_allclose(up[0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
  np.testing.assert_allclose(up[0], up[0, :1].repeat(4, 0), atol=1e-6)
  same = eval_lib.resize_heatmaps(maps, (2, 2))
  np.testing.assert_array_equal(np.asarray(same), maps)


def test_progress_rate_and_eta():
  now = [0.0]
  lines = []
  progress = eval_lib.Progress(lines.append, total=100, every_s=4.0,
                               clock=lambda: now[0])
  now[0] = 20.0  # The first batch compiles.
  progress.update(10)
  now[0] = 22.0  # Not due yet.
  progress.update(10)
  now[0] = 24.0
  progress.update(10)
  now[0] = 65.0
  progress.update(70)
  assert lines == [
      '  10/100 examples (first batch 20.0s, compilation included)',
      # 20 examples in 4 s after the first batch: 5/s, 70 left.
      '  30/100 examples, 5.0 examples/s, ETA 0:00:14',
      '  100/100 examples, 2.0 examples/s',
  ]
  unknown = eval_lib.Progress(lines.append, clock=lambda: now[0],
                              every_s=0.0)
  unknown.update(4)
  now[0] = 67.0
  unknown.update(4)
  assert lines[-1] == '  8 examples, 2.0 examples/s'
  assert eval_lib.format_duration(3725.4) == '1:02:05'
