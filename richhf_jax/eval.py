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

  python -m richhf_jax.eval --gin_file=gin/runs/eval.gin \
    --gin.CHECKPOINT_PATH="'/tmp/rahf'" --gin.DATA_DIR="'/data/joined'" \
    --gin.VOCAB_PATH="'/data/spm.model'" --gin.EVAL_OUTPUT_DIR="'/tmp/eval'"

`CHECKPOINT_PATH` (or the older `MODEL_DIR`) is a training run directory
(its latest step, or `checkpoint_step`), one step of it
(`<run>/checkpoints/<step>` or `<run>/best/<step>`), or an inference export
(`python -m richhf_jax.export`). The model config saved with the checkpoint
is used; a gin model config, when given, must equal it.

Writes to the output directory:

* `metrics.json`: scores / heatmaps / keywords, plus the trivial baseline.
* `report.md`: the paper's Tables 1-4 with reference rows, the heatmap
  resolution used, and links to the plots.
* `scatter_<score>.png`: predicted vs true score per score type.
* `overlays/<heatmap>.png`: image | ground truth | prediction rows of the
  best, median and worst CC examples (`overlays_per_group` each).
* `eval_info.json`: checkpoint, step, split, example count, resolution,
  evaluator, timings, and the examples shown in the overlays.

Evaluators: `stream` (default) predicts the split in fixed-size batches (the
last one padded) and keeps only per-example scalars, so memory stays bounded
on the full test split; `seqio` runs `seqio.Evaluator` on the registered task
with the tasks' metric functions (`data/seqio_metrics.py`), which holds every
example's targets and predictions in memory. Both give the same numbers.

Heatmap metrics are computed at the heatmap head's output resolution, or with
`heatmap_eval_size=512` at 512x512: predictions are upsampled bilinearly and
the ground truth is read at the release's resolution. The overlays choose
examples from per-example CCs recorded during the pass, then re-read only the
batches holding them from the (deterministic, unshuffled) split.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Iterable, Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import gin
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import checkpoints
from richhf_jax import compile_options
from richhf_jax import export as export_lib
from richhf_jax import gin_configurables  # pylint: disable=unused-import
from richhf_jax import gin_utils
from richhf_jax import metrics as metrics_lib
from richhf_jax import model as model_lib
from richhf_jax import report
from richhf_jax import trainer as trainer_lib
from richhf_jax.data import pipeline
from richhf_jax.data import preprocessors as pp
from richhf_jax.models import rahf
# pylint: enable=g-import-not-at-top

PyTree = Any

EVALUATORS = ('stream', 'seqio')
OVERLAY_GROUPS = ('best', 'median', 'worst')
_TARGET_KEYS = ('implausibility_heatmap', 'misalignment_heatmap', 'scores')
_HEATMAP_KEYS = tuple(f'{n}_heatmap' for n in metrics_lib.HEATMAP_NAMES)
# Checkpoint sub-directories of a training run (`checkpoints.Checkpointer`).
_RUN_SUBDIRS = ('checkpoints', 'best')


# ----------------------------------------------------------------------------
# Checkpoints.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
  """Where the parameters to evaluate are.

  Attributes:
    kind: 'training' (an orbax training run) or 'export'.
    path: the absolute path given.
    model_dir: the training run directory (kind 'training').
    subdir: 'checkpoints' or 'best' (kind 'training').
    step: the step to read; None = the latest (kind 'training').
  """
  kind: str
  path: str
  model_dir: Optional[str] = None
  subdir: str = 'checkpoints'
  step: Optional[int] = None


def resolve_checkpoint(path: str, step: Optional[int] = None
                       ) -> CheckpointRef:
  """Classifies a checkpoint path: run dir, one step of a run, or export.

  Args:
    path: a training run directory (holding `checkpoints/`), a step of it
      (`<run>/checkpoints/<step>` or `<run>/best/<step>`), or an export
      directory (holding `config.json`).
    step: the step to read from a run directory (default: the latest). Must
      agree with a step path and cannot be used with an export.

  Returns:
    The resolved reference.

  Raises:
    FileNotFoundError: the path does not exist.
    ValueError: the path is none of the three forms, or `step` disagrees.
  """
  if not path:
    raise ValueError('no checkpoint given: set CHECKPOINT_PATH (a training '
                     'run directory, <run>/checkpoints/<step>, or an export)')
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise FileNotFoundError(f'CHECKPOINT_PATH {path} does not exist')
  if os.path.isfile(os.path.join(path, export_lib.CONFIG_FILE)):
    if step is not None:
      raise ValueError(f'checkpoint_step={step} was given but {path} is an '
                       'export, which holds one step; leave it unset')
    return CheckpointRef('export', path)
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return CheckpointRef('training', path, path, 'checkpoints', step)
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) in _RUN_SUBDIRS:
    if step is not None and step != int(name):
      raise ValueError(f'checkpoint_step={step} disagrees with the step '
                       f'path {path}; leave checkpoint_step unset')
    return CheckpointRef('training', path, os.path.dirname(parent),
                         os.path.basename(parent), int(name))
  raise ValueError(
      f'CHECKPOINT_PATH {path} is not a checkpoint; expected a training run '
      'directory (holding checkpoints/), one step of a run '
      '(<run>/checkpoints/<step> or <run>/best/<step>), or an export '
      'directory (holding config.json, from `python -m richhf_jax.export`)')


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
  """Parameters to evaluate and what came with them.

  Attributes:
    ref: where they were read.
    config: the model config saved with them.
    params: the parameters (unboxed, on the default device).
    step: the training step, when known.
    vocab_path: the vocabulary the checkpoint names, when known.
  """
  ref: CheckpointRef
  config: rahf.RAHFConfig
  params: PyTree
  step: Optional[int]
  vocab_path: Optional[str]


def load_checkpoint(ref: CheckpointRef) -> LoadedCheckpoint:
  """Reads the parameters (not the optimizer state) and the model config.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) there.
    ValueError: the saved config is invalid or the parameters disagree
      with it.
  """
  if ref.kind == 'export':
    info, params = export_lib.load_export(ref.path)
    return LoadedCheckpoint(ref, info.config, params, info.step,
                            info.vocab_path)
  config, params, meta, step = export_lib.load_training_checkpoint(
      ref.model_dir, ref.step, ref.subdir)
  vocab = (meta.get('data') or {}).get('vocab_path')
  return LoadedCheckpoint(ref, config, params, step, vocab)


def check_config(ckpt: LoadedCheckpoint,
                 model_config: Optional[rahf.RAHFConfig]) -> rahf.RAHFConfig:
  """The config to evaluate with: the checkpoint's, equal to any given one.

  Raises:
    ValueError: `model_config` differs from the checkpoint's (lists the
      differing fields).
  """
  if model_config is None:
    return ckpt.config
  meta = {'model_config': export_lib.config_to_json(ckpt.config)}
  try:
    checkpoints.check_model_config(meta, model_config, ckpt.ref.path)
  except ValueError as e:
    hint = ('Add the gin/models/ file the checkpoint was trained with, or set '
            "EVAL_MODEL_CONFIG = None to use the checkpoint's own config")
    raise ValueError(f'{e}. {hint}') from e
  return model_config


def _same_file(a: str, b: str) -> bool:
  with open(a, 'rb') as fa, open(b, 'rb') as fb:
    return fa.read() == fb.read()


# ----------------------------------------------------------------------------
# Prediction.
# ----------------------------------------------------------------------------


def data_model_config(model_config: rahf.RAHFConfig,
                      heatmap_eval_size: Optional[int]) -> rahf.RAHFConfig:
  """The config the eval data is built from (heatmap size = eval size).

  The data pipeline resizes the ground truth to the config's heatmap size;
  this copy only changes that size. It is never used to build the model.
  """
  if heatmap_eval_size is None:
    return model_config
  head = dataclasses.replace(model_config.heatmap_head,
                             output_size=(heatmap_eval_size,
                                          heatmap_eval_size))
  return dataclasses.replace(model_config, heatmap_head=head)


@functools.lru_cache(maxsize=None)
def _jitted_predict(config: rahf.RAHFConfig, max_decode_length: int,
                    draft_tokens: int = 0):
  """One jitted `predict_batch` per (config, length, draft), shared.

  Compiled with the backend's default options (`compile_options.defaults`).
  """
  model = model_lib.RAHFModel(config)
  return jax.jit(functools.partial(model.predict_batch,
                                   max_decode_length=max_decode_length,
                                   draft_tokens=draft_tokens),
                 compiler_options=compile_options.defaults() or None)


@functools.lru_cache(maxsize=None)
def _jitted_resize(size: tuple[int, int]):
  def resize(maps):
    out = jax.image.resize(maps, maps.shape[:1] + size, method='bilinear')
    return jnp.clip(out, 0.0, 1.0)
  return jax.jit(resize)


def resize_heatmaps(maps, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize of [B, h, w] maps to [B, H, W], clipped to [0, 1]."""
  size = tuple(int(s) for s in size)
  if tuple(maps.shape[1:]) == size:
    return jnp.asarray(maps)
  return _jitted_resize(size)(maps)


class BatchPredictor:
  """Predicts padded fixed-size batches (one compiled program) on numpy.

  Attributes:
    config: the model config.
    batch_size: every call is padded to this many examples.
    heatmap_size: (H, W) of the returned heatmaps.
    max_decode_length: decoded token length.
    draft_tokens: K > 0 = speculative greedy decoding verifying K
      prompt-copied tokens per decoder call (same output).
    decoded_tokens, decoder_calls: running totals of the real examples'
      decoded tokens (EOS included) and of the decoder calls (with
      draft_tokens > 0), for a tokens-per-call figure.
    weight_major_steps: decoding steps multiply transposed kernel copies
      (`model.make_step_kernels`; None = on CPU).
  """

  def __init__(self, config: rahf.RAHFConfig, params: PyTree,
               batch_size: int, max_decode_length: int,
               heatmap_size: Optional[tuple[int, int]] = None,
               draft_tokens: int = 0,
               weight_major_steps: Optional[bool] = None):
    if draft_tokens < 0:
      raise ValueError(f'draft_tokens={draft_tokens}; expected >= 0')
    self.config = config
    self.batch_size = batch_size
    self.max_decode_length = max_decode_length
    self.heatmap_size = tuple(heatmap_size or config.heatmap_size)
    self.draft_tokens = draft_tokens
    self.decoded_tokens = 0
    self.decoder_calls = 0
    self._params = params
    self._predict = _jitted_predict(config, max_decode_length, draft_tokens)
    self._step_kernels = model_lib.make_step_kernels(
        model_lib.RAHFModel(config), params, weight_major_steps)

  def __call__(self, image: np.ndarray,
               tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Heatmaps, scores and decoded tokens of n <= batch_size examples.

    Args:
      image: [n, S, S, 3] in [-1, 1].
      tokens: [n, L] prompt tokens ([n, K, L] for the augmented variant).

    Returns:
      numpy `implausibility_heatmap`, `misalignment_heatmap` [n, H, W] at
      `heatmap_size`, `scores` [n, 4], `decoded` [n, T] int32.
    """
    n = len(image)
    if not 0 < n <= self.batch_size or len(tokens) != n:
      raise ValueError(f'BatchPredictor: got {n} images and {len(tokens)} '
                       f'prompts; expected 1..{self.batch_size} of each')
    batch = {'image': image, 'encoder_input_tokens': tokens}
    if n < self.batch_size:
      batch = {k: np.concatenate(
          [v, np.zeros((self.batch_size - n,) + v.shape[1:], v.dtype)])
               for k, v in batch.items()}
    out = self._predict(self._params, batch,
                        step_kernels=self._step_kernels)
    for key in _HEATMAP_KEYS:
      out[key] = resize_heatmaps(out[key], self.heatmap_size)
    out = jax.device_get(out)
    result = {k: np.asarray(out[k])[:n]
              for k in _HEATMAP_KEYS + ('scores', 'decoded')}
    if self.draft_tokens:
      self.decoder_calls += int(out['decoder_calls'])
      self.decoded_tokens += int(np.sum(
          model_lib.decoded_lengths(result['decoded'])))
    return result


def decode_texts(vocab, tokens: np.ndarray) -> list[str]:
  """Token rows -> text up to the first EOS, as seqio's vocabulary does."""
  out = []
  for row in tokens:
    ids = [int(t) for t in row]
    if model_lib.EOS_ID in ids:
      ids = ids[:ids.index(model_lib.EOS_ID)]
    out.append(vocab.decode(ids))
  return out


# ----------------------------------------------------------------------------
# Progress and per-example records.
# ----------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
  seconds = int(round(max(seconds, 0.0)))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h:d}:{m:02d}:{s:02d}'


class Progress:
  """Logs examples done, examples/s and the ETA at most every `every_s`.

  The rate leaves out the first batch (it includes compilation). The ETA is
  shown when the total is known. Constructor arguments: `log_fn`, `total`,
  `every_s`, `what` (the unit in the lines), `first_note` (appended to the
  first line), `clock` (the time source; tests pass a fake one).

  Attributes:
    done: examples counted so far.
    total: the expected number of examples, or None.
    log_fn: receives the lines.
  """

  def __init__(self, log_fn: Callable[[str], None],
               total: Optional[int] = None, every_s: float = 10.0,
               what: str = 'examples',
               first_note: str = 'compilation included',
               clock: Callable[[], float] = time.monotonic):
    self.done = 0
    self.total = total
    self.log_fn = log_fn
    self._every_s = every_s
    self._what = what
    self._first_note = first_note
    self._clock = clock
    self._start = clock()
    self._first = None  # (time, done) after the first batch.
    self._last_log = None

  def _count(self) -> str:
    if self.total:
      return f'{self.done}/{self.total} {self._what}'
    return f'{self.done} {self._what}'

  def rate(self) -> Optional[float]:
    """Examples per second after the first batch (None before two)."""
    if self._first is None:
      return None
    t0, n0 = self._first
    dt = self._clock() - t0
    return (self.done - n0) / dt if dt > 0 and self.done > n0 else None

  def update(self, n: int) -> None:
    """Counts `n` more examples; logs when due (and at the total)."""
    self.done += n
    now = self._clock()
    if self._first is None:
      self._first = (now, self.done)
      self._last_log = now
      note = f', {self._first_note}' if self._first_note else ''
      self.log_fn(f'  {self._count()} (first batch '
                  f'{now - self._start:.1f}s{note})')
      return
    finished = self.total is not None and self.done >= self.total
    if now - self._last_log >= self._every_s or finished:
      self._last_log = now
      line = f'  {self._count()}'
      rate = self.rate()
      if rate:
        line += f', {rate:.1f} {self._what}/s'
        if self.total and not finished:
          line += f', ETA {format_duration((self.total - self.done) / rate)}'
      self.log_fn(line)

  def elapsed(self) -> float:
    return self._clock() - self._start


class _Records:
  """What both evaluators keep per example: scalars only.

  The trivial baseline's metrics (streamed), the scores for the scatter
  plots, and per heatmap type the CC of each example with GT > 0.
  """

  def __init__(self, stats: dict[str, np.ndarray], progress: Progress):
    self.baseline = metrics_lib.MetricsAccumulator()
    self.stats = stats
    self.progress = progress
    self.pred_scores = []
    self.true_scores = []
    self.ccs = {name: [] for name in metrics_lib.HEATMAP_NAMES}

  def add(self, indices: Sequence[int], pred: dict[str, Any],
          target: dict[str, Any]) -> None:
    self.baseline.add(metrics_lib.trivial_baseline(target, self.stats),
                      target)
    self.pred_scores.append(np.asarray(pred['scores'], np.float64))
    self.true_scores.append(np.asarray(target['scores'], np.float64))
    for name, key in zip(metrics_lib.HEATMAP_NAMES, _HEATMAP_KEYS):
      for i, index in enumerate(indices):
        gt = target[key][i]
        if np.any(gt > 0):
          self.ccs[name].append(
              (int(index), metrics_lib.heatmap_cc(pred[key][i], gt)))
    self.progress.update(len(indices))


def select_overlay_examples(ccs: Sequence[tuple[int, float]],
                            per_group: int) -> list[dict[str, Any]]:
  """The best, median and worst CC examples, each example once.

  Args:
    ccs: (example index, CC) pairs.
    per_group: examples per group.

  Returns:
    [{'group', 'rank' (1 = highest CC), 'index', 'cc'}] in rank order;
    groups overlap on fewer than 3 * per_group examples and each example
    then keeps its first group (best, median, worst).
  """
  order = sorted(ccs, key=lambda x: (-x[1], x[0]))
  n = len(order)
  k = min(max(per_group, 0), n)
  if not k:
    return []
  starts = {'best': 0, 'median': (n - k) // 2, 'worst': n - k}
  chosen = {}
  for group in OVERLAY_GROUPS:
    for rank in range(starts[group], starts[group] + k):
      if rank not in chosen:
        index, cc = order[rank]
        chosen[rank] = {'group': group, 'rank': rank + 1,
                        'index': int(index), 'cc': float(cc)}
  return [chosen[r] for r in sorted(chosen)]


def fetch_examples(batches: Iterable[dict[str, np.ndarray]],
                   indices: Iterable[int],
                   predictor: BatchPredictor) -> dict[int, dict[str, Any]]:
  """Re-reads and re-predicts only the batches holding `indices`.

  Args:
    batches: the split's batches in the order of the first pass.
    indices: example indices (positions in that order).
    predictor: the first pass's predictor.

  Returns:
    index -> {'image', '<type>_heatmap' (ground truth), '<type>_pred'}.

  Raises:
    ValueError: an index is past the end of the split.
  """
  wanted = set(int(i) for i in indices)
  out, offset = {}, 0
  for batch in batches:
    n = len(batch['scores'])
    hits = [i for i in range(offset, offset + n) if i in wanted]
    if hits:
      pred = predictor(batch['image'], batch['encoder_input_tokens'])
      for i in hits:
        j = i - offset
        ex = {'image': batch['image'][j]}
        for key in _HEATMAP_KEYS:
          ex[key] = batch[key][j]
          ex[key.replace('_heatmap', '_pred')] = pred[key][j]
        out[i] = ex
    offset += n
    if len(out) == len(wanted):
      break
  missing = sorted(wanted - set(out))
  if missing:
    raise ValueError(f'examples {missing} are past the end of the split '
                     f'({offset} examples)')
  return out


# ----------------------------------------------------------------------------
# The two evaluators.
# ----------------------------------------------------------------------------


def _targets(vocab, feats: dict[str, np.ndarray]) -> dict[str, Any]:
  target = {k: feats[k] for k in _TARGET_KEYS}
  target['texts'] = decode_texts(vocab, feats['decoder_target_tokens'])
  return target


def _predictions(vocab, out: dict[str, np.ndarray]) -> dict[str, Any]:
  pred = {k: out[k] for k in _TARGET_KEYS}
  pred['texts'] = decode_texts(vocab, out['decoded'])
  return pred


def _run_stream(batches, predictor, vocab, records: _Records) -> dict:
  """The bounded-memory evaluator: MetricsAccumulator over the batches."""
  ours = metrics_lib.MetricsAccumulator()
  index = 0
  for batch in batches:
    n = len(batch['scores'])
    out = predictor(batch['image'], batch['encoder_input_tokens'])
    pred, target = _predictions(vocab, out), _targets(vocab, batch)
    ours.add(pred, target)
    records.add(range(index, index + n), pred, target)
    index += n
  if not index:
    raise ValueError('the evaluation split is empty')
  return ours.result()


def _run_seqio(data: pipeline.DataConfig, data_config: rahf.RAHFConfig,
               split: str, predictor: BatchPredictor, vocab,
               records: _Records, step: Optional[int]) -> dict:
  """seqio.Evaluator on the registered task with its metric functions."""
  # pylint: disable=g-import-not-at-top
  import seqio
  from richhf_jax.data import seqio_metrics
  from richhf_jax.data import tasks
  # pylint: enable=g-import-not-at-top
  name = pipeline.task_name(data, data_config)
  augmented = data_config.variant == 'augmented'
  records.progress.log_fn(f'seqio.Evaluator: reading the targets of {name} '
                          f'{split}')
  evaluator = seqio.Evaluator(
      name, feature_converter=tasks.feature_converter(augmented),
      eval_split=split,
      sequence_length=pipeline.feature_lengths(data, data_config),
      use_memory_cache=False, logger_cls=(), async_compute_metrics=False)
  tokens_key = pp.AUGMENTED_INPUTS if augmented else 'encoder_input_tokens'

  def predict_with_aux(ds):
    size = int(ds.cardinality())
    if size >= 0 and records.progress.total is None:
      records.progress.total = size
    outputs, aux = [], {k: [] for k in seqio_metrics.AUX_KEYS}
    for indices, feats in ds.batch(predictor.batch_size).as_numpy_iterator():
      out = predictor(feats['image'], feats[tokens_key])
      records.add(indices.tolist(), _predictions(vocab, out),
                  _targets(vocab, feats))
      for i, index in enumerate(indices):
        outputs.append((int(index), out['decoded'][i]))
        for key in seqio_metrics.AUX_KEYS:
          aux[key].append(out[key][i])
    return outputs, aux

  future, _ = evaluator.evaluate(compute_metrics=True, step=step,
                                 predict_with_aux_fn=predict_with_aux)
  result = future.result() or {}
  if name not in result:
    raise ValueError(f'seqio.Evaluator returned no metrics for task {name} '
                     f'split {split!r} (is the split empty?)')
  return seqio_metrics.nested(result[name])


def train_statistics(data, model_config, batch_size: int,
                     max_examples: int | None = None,
                     progress: Optional[Progress] = None
                     ) -> dict[str, np.ndarray]:
  """Mean heatmaps and mean scores over the training split (baseline)."""
  ds = pipeline.get_dataset(data, model_config, 'train', batch_size,
                            shuffle=False, repeat=False)
  stats = metrics_lib.TrainStatistics()
  n = 0
  for batch in pipeline.numpy_batches(ds):
    stats.add({k: batch[k] for k in _TARGET_KEYS})
    n += len(batch['scores'])
    if progress is not None:
      progress.update(len(batch['scores']))
    if max_examples and n >= max_examples:
      break
  return stats.result()


def split_size(data: pipeline.DataConfig, data_config: rahf.RAHFConfig,
               split: str) -> Optional[int]:
  """Examples in the split (records parsed, not decoded); None: unknown."""
  if jax.process_count() > 1:
    return None  # Each host reads its own shard.
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(pipeline.task_name(data, data_config))
  n = task.source.num_input_examples(split)
  if n is None:
    raw = task.source.get_dataset(split=split, shuffle=False)
    n = raw.reduce(np.int64(0), lambda count, _: count + 1)
  return int(n)


def _save_scatters(output_dir: str,
                   records: _Records) -> list[tuple[str, str]]:
  """scatter_<score>.png per score type; returns (caption, file) pairs."""
  figures = []
  scores = np.concatenate(records.pred_scores)
  true = np.concatenate(records.true_scores)
  for i, name in enumerate(rahf.SCORE_TYPES):
    file = f'scatter_{name}.png'
    report.save_score_scatter(os.path.join(output_dir, file), scores[:, i],
                              true[:, i], name)
    figures.append((f'{name} score: predicted vs true', file))
  return figures


def _save_overlays(output_dir: str, chosen: dict[str, list[dict[str, Any]]],
                   fetched: dict[int, dict[str, Any]], records: _Records,
                   split: str, size: tuple[int, int],
                   log_fn) -> list[tuple[str, str]]:
  """overlays/<heatmap>.png grids; adds `cc_refetched` to `chosen` rows."""
  figures = []
  for name, rows in chosen.items():
    key = f'{name}_heatmap'
    if not rows:
      log_fn(f'no {name} overlays: no example has a ground truth > 0')
      continue
    exs = [fetched[c['index']] for c in rows]
    for c, ex in zip(rows, exs):
      c['cc_refetched'] = metrics_lib.heatmap_cc(ex[f'{name}_pred'], ex[key])
    file = os.path.join('overlays', f'{name}.png')
    report.save_overlay_grid(
        os.path.join(output_dir, file),
        np.stack([ex['image'] for ex in exs]),
        np.stack([ex[key] for ex in exs]),
        np.stack([ex[f'{name}_pred'] for ex in exs]),
        [f"{c['group']} (rank {c['rank']}/{len(records.ccs[name])}): "
         f"{split} #{c['index']}, CC {c['cc']:.3f}" for c in rows],
        title=f'{name} heatmap, {size[0]}x{size[1]}')
    figures.append((f'{name} heatmap: best, median and worst CC examples '
                    '(image | ground truth | prediction)', file))
  return figures


def _resolution_text(config: rahf.RAHFConfig, size: tuple[int, int]) -> str:
  head = config.heatmap_size
  gt = (f'ground truth {size[0]}x{size[1]}'
        + (' as released' if size == (512, 512) else
           ' (resized from the release\'s 512x512 by the data pipeline)'))
  if size == tuple(head):
    return (f'{size[0]}x{size[1]}, the heatmap head\'s output resolution; '
            f'{gt}.')
  return (f'{size[0]}x{size[1]}: predictions upsampled bilinearly from the '
          f'heatmap head\'s {head[0]}x{head[1]}; {gt}.')


# ----------------------------------------------------------------------------
# Entry point.
# ----------------------------------------------------------------------------


@gin.configurable(module='richhf_jax')
def evaluate(checkpoint_path: Optional[str] = None,
             model_config: Optional[rahf.RAHFConfig] = None,
             data: pipeline.DataConfig = gin.REQUIRED,
             output_dir: str = gin.REQUIRED,
             split: str = 'test',
             batch_size: int = 16,
             checkpoint_step: Optional[int] = None,
             max_decode_length: Optional[int] = None,
             heatmap_eval_size: Optional[int] = None,
             evaluator: str = 'stream',
             overlays_per_group: int = 2,
             max_baseline_examples: Optional[int] = None,
             draft_tokens: int = 0,
             progress_every_s: float = 10.0,
             model_dir: Optional[str] = None,
             log_fn=trainer_lib.console) -> dict:
  """Evaluates a checkpoint on `split`; writes the report; returns metrics.

  Args:
    checkpoint_path: a training run directory, one step of it
      (`<run>/checkpoints/<step>`), or an export directory.
    model_config: when given, must equal the checkpoint's saved config.
    data: where the data and vocabulary are; sequence lengths.
    output_dir: where the outputs go (module docstring).
    split: 'test', 'validation' or 'train'.
    batch_size: examples per predicted batch.
    checkpoint_step: the step of a run directory (default: the latest).
    max_decode_length: decoded tokens (default: data.target_length).
    heatmap_eval_size: None = heatmap metrics at the head's resolution; an
      int S = at S x S (predictions upsampled, e.g. 512 like the release).
    evaluator: 'stream' (bounded memory) or 'seqio' (`seqio.Evaluator`).
    overlays_per_group: examples per best / median / worst overlay group.
    max_baseline_examples: cap on the training examples averaged for the
      trivial baseline (default: the whole training split).
    draft_tokens: K > 0 decodes keywords speculatively, verifying K tokens
      copied from the prompt per decoder call (the same text as greedy
      decoding up to float rounding; fewer, larger decoder calls).
    progress_every_s: seconds between progress lines.
    model_dir: the older name of `checkpoint_path` (a training run).
    log_fn: receives the progress lines.

  Returns:
    The `metrics.evaluate` dict.

  Raises:
    ValueError: a bad argument, checkpoint or split (the message names it).
    FileNotFoundError: the checkpoint or data does not exist.
  """
  if evaluator not in EVALUATORS:
    raise ValueError(f'evaluator={evaluator!r}; expected one of {EVALUATORS}')
  if heatmap_eval_size is not None and (
      isinstance(heatmap_eval_size, bool)
      or not isinstance(heatmap_eval_size, int) or heatmap_eval_size < 1):
    raise ValueError(f'heatmap_eval_size={heatmap_eval_size!r}; expected '
                     'None (the head resolution) or a positive int such as '
                     '512')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}; expected >= 1')
  if split not in pipeline.SPLITS:
    raise ValueError(f'split={split!r}; expected one of {pipeline.SPLITS}')
  if checkpoint_path and model_dir and (
      os.path.abspath(checkpoint_path) != os.path.abspath(model_dir)):
    raise ValueError(f'both CHECKPOINT_PATH={checkpoint_path!r} and '
                     f'MODEL_DIR={model_dir!r} are set; give one')
  t_start = time.monotonic()
  ref = resolve_checkpoint(checkpoint_path or model_dir, checkpoint_step)
  ckpt = load_checkpoint(ref)
  config = check_config(ckpt, model_config)
  pipeline.check_vocab(data, config)
  if (ckpt.vocab_path and os.path.isfile(ckpt.vocab_path)
      and not _same_file(ckpt.vocab_path, data.vocab_path)):
    log_fn(f'WARNING: evaluating with the vocabulary {data.vocab_path}, but '
           f'the checkpoint was trained with {ckpt.vocab_path} (different '
           'files): decoded keywords will be wrong')
  os.makedirs(output_dir, exist_ok=True)
  data_config = data_model_config(config, heatmap_eval_size)
  eval_size = tuple(data_config.heatmap_size)
  resolution = _resolution_text(config, eval_size)
  log_fn(f'evaluating {ref.path} ({ref.kind}, step {ckpt.step}) on {split} '
         f'with the {evaluator} evaluator; heatmaps at {eval_size[0]}x'
         f'{eval_size[1]}')
  import seqio  # pylint: disable=g-import-not-at-top
  vocab = seqio.SentencePieceVocabulary(data.vocab_path)
  predictor = BatchPredictor(config, ckpt.params, batch_size,
                             max_decode_length or data.target_length,
                             eval_size, draft_tokens=draft_tokens)

  def batches():
    ds = pipeline.get_dataset(data, data_config, split, batch_size,
                              shuffle=False, repeat=False)
    return pipeline.numpy_batches(ds)

  log_fn('trivial baseline: averaging the training targets')
  train_total = split_size(data, data_config, 'train')
  if max_baseline_examples and train_total:
    train_total = min(train_total, max_baseline_examples)
  train_progress = Progress(log_fn, train_total, progress_every_s,
                            'training examples', first_note='')
  stats = train_statistics(data, data_config, batch_size,
                           max_baseline_examples, train_progress)
  log_fn(f'trivial baseline: {train_progress.done} training examples in '
         f'{train_progress.elapsed():.1f}s')
  total = split_size(data, data_config, split) if evaluator == 'stream' else (
      None)
  progress = Progress(log_fn, total, progress_every_s)
  records = _Records(stats, progress)
  if evaluator == 'stream':
    result = _run_stream(batches(), predictor, vocab, records)
  else:
    result = _run_seqio(data, data_config, split, predictor, vocab, records,
                        ckpt.step)
  n_done = progress.done
  if not n_done:
    raise ValueError(f'split {split!r} under {data.data_dir} is empty')
  eval_seconds = progress.elapsed()
  log_fn(f'evaluated {n_done} examples in {eval_seconds:.1f}s')
  if predictor.decoder_calls:
    log_fn(f'keyword decoding (draft_tokens={draft_tokens}): '
           f'{predictor.decoded_tokens} tokens of {n_done} examples in '
           f'{predictor.decoder_calls} decoder calls of batch {batch_size}')
  baseline = records.baseline.result()
  report.write_metrics_json(os.path.join(output_dir, 'metrics.json'), result,
                            baseline)

  figures = _save_scatters(output_dir, records)
  chosen = {name: select_overlay_examples(records.ccs[name],
                                          overlays_per_group)
            for name in metrics_lib.HEATMAP_NAMES}
  wanted = {c['index'] for rows in chosen.values() for c in rows}
  if wanted:
    fetched = fetch_examples(batches(), sorted(wanted), predictor)
    figures += _save_overlays(output_dir, chosen, fetched, records, split,
                              eval_size, log_fn)

  notes = (f'Checkpoint `{ref.path}` ({ref.kind}, step {ckpt.step}), split '
           f'`{split}` ({n_done} examples), {evaluator} evaluator, heatmap '
           f'metrics at {eval_size[0]}x{eval_size[1]} (see Tables 2-3).')
  with open(os.path.join(output_dir, 'report.md'), 'w') as f:
    f.write(report.render_report(result, baseline, notes=notes,
                                 heatmap_resolution=resolution,
                                 figures=figures))
  info = {
      'checkpoint': ref.path, 'checkpoint_kind': ref.kind,
      'step': ckpt.step, 'split': split, 'num_examples': n_done,
      'evaluator': evaluator, 'heatmap_resolution': list(eval_size),
      'head_resolution': list(config.heatmap_size),
      'upsampled': eval_size != tuple(config.heatmap_size),
      'eval_seconds': eval_seconds,
      'examples_per_second': n_done / max(eval_seconds, 1e-9),
      'total_seconds': time.monotonic() - t_start,
      'overlays': chosen,
  }
  with open(os.path.join(output_dir, 'eval_info.json'), 'w') as f:
    json.dump(info, f, indent=1)
  log_fn(f'wrote {output_dir}/metrics.json, report.md and plots')
  return result


if __name__ == '__main__':
  gin_utils.run(evaluate)
