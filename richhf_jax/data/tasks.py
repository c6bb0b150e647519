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
"""seqio tasks: RichHF-18K (both variants), captioning, pre-training mixture.

`register_tasks(...)` registers `{prefix}_multihead` and `{prefix}_augmented`
with splits train / validation / test, read either from the joined shards
`data_dir/{train,dev,test}.tfrecord-*-of-*` (`richhf_jax.data.join` output,
`source='tfrecord'`) or from the `richhf18k` TFDS dataset (`source='tfds'`,
`data_dir` = the TFDS data dir). Both variants produce the same per-image
features; the augmented one adds `augmented_inputs` [K, L] (one task prompt
per output, `preprocessors.AUGMENTED_INPUTS`), which the model reads as its
`encoder_input_tokens`. Both carry the paper's metrics as seqio metric
functions (`seqio_metrics`; contract in docs/architecture.md).

`register_caption_task(...)` registers an image-caption task (decoder target
= caption, encoder text = the fixed prompt `caption`, zero heatmaps/scores
with zero loss weights) from TFRecords, a TFDS dataset, or the joined
shards' prompts; `register_pretrain_mixture(...)` mixes it with RichHF-18K
as `richhf_pretrain_mixture`.

  names = tasks.register_tasks(data_dir, vocab_path, 64, 16)
  ds = seqio.get_dataset(names['multihead'],
      task_feature_lengths=tasks.task_feature_lengths(32, 32, 64, 16),
      dataset_split='train', shuffle=True, seed=0, batch_size=8,
      feature_converter=tasks.feature_converter())

Tasks are deterministic; shuffling is left to `seqio.get_dataset`. No task
augments its examples: the optional train-time flip / crop
(`preprocessors.augment`) is applied by `pipeline.get_dataset` to the training
stream alone, with seeds from the stream position (resumable), so evaluation
through these tasks never sees it.
"""

import functools
import os
from typing import Callable, Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import seqio  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

# pylint: disable=g-import-not-at-top
from richhf_jax.data import preprocessors as pp
from richhf_jax.data import release
from richhf_jax.data import seqio_metrics
from richhf_jax.models import rahf
# pylint: enable=g-import-not-at-top

SPLIT_FILES = {'train': 'train', 'validation': 'dev', 'test': 'test'}
SHARD_PATTERN = '{split}.tfrecord-?????-of-?????'
SOURCES = ('tfrecord', 'tfds')
TFDS_NAME = 'richhf18k:1.0.0'
PRETRAIN_MIXTURE = 'richhf_pretrain_mixture'
DEFAULT_SHUFFLE_BUFFER = 1000
# Task prompt strings of the augmented variant: 'paper' =
# `release.AUGMENTED_PREFIXES` (`<type> heatmap <prompt>`, ...), 'port' = the
# PyTorch port's `rahf.PORT_AUGMENTED_TASKS` (`<output> HEATMAP: <type>
# </output> <prompt>`, ..., the bare prompt for the keyword slot).
AUGMENTED_PROMPTS = ('paper', 'port')

# Passthrough (non-token) features: name -> (dtype, rank).
MULTIHEAD_PASSTHROUGH = {
    pp.IMAGE: (tf.float32, 3),
    pp.IMPLAUSIBILITY_HEATMAP: (tf.float32, 2),
    pp.MISALIGNMENT_HEATMAP: (tf.float32, 2),
    pp.SCORES: (tf.float32, 1),
    pp.HEATMAP_WEIGHT: (tf.float32, 1),
    pp.SCORE_WEIGHT: (tf.float32, 1),
}
AUGMENTED_PASSTHROUGH = dict(MULTIHEAD_PASSTHROUGH)
AUGMENTED_PASSTHROUGH[pp.AUGMENTED_INPUTS] = (tf.int32, 2)


def passthrough(augmented: bool = False) -> dict[str, tuple[tf.DType, int]]:
  return AUGMENTED_PASSTHROUGH if augmented else MULTIHEAD_PASSTHROUGH


def split_patterns(data_dir: str) -> dict[str, str]:
  """seqio split name -> file pattern of the joined shards."""
  return {split: os.path.join(data_dir, SHARD_PATTERN.format(split=name))
          for split, name in SPLIT_FILES.items()}


def output_features(vocabulary: seqio.Vocabulary,
                    passthrough_features=None) -> dict[str, seqio.Feature]:
  """Token features `inputs`/`targets` (EOS appended) plus passthroughs."""
  if passthrough_features is None:
    passthrough_features = MULTIHEAD_PASSTHROUGH
  feats = {
      'inputs': seqio.Feature(vocabulary, add_eos=True, required=True),
      'targets': seqio.Feature(vocabulary, add_eos=True),
  }
  for name, (dtype, rank) in passthrough_features.items():
    feats[name] = seqio.ContinuousFeature(dtype=dtype, rank=rank)
  return feats


def _add(name: str, task: seqio.Task) -> None:
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add_provider(name, task)


def load_vocab(vocab_path: str) -> seqio.SentencePieceVocabulary:
  """The SentencePiece vocabulary (T5 ids: pad 0, eos 1, unk 2)."""
  if not tf.io.gfile.exists(vocab_path):
    raise FileNotFoundError(f'SentencePiece model {vocab_path} not found')
  return seqio.SentencePieceVocabulary(vocab_path, extra_ids=0)


def richhf_source(data_dir: str, source: str = 'tfrecord',
                  tfds_name: str = TFDS_NAME) -> seqio.DataSource:
  """The RichHF-18K examples: joined TFRecord shards or the TFDS dataset.

  Args:
    data_dir: joined-shard directory (tfrecord) or TFDS data dir (tfds).
    source: 'tfrecord' or 'tfds'.
    tfds_name: `name:version` of the TFDS dataset.

  Returns:
    A seqio data source with splits train / validation / test.

  Raises:
    ValueError: unknown `source`.
    FileNotFoundError: no joined shard / no prepared TFDS dataset there.
  """
  if source == 'tfrecord':
    patterns = split_patterns(data_dir)
    if not tf.io.gfile.glob(patterns['train']) and not tf.io.gfile.glob(
        patterns['test']):
      raise FileNotFoundError(
          f'no joined shards {SHARD_PATTERN.format(split="{train,test}")} in '
          f'{data_dir}; run `python -m richhf_jax.data.join` first')
    return seqio.TFExampleDataSource(patterns, pp.feature_description())
  if source == 'tfds':
    name, _, version = tfds_name.partition(':')
    if not tf.io.gfile.exists(os.path.join(data_dir, name, version)):
      raise FileNotFoundError(
          f'no prepared TFDS dataset {tfds_name} under {data_dir}; build it '
          'with `tfds build richhf_jax/data/richhf18k --manual_dir=... '
          f'--data_dir={data_dir}`')
    return seqio.TfdsDataSource(tfds_name, tfds_data_dir=data_dir,
                                splits=('train', 'validation', 'test'))
  raise ValueError(f'source={source!r}; expected one of {SOURCES}')


def augmented_prefixes(style: str = 'paper') -> list[str]:
  """The K task prefixes of a prompt style, in `pp.AUGMENTED_OUTPUTS` order.

  Args:
    style: one of `AUGMENTED_PROMPTS`.

  Returns:
    One prefix per task ('' = the bare prompt).

  Raises:
    ValueError: unknown style.
  """
  if style == 'paper':
    table = release.AUGMENTED_PREFIXES
  elif style == 'port':
    table = dict(rahf.PORT_AUGMENTED_TASKS)
  else:
    raise ValueError(f'augmented_prompts={style!r}; expected one of '
                     f'{AUGMENTED_PROMPTS}')
  return [table[k] for k in pp.AUGMENTED_OUTPUTS]


def _augmented_step(vocab: seqio.Vocabulary, prefixes: Sequence[str]):
  ids = tuple(tuple(vocab.encode(p)) if p else () for p in prefixes)
  return functools.partial(pp.augmented_inputs, prefix_ids=ids)


def register_tasks(data_dir: str, vocab_path: str, image_size: int,
                   heatmap_size: int, name_prefix: str = 'richhf18k',
                   *, augmented: bool = True, source: str = 'tfrecord',
                   shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER,
                   tfds_name: str = TFDS_NAME,
                   augmented_prompts: str = 'paper') -> dict[str, str]:
  """Registers (or re-registers) the RichHF-18K seqio tasks.

  Args:
    data_dir: directory of the joined shards, or the TFDS data dir.
    vocab_path: SentencePiece model (T5 ids: pad 0, eos 1, unk 2).
    image_size: side S of the `image` feature.
    heatmap_size: side H of the heatmap features.
    name_prefix: task name prefix.
    augmented: also register `{prefix}_augmented`.
    source: 'tfrecord' (joined shards) or 'tfds' (`richhf18k` dataset).
    shuffle_buffer_size: examples in seqio's shuffle buffer.
    tfds_name: the TFDS `name:version` (source 'tfds').
    augmented_prompts: task prompt style of the augmented task, one of
      `AUGMENTED_PROMPTS`.

  Returns:
    {'multihead': name, 'augmented': name (if registered)}.

  Raises:
    FileNotFoundError: if `vocab_path` or the data do not exist.
    ValueError: unknown `augmented_prompts`.
  """
  prefixes = augmented_prefixes(augmented_prompts)
  vocab = load_vocab(vocab_path)
  src = richhf_source(data_dir, source, tfds_name)
  features = functools.partial(pp.rahf_features, image_size=image_size,
                               heatmap_size=heatmap_size)
  common = dict(source=src, metric_fns=list(seqio_metrics.METRIC_FNS),
                postprocess_fn=seqio_metrics.postprocess,
                shuffle_buffer_size=shuffle_buffer_size)
  names = {'multihead': f'{name_prefix}_multihead'}
  _add(names['multihead'], seqio.Task(
      names['multihead'],
      preprocessors=[features, seqio.preprocessors.tokenize,
                     pp.count_truncated,
                     seqio.preprocessors.append_eos_after_trim],
      output_features=output_features(vocab), **common))
  if augmented:
    names['augmented'] = f'{name_prefix}_augmented'
    _add(names['augmented'], seqio.Task(
        names['augmented'],
        preprocessors=[features, seqio.preprocessors.tokenize,
                       pp.count_truncated, _augmented_step(vocab, prefixes),
                       seqio.preprocessors.append_eos_after_trim],
        output_features=output_features(vocab, AUGMENTED_PASSTHROUGH),
        **common))
  return names


# ----------------------------------------------------------------------------
# Captioning pre-training.
# ----------------------------------------------------------------------------


def caption_tfrecord_source(patterns: dict[str, str], image_key: str = 'image',
                            caption_key: str = 'caption'
                            ) -> seqio.DataSource:
  """TFRecords of `tf.train.Example` with encoded image and caption bytes.

  Args:
    patterns: split name -> file pattern.
    image_key: the encoded image field.
    caption_key: the caption field.

  Returns:
    The seqio source.
  """
  desc = {image_key: tf.io.FixedLenFeature([], tf.string, default_value=b''),
          caption_key: tf.io.FixedLenFeature([], tf.string,
                                             default_value=b'')}
  return seqio.TFExampleDataSource(patterns, desc)


def caption_joined_source(data_dir: str) -> seqio.DataSource:
  """The joined RichHF-18K shards' images with their Pick-a-Pic prompts."""
  return caption_tfrecord_source(split_patterns(data_dir), release.IMAGE,
                                 release.PROMPT)


def register_caption_task(name: str, source: seqio.DataSource,
                          vocab_path: str, image_size: int,
                          heatmap_size: int, *, image_key: str = 'image',
                          caption_key: str = 'caption',
                          augmented: bool = False,
                          prompt: str = pp.CAPTION_PROMPT,
                          shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER,
                          source_fn: Optional[Callable] = None) -> str:
  """Registers an image-caption task with the RichHF-18K task's features.

  Args:
    name: the task name.
    source: a seqio source whose examples hold an image (encoded bytes or
      decoded uint8 [h, w, 3]) and a caption string.
    vocab_path: SentencePiece model (the RichHF-18K task's).
    image_size: side of the image (as the RichHF-18K task).
    heatmap_size: side of the zero heatmaps (as the RichHF-18K task).
    image_key: the image field of the source examples.
    caption_key: the caption field.
    augmented: produce the augmented variant's features (every task prompt
      is the caption prompt).
    prompt: the fixed encoder text.
    shuffle_buffer_size: examples in seqio's shuffle buffer.
    source_fn: an optional preprocessor applied first (e.g. picking one of
      COCO's several captions into `caption_key`).

  Returns:
    The task name.
  """
  vocab = load_vocab(vocab_path)
  steps = [source_fn] if source_fn else []
  steps.append(functools.partial(
      pp.caption_features, image_size=image_size, heatmap_size=heatmap_size,
      image_key=image_key, caption_key=caption_key, prompt=prompt))
  steps += [seqio.preprocessors.tokenize, pp.count_truncated]
  if augmented:
    steps.append(_augmented_step(vocab, [''] * pp.NUM_AUGMENTED))
  steps.append(seqio.preprocessors.append_eos_after_trim)
  _add(name, seqio.Task(
      name, source=source, preprocessors=steps,
      output_features=output_features(vocab, passthrough(augmented)),
      metric_fns=[], shuffle_buffer_size=shuffle_buffer_size))
  return name


def register_pretrain_mixture(richhf_task: str, caption_task: str, *,
                              richhf_rate: float = 1.0,
                              caption_rate: float = 1.0,
                              name: str = PRETRAIN_MIXTURE) -> str:
  """Registers the captioning + RichHF-18K pre-training mixture.

  Args:
    richhf_task: a RichHF-18K task name (from `register_tasks`).
    caption_task: a caption task name of the same variant and sizes.
    richhf_rate: relative sampling rate of RichHF-18K examples.
    caption_rate: relative sampling rate of caption examples.
    name: the mixture name.

  Returns:
    The mixture name.

  Raises:
    ValueError: a rate is negative or both are zero.
  """
  if min(richhf_rate, caption_rate) < 0 or not richhf_rate + caption_rate:
    raise ValueError(f'mixture rates must be >= 0 and not both 0, got '
                     f'richhf_rate={richhf_rate}, caption_rate={caption_rate}')
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, [(richhf_task, richhf_rate),
                                   (caption_task, caption_rate)])
  return name


# ----------------------------------------------------------------------------
# Feature conversion.
# ----------------------------------------------------------------------------


def feature_converter(augmented: bool = False
                      ) -> seqio.EncDecFeatureConverter:
  """The encoder-decoder converter, passing the non-token features through."""
  return seqio.EncDecFeatureConverter(
      pack=False,
      passthrough_features={
          name: seqio.FeatureConverter.FeatureSpec(dtype=dtype, rank=rank)
          for name, (dtype, rank) in passthrough(augmented).items()})


def task_feature_lengths(inputs_length: int, targets_length: int,
                         image_size: int, heatmap_size: int,
                         augmented: bool = False) -> dict[str, int]:
  """`task_feature_lengths` for `seqio.get_dataset`.

  seqio needs a length for every passthrough feature (the size of its first
  axis): the image and heatmap sides, 4 scores, 1 per loss weight, and K
  task prompts in the augmented variant.

  Args:
    inputs_length: token length of the prompt (of each augmented prompt).
    targets_length: token length of the marked target.
    image_size: side of the image.
    heatmap_size: side of the heatmaps.
    augmented: lengths for the augmented-prompt task.

  Returns:
    Feature name -> length.
  """
  lengths = {'inputs': inputs_length, 'targets': targets_length,
             pp.IMAGE: image_size, pp.IMPLAUSIBILITY_HEATMAP: heatmap_size,
             pp.MISALIGNMENT_HEATMAP: heatmap_size, pp.SCORES: 4,
             pp.HEATMAP_WEIGHT: 1, pp.SCORE_WEIGHT: 1}
  if augmented:
    lengths[pp.AUGMENTED_INPUTS] = pp.NUM_AUGMENTED
  return lengths


def get_dataset(task_name: str, split: str, *, inputs_length: int,
                targets_length: int, image_size: int, heatmap_size: int,
                batch_size: int, shuffle: bool = False,
                seed: Optional[int] = None, augmented: bool = False):
  """`seqio.get_dataset` with this module's helpers, one epoch, batched.

  The last partial batch is kept (seqio's own batching drops it).
  """
  return seqio.get_dataset(
      task_name,
      task_feature_lengths=task_feature_lengths(
          inputs_length, targets_length, image_size, heatmap_size, augmented),
      dataset_split=split, shuffle=shuffle, seed=seed, batch_size=None,
      feature_converter=feature_converter(augmented), num_epochs=1,
  ).batch(batch_size)
