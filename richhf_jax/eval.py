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
r"""Evaluates a checkpoint with the paper's metrics and writes a report.

  python -m richhf_jax.eval \
    --gin_file=gin/runs/eval.gin \
    --gin.MODEL_DIR="'/tmp/rahf'" --gin.DATA_DIR="'/data/joined'" \
    --gin.VOCAB_PATH="'/data/spm.model'" --gin.EVAL_OUTPUT_DIR="'/tmp/eval'"

Writes `metrics.json` (scores / heatmaps / keywords, plus the trivial
baseline), `report.md` (paper Tables 1-4 layout), score scatter plots and
heatmap overlays. Heatmap metrics are computed at the heatmap head's output
resolution. The split is streamed in fixed-size batches (the last one padded),
so memory stays bounded on the full test split.
"""

import functools
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import gin
import jax
import numpy as np

from richhf_jax import checkpoints
from richhf_jax import gin_configurables  # pylint: disable=unused-import
from richhf_jax import gin_utils
from richhf_jax import metrics as metrics_lib
from richhf_jax import model as model_lib
from richhf_jax import report
from richhf_jax import trainer as trainer_lib
from richhf_jax.data import pipeline
from richhf_jax.models import rahf
# pylint: enable=g-import-not-at-top

_TARGET_KEYS = ('implausibility_heatmap', 'misalignment_heatmap', 'scores')


def restore_params(model_dir: str, model_config: rahf.RAHFConfig,
                   step: int | None = None):
  """A Trainer holding the restored state, for evaluation."""
  ckpt = checkpoints.Checkpointer(model_dir, async_save=False)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(f'no checkpoint under {ckpt.directory}; train '
                            'first or point MODEL_DIR at a training run')
  raw_meta = ckpt.manager.restore(
      step if step is not None else ckpt.latest_step(),
      args=checkpoints.ocp.args.Composite(
          meta=checkpoints.ocp.args.JsonRestore())).meta
  checkpoints.check_model_config(raw_meta, model_config, ckpt.directory)
  tc = dict(raw_meta.get('train_config') or {})
  train_config = trainer_lib.TrainConfig(**tc) if tc else (
      trainer_lib.TrainConfig())
  data = raw_meta.get('data') or {}
  tr = trainer_lib.Trainer(model_lib.RAHFModel(model_config), train_config,
                           int(data.get('input_length', 32)),
                           int(data.get('target_length', 48)))
  tr.restore_state(ckpt, step)
  ckpt.close()
  return tr


def _pad_batch(batch: dict[str, np.ndarray], size: int):
  n = len(next(iter(batch.values())))
  if n == size:
    return batch, n
  return {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}, n


def _decode_texts(vocab, tokens: np.ndarray) -> list[str]:
  out = []
  for row in tokens:
    ids = [int(t) for t in row]
    if model_lib.EOS_ID in ids:
      ids = ids[:ids.index(model_lib.EOS_ID)]
    out.append(vocab.decode([i for i in ids if i != model_lib.PAD_ID]))
  return out


def train_statistics(data, model_config, batch_size: int,
                     max_examples: int | None = None) -> dict[str, np.ndarray]:
  """Mean heatmaps and mean scores over the training split (baseline)."""
  ds = pipeline.get_dataset(data, model_config, 'train', batch_size,
                            shuffle=False, repeat=False)
  stats = metrics_lib.TrainStatistics()
  n = 0
  for batch in pipeline.numpy_batches(ds):
    stats.add({k: batch[k] for k in _TARGET_KEYS})
    n += len(batch['scores'])
    if max_examples and n >= max_examples:
      break
  return stats.result()


@gin.configurable(module='richhf_jax')
def evaluate(model_dir: str = gin.REQUIRED,
             model_config=gin.REQUIRED,
             data: pipeline.DataConfig = gin.REQUIRED,
             output_dir: str = gin.REQUIRED,
             split: str = 'test',
             batch_size: int = 16,
             checkpoint_step: int | None = None,
             max_decode_length: int | None = None,
             num_overlays: int = 6,
             max_baseline_examples: int | None = None,
             log_fn=trainer_lib.console) -> dict:
  """Evaluates the checkpoint in `model_dir` on `split`; returns metrics."""
  pipeline.check_vocab(data, model_config)
  os.makedirs(output_dir, exist_ok=True)
  tr = restore_params(model_dir, model_config, checkpoint_step)
  params = tr.state.params
  step = int(tr.state.step)
  log_fn(f'evaluating {model_dir} step {step} on {split}')
  import seqio  # pylint: disable=g-import-not-at-top
  vocab = seqio.SentencePieceVocabulary(data.vocab_path)
  max_len = max_decode_length or data.target_length
  model = tr.model
  predict = jax.jit(functools.partial(model.predict_batch,
                                      max_decode_length=max_len))

  stats = train_statistics(data, model_config, batch_size,
                           max_baseline_examples)
  ours = metrics_lib.MetricsAccumulator()
  base = metrics_lib.MetricsAccumulator()
  shown = {'images': [], 'gt': [], 'pred': [], 'names': []}
  all_scores, all_true = [], []
  ds = pipeline.get_dataset(data, model_config, split, batch_size,
                            shuffle=False, repeat=False)
  n_done, t0 = 0, time.time()
  for batch in pipeline.numpy_batches(ds):
    padded, n = _pad_batch(batch, batch_size)
    feats = {k: padded[k] for k in ('image', 'encoder_input_tokens')}
    out = jax.device_get(predict(params, feats))
    pred = {
        'implausibility_heatmap': out['implausibility_heatmap'][:n],
        'misalignment_heatmap': out['misalignment_heatmap'][:n],
        'scores': out['scores'][:n],
        'texts': _decode_texts(vocab, out['decoded'][:n]),
    }
    target = {k: batch[k] for k in _TARGET_KEYS}
    target['texts'] = _decode_texts(vocab, batch['decoder_target_tokens'])
    ours.add(pred, target)
    base.add(metrics_lib.trivial_baseline(target, stats), target)
    all_scores.append(pred['scores'])
    all_true.append(target['scores'])
    for i in range(n):
      if len(shown['names']) < num_overlays:
        shown['images'].append(batch['image'][i])
        shown['gt'].append(batch['implausibility_heatmap'][i])
        shown['pred'].append(pred['implausibility_heatmap'][i])
        shown['names'].append(f'{split}_{n_done + i:04d}')
    n_done += n
    log_fn(f'  {n_done} examples ({n_done / (time.time() - t0):.1f}/s)')
  if not n_done:
    raise ValueError(f'split {split!r} under {data.data_dir} is empty')
  result, baseline = ours.result(), base.result()
  report.write_metrics_json(os.path.join(output_dir, 'metrics.json'), result,
                            baseline)
  notes = (f'Checkpoint `{model_dir}` step {step}, split `{split}` '
           f'({n_done} examples). Heatmap metrics at the head resolution '
           f'{model_config.heatmap_size[0]}x{model_config.heatmap_size[1]}.')
  with open(os.path.join(output_dir, 'report.md'), 'w') as f:
    f.write(report.render_report(result, baseline, notes=notes))
  scores, true = np.concatenate(all_scores), np.concatenate(all_true)
  for i, name in enumerate(rahf.SCORE_TYPES):
    report.save_score_scatter(
        os.path.join(output_dir, f'scatter_{name}.png'), scores[:, i],
        true[:, i], name)
  if shown['names']:
    report.save_overlays(
        os.path.join(output_dir, 'overlays'), np.stack(shown['images']),
        np.stack(shown['gt']), np.stack(shown['pred']), shown['names'])
  log_fn(f'wrote {output_dir}/metrics.json and report.md')
  return result


if __name__ == '__main__':
  gin_utils.run(evaluate)
