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
"""seqio tasks over the joined RichHF-18K shards.

`register_tasks(...)` registers `{prefix}_multihead` (and
`{prefix}_augmented`, the augmented-prompt variant) with splits train /
validation / test read from `data_dir/{train,dev,test}.tfrecord-*-of-*`
(the output of `richhf_jax.data.join`). Use them with `feature_converter()`
and `task_feature_lengths(...)`:

  names = tasks.register_tasks(data_dir, vocab_path, 64, 16)
  ds = seqio.get_dataset(names['multihead'],
      task_feature_lengths=tasks.task_feature_lengths(32, 32, 64, 16),
      dataset_split='train', shuffle=True, seed=0, batch_size=8,
      feature_converter=tasks.feature_converter())

Tasks are deterministic; shuffling is left to `seqio.get_dataset`.
"""

import functools
import os
from typing import Optional

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import seqio  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

# pylint: disable-next=g-import-not-at-top
from richhf_jax.data import preprocessors as pp

SPLIT_FILES = {'train': 'train', 'validation': 'dev', 'test': 'test'}
SHARD_PATTERN = '{split}.tfrecord-?????-of-?????'

# Passthrough (non-token) features of each task: name -> (dtype, rank).
MULTIHEAD_PASSTHROUGH = {
    pp.IMAGE: (tf.float32, 3),
    pp.IMPLAUSIBILITY_HEATMAP: (tf.float32, 2),
    pp.MISALIGNMENT_HEATMAP: (tf.float32, 2),
    pp.SCORES: (tf.float32, 1),
}
AUGMENTED_PASSTHROUGH = {
    pp.IMAGE: (tf.float32, 3),
    pp.HEATMAP: (tf.float32, 2),
    pp.SCORE: (tf.float32, 1),
    pp.OUTPUT_ID: (tf.int32, 1),
}


def split_patterns(data_dir: str) -> dict[str, str]:
  """seqio split name -> file pattern of the joined shards."""
  return {split: os.path.join(data_dir, SHARD_PATTERN.format(split=name))
          for split, name in SPLIT_FILES.items()}


def output_features(vocabulary: seqio.Vocabulary,
                    passthrough=None) -> dict[str, seqio.Feature]:
  """Token features `inputs`/`targets` (EOS appended) plus passthroughs."""
  passthrough = MULTIHEAD_PASSTHROUGH if passthrough is None else passthrough
  feats = {
      'inputs': seqio.Feature(vocabulary, add_eos=True, required=True),
      'targets': seqio.Feature(vocabulary, add_eos=True),
  }
  for name, (dtype, rank) in passthrough.items():
    feats[name] = seqio.ContinuousFeature(dtype=dtype, rank=rank)
  return feats


def _add(name: str, task: seqio.Task) -> None:
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add_provider(name, task)


def register_tasks(data_dir: str, vocab_path: str, image_size: int,
                   heatmap_size: int, name_prefix: str = 'richhf18k',
                   *, augmented: bool = True) -> dict[str, str]:
  """Registers (or re-registers) the RichHF-18K seqio tasks.

  Args:
    data_dir: directory of the joined shards.
    vocab_path: SentencePiece model (T5 ids: pad 0, eos 1, unk 2).
    image_size: side S of the `image` feature.
    heatmap_size: side H of the heatmap features.
    name_prefix: task name prefix.
    augmented: also register `{prefix}_augmented`.

  Returns:
    {'multihead': name, 'augmented': name (if registered)}.

  Raises:
    FileNotFoundError: if `vocab_path` does not exist.
  """
  if not tf.io.gfile.exists(vocab_path):
    raise FileNotFoundError(f'SentencePiece model {vocab_path} not found')
  vocab = seqio.SentencePieceVocabulary(vocab_path, extra_ids=0)
  source = seqio.TFExampleDataSource(split_patterns(data_dir),
                                     pp.feature_description())
  features = functools.partial(pp.rahf_features, image_size=image_size,
                               heatmap_size=heatmap_size)
  names = {'multihead': f'{name_prefix}_multihead'}
  _add(names['multihead'], seqio.Task(
      names['multihead'], source=source,
      preprocessors=[features, seqio.preprocessors.tokenize,
                     seqio.preprocessors.append_eos_after_trim],
      output_features=output_features(vocab), metric_fns=[],
      shuffle_buffer_size=1000))
  if augmented:
    names['augmented'] = f'{name_prefix}_augmented'
    _add(names['augmented'], seqio.Task(
        names['augmented'], source=source,
        preprocessors=[features, pp.augment_prompts,
                       seqio.preprocessors.tokenize,
                       seqio.preprocessors.append_eos_after_trim],
        output_features=output_features(vocab, AUGMENTED_PASSTHROUGH),
        metric_fns=[], shuffle_buffer_size=1000))
  return names


def feature_converter(augmented: bool = False
                      ) -> seqio.EncDecFeatureConverter:
  """The encoder-decoder converter, passing the non-token features through."""
  passthrough = AUGMENTED_PASSTHROUGH if augmented else MULTIHEAD_PASSTHROUGH
  return seqio.EncDecFeatureConverter(
      pack=False,
      passthrough_features={
          name: seqio.FeatureConverter.FeatureSpec(dtype=dtype, rank=rank)
          for name, (dtype, rank) in passthrough.items()})


def task_feature_lengths(inputs_length: int, targets_length: int,
                         image_size: int, heatmap_size: int,
                         augmented: bool = False) -> dict[str, int]:
  """`task_feature_lengths` for `seqio.get_dataset`.

  seqio needs a length for every passthrough feature (the size of its first
  axis): the image and heatmap sides, 4 scores (1 score and 1 output id in
  the augmented task).

  Args:
    inputs_length: token length of the prompt.
    targets_length: token length of the marked target.
    image_size: side of the image.
    heatmap_size: side of the heatmaps.
    augmented: lengths for the augmented-prompt task.

  Returns:
    Feature name -> length.
  """
  lengths = {'inputs': inputs_length, 'targets': targets_length,
             pp.IMAGE: image_size}
  if augmented:
    lengths.update({pp.HEATMAP: heatmap_size, pp.SCORE: 1, pp.OUTPUT_ID: 1})
  else:
    lengths.update({pp.IMPLAUSIBILITY_HEATMAP: heatmap_size,
                    pp.MISALIGNMENT_HEATMAP: heatmap_size, pp.SCORES: 4})
  return lengths


def get_dataset(task_name: str, split: str, *, inputs_length: int,
                targets_length: int, image_size: int, heatmap_size: int,
                batch_size: int, shuffle: bool = False,
                seed: Optional[int] = None, augmented: bool = False):
  """Convenience wrapper of `seqio.get_dataset` with this module's helpers."""
  return seqio.get_dataset(
      task_name,
      task_feature_lengths=task_feature_lengths(
          inputs_length, targets_length, image_size, heatmap_size, augmented),
      dataset_split=split, shuffle=shuffle, seed=seed, batch_size=batch_size,
      feature_converter=feature_converter(augmented), num_epochs=1)
