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
"""Batches for training and evaluation from the seqio tasks.

The image and heatmap resolutions are not data settings: they follow from the
model config (ViT image size, heatmap head output size), so the two cannot
disagree. The task variant (multi-head or augmented prompt) follows from the
model config too; for the augmented variant the batches' `encoder_input_tokens`
are the [B, K, L] task prompts the model expects.

Training streams are deterministic: epoch e is the split's parsed records
shuffled with a seed derived from (`shuffle_seed`, e) before decoding, so a run
resumed at `start_step` rebuilds the same stream by skipping only the raw
records of the current epoch (cheap: skipped records are parsed, not
decoded), never the batches of earlier epochs. Optional train-time
augmentation (`DataConfig.augment`) is applied to the training stream only,
with randomness fixed by (`shuffle_seed`, host, position in the stream), so a
resumed stream is augmented exactly as the uninterrupted one.

`DataConfig.task` picks what the batches teach: 'richhf' (the RichHF-18K
labels) or 'caption' (captioning pre-training over the same joined shards:
each image's prompt, as the clean words the marked target is built from, is
the decoder target, the encoder text is the fixed
`preprocessors.CAPTION_PROMPT`, and the heads get zero loss weight).
"""

import dataclasses
import os
import re
from typing import Any, Iterator, Optional

from absl import logging
import jax
import numpy as np

from richhf_jax.data import preprocessors as pp
from richhf_jax.data import release
from richhf_jax.data import tasks
from richhf_jax.models import rahf

# Epoch seeds: seed * _EPOCH_STRIDE + epoch.
_EPOCH_STRIDE = 1_000_003

# What the batches teach (`DataConfig.task`).
TASKS = ('richhf', 'caption')


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the RichHF-18K data is and how to batch it.

  Attributes:
    data_dir: directory of joined shards (`richhf_jax.data.join` output), or
      the TFDS data dir holding `richhf18k/` when `source='tfds'`.
    vocab_path: SentencePiece model (T5's for real runs).
    input_length: encoder prompt tokens (longer prompts are truncated and
      counted, see `preprocessors.truncation_counts`).
    target_length: decoder tokens (marked prompt + EOS).
    shuffle_seed: seed of the training shuffle.
    name_prefix: prefix of the registered seqio task names.
    source: 'tfrecord' (joined shards) or 'tfds' (the `richhf18k` dataset).
    shuffle_buffer_size: records in the training shuffle buffer.
    cache_decoded: training streams decode the split once and keep the
      decoded examples in memory; later epochs only reshuffle them (same
      order as without the cache). For small data: the cache holds every
      example at model resolution (float32 images).
    augment: train-time augmentation of the training stream (split
      'train' with repeat=True; never evaluation or validation data), one of
      `preprocessors.AUGMENTATIONS`: 'none' (default), 'flip' (horizontal
      flip with probability 1/2), 'crop' (a square crop of 80-100% of the
      side at a random place, resized back), 'flip_crop' (both). The image
      and both heatmaps get the same flip / crop (applied at model and head
      resolution, in fractions of the side, so they stay aligned); prompts,
      targets and scores are unchanged. 'flip' swaps left and right, so it
      contradicts prompts with position words ('a dog on the left of a
      cat'; RichHF-18K prompts have them) and their misalignment labels:
      not a safe default. The randomness depends only on `shuffle_seed`, the
      host and the example's position in the stream (step * host batch +
      index), so resuming at a step reproduces it.
    augmented_prompts: the task prompts of the augmented variant, one of
      `tasks.AUGMENTED_PROMPTS`: 'paper' (`<type> heatmap <prompt>`, ...) or
      'port' (the PyTorch port's `rahf.PORT_AUGMENTED_TASKS`: `<output>
      HEATMAP: <type> </output> <prompt>`, ..., the bare prompt for the
      keyword task), e.g. to fine-tune the port's weights.
    task: one of `TASKS`: 'richhf' (default; the RichHF-18K labels) or
      'caption' (captioning pre-training on the joined shards: target = the
      image's prompt as clean words, encoder text =
      `preprocessors.CAPTION_PROMPT`, zero head loss weights;
      `source='tfrecord'` only).
    mark_loss_weight: weight of the misalignment mark's target tokens (the
      `_0` after a misaligned word; `mark_token_ids`) in the training
      stream's token cross entropy, 1 elsewhere. Few target tokens are
      marks and a greedy decoder marks a word only when the mark is the most
      likely next token, so a model unsure about a misaligned word leaves it
      unmarked; a weight w > 1 moves that decision point from p(mark) = 1/2
      towards 1/(1 + w) during training. 1 (default) is the paper's plain
      cross entropy. Validation and evaluation losses stay unweighted. On
      the demo task, w = 4 raised keyword recall but halved precision
      (docs/performance.md).
  """
  data_dir: str
  vocab_path: str
  input_length: int = 32
  target_length: int = 48
  shuffle_seed: int = 0
  name_prefix: str = 'richhf18k'
  source: str = 'tfrecord'
  shuffle_buffer_size: int = tasks.DEFAULT_SHUFFLE_BUFFER
  cache_decoded: bool = False
  augment: str = 'none'
  augmented_prompts: str = 'paper'
  task: str = 'richhf'
  mark_loss_weight: float = 1.0

  def __post_init__(self):
    if not os.path.isdir(self.data_dir):
      raise FileNotFoundError(
          f'DataConfig.data_dir={self.data_dir!r} is not a directory; expected '
          'the output directory of `python -m richhf_jax.data.join` (or a '
          'TFDS data dir with source="tfds")')
    if not os.path.isfile(self.vocab_path):
      raise FileNotFoundError(
          f'DataConfig.vocab_path={self.vocab_path!r} does not exist; expected '
          'a SentencePiece model file')
    if self.source not in tasks.SOURCES:
      raise ValueError(f'DataConfig.source={self.source!r}; expected one of '
                       f'{tasks.SOURCES}')
    if self.shuffle_buffer_size < 1:
      raise ValueError('DataConfig.shuffle_buffer_size must be >= 1, got '
                       f'{self.shuffle_buffer_size}')
    pp.check_augment(self.augment, 'DataConfig.augment')
    if self.augmented_prompts not in tasks.AUGMENTED_PROMPTS:
      raise ValueError(
          f'DataConfig.augmented_prompts={self.augmented_prompts!r}; expected '
          f'one of {tasks.AUGMENTED_PROMPTS}')
    if self.task not in TASKS:
      raise ValueError(f'DataConfig.task={self.task!r}; expected one of '
                       f'{TASKS}')
    if not self.mark_loss_weight > 0:
      raise ValueError('DataConfig.mark_loss_weight must be > 0, got '
                       f'{self.mark_loss_weight}')
    if self.task == 'caption' and self.source != 'tfrecord':
      raise ValueError(
          f"DataConfig.task='caption' reads the joined shards' images and "
          f"prompts; it needs source='tfrecord', got {self.source!r}")


SPLITS = ('train', 'validation', 'test')


def check_vocab(data: DataConfig, model_config: rahf.RAHFConfig) -> int:
  """Checks that every vocabulary id has a row in the model's embedding.

  An id past the table would be looked up out of bounds, which XLA answers
  with NaN instead of an error.

  Returns:
    The vocabulary size.

  Raises:
    ValueError: the vocabulary is larger than `t5.vocab_size`.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  size = seqio.SentencePieceVocabulary(data.vocab_path).vocab_size
  if size > model_config.t5.vocab_size:
    raise ValueError(
        f'the vocabulary {data.vocab_path} has {size} ids but the model\'s '
        f't5.vocab_size is {model_config.t5.vocab_size}; set t5.vocab_size '
        f'to at least {size} (e.g. rahf_config.t5_overrides)')
  return size


def _augmented(model_config: rahf.RAHFConfig) -> bool:
  if model_config.variant not in rahf.VARIANTS:
    raise ValueError(f'unknown model variant {model_config.variant!r}')
  return model_config.variant == 'augmented'


def task_name(data: DataConfig, model_config: rahf.RAHFConfig) -> str:
  """Registers the tasks for this data/model pair; returns the task name."""
  hm = model_config.heatmap_size
  if hm[0] != hm[1]:
    raise ValueError(f'non-square heatmap size {hm} is not supported')
  augmented = _augmented(model_config)
  if data.task == 'caption':
    return tasks.register_caption_task(
        f'{data.name_prefix}_caption' + ('_augmented' if augmented else ''),
        tasks.caption_tfrecord_source(tasks.split_patterns(data.data_dir),
                                      release.IMAGE, release.CLEAN_PROMPT),
        data.vocab_path, model_config.vit.image_size, hm[0],
        image_key=release.IMAGE, caption_key=release.CLEAN_PROMPT,
        augmented=augmented,
        shuffle_buffer_size=data.shuffle_buffer_size)
  names = tasks.register_tasks(
      data_dir=data.data_dir, vocab_path=data.vocab_path,
      image_size=model_config.vit.image_size, heatmap_size=hm[0],
      name_prefix=data.name_prefix, source=data.source,
      shuffle_buffer_size=data.shuffle_buffer_size,
      augmented_prompts=data.augmented_prompts)
  if (augmented and data.augmented_prompts == 'paper'
      and model_config.encoder_image_tokens == 'cls_and_patches'):
    logging.warning(
        "the model has the PyTorch port's wiring but the data uses the "
        "paper's augmented prompts; set DataConfig.augmented_prompts='port' "
        "to match the port's weights")
  return names['augmented' if augmented else 'multihead']


def feature_lengths(data: DataConfig,
                    model_config: rahf.RAHFConfig) -> dict[str, Any]:
  """The seqio `task_feature_lengths` for this data/model pair."""
  return tasks.task_feature_lengths(
      data.input_length, data.target_length, model_config.vit.image_size,
      model_config.heatmap_size[0], _augmented(model_config))


def mark_token_ids(vocabulary) -> tuple[int, ...]:
  """Ids of the vocabulary pieces that spell the misalignment mark.

  The pieces containing `release.MISALIGNED_SUFFIX` (a vocabulary trained on
  marked targets has `_0` as a piece) and those a marked word adds to the
  unmarked word's encoding (a vocabulary may spell `_0` with several
  pieces, e.g. `_` and `0`), over a few probe words; never pad or EOS.
  """
  suffix = release.MISALIGNED_SUFFIX
  ids = set()
  sp = getattr(vocabulary, 'tokenizer', None)
  if sp is not None:
    ids.update(i for i in range(sp.get_piece_size())
               if suffix in sp.id_to_piece(i))
  for word in ('a', 'red', 'cat', 'left', 'two'):
    ids.update(set(vocabulary.encode(word + suffix)) -
               set(vocabulary.encode(word)))
  ids -= {0, 1}
  if not ids:
    raise ValueError(f'no vocabulary piece spells the mark {suffix!r}')
  return tuple(sorted(ids))


def _weight_marks(ex, ids: tuple[int, ...], weight: float):
  """`decoder_loss_weights` (as float32) times `weight` at mark tokens."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ex = dict(ex)
  targets = ex['decoder_target_tokens']
  is_mark = tf.reduce_any(
      targets[..., None] == tf.constant(ids, targets.dtype), axis=-1)
  w = tf.cast(ex['decoder_loss_weights'], tf.float32)
  ex['decoder_loss_weights'] = tf.where(is_mark, w * weight, w)
  return ex


def _model_batch(ex):
  """Augmented variant: the K task prompts become `encoder_input_tokens`."""
  if pp.AUGMENTED_INPUTS not in ex:
    return ex
  ex = dict(ex)
  ex['encoder_input_tokens'] = ex.pop(pp.AUGMENTED_INPUTS)
  return ex


def _epoch_stream(task, split: str, nproc: int, index: int, seed: int,
                  buffer_size: int, first_epoch: int, offset: int):
  """Parsed records, epoch e shuffled with seed (seed, e), from an offset."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  raw = task.source.get_dataset(split=split, shuffle=False)
  if nproc > 1:
    raw = raw.shard(nproc, index)

  def epoch(e):
    return raw.shuffle(buffer_size, seed=seed * _EPOCH_STRIDE + e,
                       reshuffle_each_iteration=False)

  stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
  return stream.skip(offset)


def _cached_epoch_stream(task, split: str, lengths, nproc: int, index: int,
                         seed: int, buffer_size: int, first_epoch: int,
                         offset: int):
  """`_epoch_stream` over examples decoded once and cached in memory.

  The split is decoded in file order and cached; epoch e shuffles the cached
  examples with the same seed and buffer as `_epoch_stream` shuffles the raw
  records, so both streams hold the same examples in the same order.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  decoded = task.get_dataset(
      lengths, split=split, shuffle=False, num_epochs=1,
      shard_info=seqio.ShardInfo(index=index, num_shards=nproc)
      if nproc > 1 else None, try_in_mem_cache=False).cache()

  def epoch(e):
    return decoded.shuffle(buffer_size, seed=seed * _EPOCH_STRIDE + e,
                           reshuffle_each_iteration=False)

  stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
  return stream.skip(offset)


def _num_records(task, split: str, nproc: int, index: int) -> int:
  """Records of this host's shard of the split (parsed, not decoded)."""
  raw = task.source.get_dataset(split=split, shuffle=False)
  if nproc > 1:
    raw = raw.shard(nproc, index)
  return int(raw.reduce(np.int64(0), lambda n, _: n + 1))


def get_dataset(data: DataConfig, model_config: rahf.RAHFConfig, split: str,
                batch_size: int, *, shuffle: bool, repeat: bool,
                seed: int | None = None, start_step: int = 0):
  """A tf.data of feature-converted batches for this host.

  `data.augment` applies to the training stream only (split 'train' with
  `repeat`).

  Args:
    data: the data config.
    model_config: fixes image and heatmap sizes and the variant.
    split: 'train', 'validation' or 'test'.
    batch_size: GLOBAL batch size; each host gets its share.
    shuffle: shuffle examples (training).
    repeat: repeat forever (training).
    seed: shuffle seed (default: data.shuffle_seed).
    start_step: with `repeat`, start at this step of the deterministic
      stream (resume); batches of earlier epochs are not read at all.

  Returns:
    A tf.data.Dataset of dicts of host-local batches.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  if split not in SPLITS:
    raise ValueError(f'split={split!r}; expected one of {SPLITS}')
  if start_step and not repeat:
    raise ValueError('start_step needs repeat=True (a training stream)')
  nproc, index = jax.process_count(), jax.process_index()
  if batch_size % nproc:
    raise ValueError(f'batch_size={batch_size} is not divisible by the '
                     f'{nproc} hosts')
  host_batch = batch_size // nproc
  name = task_name(data, model_config)
  lengths = feature_lengths(data, model_config)
  converter = tasks.feature_converter(_augmented(model_config))
  seed = data.shuffle_seed if seed is None else seed
  if repeat:
    task = seqio.get_mixture_or_task(name)
    first_epoch, offset = 0, 0
    if start_step:
      n = _num_records(task, split, nproc, index)
      if not n:
        raise ValueError(f'split {split!r} of {data.data_dir} is empty')
      first_epoch, offset = divmod(start_step * host_batch, n)
    buffer = data.shuffle_buffer_size if shuffle else 1

    def stream_fn(split, shuffle_files, seed=None):
      del shuffle_files, seed  # The stream has its own per-epoch seeds.
      return _epoch_stream(task, split, nproc, index, stream_seed, buffer,
                           first_epoch, offset)

    stream_seed = seed
    if data.cache_decoded:
      ds = _cached_epoch_stream(task, split, lengths, nproc, index, seed,
                                buffer, first_epoch, offset)
    else:
      epoch_task = seqio.Task(
          f'{name}_stream', source=seqio.FunctionDataSource(
              stream_fn, splits=[split]),
          preprocessors=task.preprocessors,
          output_features=task.output_features, shuffle_buffer_size=None)
      ds = epoch_task.get_dataset(lengths, split=split, shuffle=False,
                                  num_epochs=1, try_in_mem_cache=False)
    ds = converter(ds, lengths)
    if split == 'train':
      if data.mark_loss_weight != 1.0:
        ids = mark_token_ids(task.output_features['targets'].vocabulary)
        logging.info('training token loss: mark tokens %s weighted %g', ids,
                     data.mark_loss_weight)
        ds = ds.map(lambda ex: _weight_marks(ex, ids, data.mark_loss_weight))
      # Seeds from the host's stream position: example j of step s is at
      # s * host_batch + j whether or not the stream was resumed.
      ds = pp.augment(ds, data.augment, seed, start=start_step * host_batch,
                      salt=index)
  else:
    ds = seqio.get_dataset(
        name, task_feature_lengths=lengths, dataset_split=split,
        shuffle=shuffle, num_epochs=1, feature_converter=converter,
        shard_info=seqio.ShardInfo(index=index, num_shards=nproc)
        if nproc > 1 else None, seed=seed)
  ds = ds.map(_model_batch)
  # Batched here, not by seqio: its batching drops the last partial batch,
  # which would silently leave evaluation examples out.
  return ds.batch(host_batch, drop_remainder=repeat)


def describe_error(error) -> str:
  """The informative part of a tf.data error (our assertion or TF's op)."""
  text = (getattr(error, 'message', None) or str(error)).strip()
  line = text.splitlines()[0] if text else type(error).__name__
  if 'assertion failed:' in line:
    return line[line.index('assertion failed:'):]
  line = line.split('transformation with iterator: ', 1)[-1]
  line = re.sub(r'^\{\{function_node [^}]*\}\}\s*', '', line)
  line = re.sub(r'\s*\[Op:\w+\].*$', '', line)
  return re.sub(r'^Iterator::\S+: ', '', line)


def numpy_batches(ds, start_step: int = 0) -> Iterator[dict[str, Any]]:
  """Iterates numpy batches, skipping the first `start_step` batches.

  Prefer `get_dataset(..., start_step=...)` for resuming a training stream:
  it skips raw records of one epoch instead of decoding every skipped batch.
  Decoding errors are re-raised with the hint to validate the data.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if start_step:
    ds = ds.skip(start_step)
  it = ds.as_numpy_iterator()
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
      raise ValueError(
          f'bad input while reading batches: {describe_error(e)} | run '
          '`python -m richhf_jax.data.validate` on the shards to list every '
          'bad record') from e
    yield {k: np.asarray(v) for k, v in batch.items()}
