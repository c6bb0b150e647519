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
disagree.
"""

import dataclasses
import os
from typing import Any, Iterator

import jax
import numpy as np

from richhf_jax.data import tasks
from richhf_jax.models import rahf


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the joined RichHF-18K shards are and how to batch them.

  Attributes:
    data_dir: directory of joined shards (`richhf_jax.data.join` output).
    vocab_path: SentencePiece model (T5's for real runs).
    input_length: encoder prompt tokens (longer prompts are truncated).
    target_length: decoder tokens (marked prompt + EOS).
    shuffle_seed: seed of the training shuffle.
    name_prefix: prefix of the registered seqio task names.
  """
  data_dir: str
  vocab_path: str
  input_length: int = 32
  target_length: int = 48
  shuffle_seed: int = 0
  name_prefix: str = 'richhf18k'

  def __post_init__(self):
    if not os.path.isdir(self.data_dir):
      raise FileNotFoundError(
          f'DataConfig.data_dir={self.data_dir!r} is not a directory; expected '
          'the output directory of `python -m richhf_jax.data.join`')
    if not os.path.isfile(self.vocab_path):
      raise FileNotFoundError(
          f'DataConfig.vocab_path={self.vocab_path!r} does not exist; expected '
          'a SentencePiece model file')


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


def task_name(data: DataConfig, model_config: rahf.RAHFConfig) -> str:
  """Registers the tasks for this data/model pair; returns the task name."""
  hm = model_config.heatmap_size
  if hm[0] != hm[1]:
    raise ValueError(f'non-square heatmap size {hm} is not supported')
  tasks.register_tasks(
      data_dir=data.data_dir, vocab_path=data.vocab_path,
      image_size=model_config.vit.image_size, heatmap_size=hm[0],
      name_prefix=data.name_prefix)
  if model_config.variant != 'multihead':
    raise NotImplementedError(
        f'data pipeline for variant {model_config.variant!r} is not wired yet')
  return f'{data.name_prefix}_multihead'


def get_dataset(data: DataConfig, model_config: rahf.RAHFConfig, split: str,
                batch_size: int, *, shuffle: bool, repeat: bool,
                seed: int | None = None):
  """A tf.data of feature-converted batches for this host.

  Args:
    data: the data config.
    model_config: fixes image and heatmap sizes.
    split: 'train', 'validation' or 'test'.
    batch_size: GLOBAL batch size; each host gets its share.
    shuffle: shuffle examples (training).
    repeat: repeat forever (training).
    seed: shuffle seed (default: data.shuffle_seed).

  Returns:
    A tf.data.Dataset of dicts of host-local batches.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  if split not in SPLITS:
    raise ValueError(f'split={split!r}; expected one of {SPLITS}')
  nproc, index = jax.process_count(), jax.process_index()
  if batch_size % nproc:
    raise ValueError(f'batch_size={batch_size} is not divisible by the '
                     f'{nproc} hosts')
  name = task_name(data, model_config)
  hm = model_config.heatmap_size[0]
  lengths = tasks.task_feature_lengths(
      data.input_length, data.target_length, model_config.vit.image_size, hm)
  ds = seqio.get_dataset(
      name, task_feature_lengths=lengths, dataset_split=split,
      shuffle=shuffle, num_epochs=None if repeat else 1,
      feature_converter=tasks.feature_converter(),
      shard_info=seqio.ShardInfo(index=index, num_shards=nproc)
      if nproc > 1 else None,
      seed=data.shuffle_seed if seed is None else seed)
  # Batched here, not by seqio: its batching drops the last partial batch,
  # which would silently leave evaluation examples out.
  return ds.batch(batch_size // nproc, drop_remainder=repeat)


def numpy_batches(ds, start_step: int = 0) -> Iterator[dict[str, Any]]:
  """Iterates numpy batches, skipping the first `start_step` (resume)."""
  if start_step:
    ds = ds.skip(start_step)
  for batch in ds.as_numpy_iterator():
    yield {k: np.asarray(v) for k, v in batch.items()}
