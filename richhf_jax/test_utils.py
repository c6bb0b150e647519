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
"""Helpers shared by the tests: the one tiny model config and fake batches."""

import dataclasses

import numpy as np

from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.models import score_head


def tiny_config(**overrides) -> rahf.RAHFConfig:
  """The tiny RAHF (32 px images, 4x4 grid, 16x16 heatmaps) for unit tests.

  Args:
    **overrides: RAHFConfig fields to replace (dataclasses.replace).
  """
  cfg = rahf.RAHFConfig(
      vit=config_lib.vit_config('tiny', image_size=32, patch_size=8),
      t5=config_lib.t5_config('tiny'),
      heatmap_head=heatmap_head.get_heatmap_head_config('tiny'),
      score_head=score_head.get_score_head_config('tiny'))
  return dataclasses.replace(cfg, **overrides)


def fake_batch(config: rahf.RAHFConfig, batch_size: int = 2,
               input_length: int = 6, target_length: int = 7,
               seed: int = 0) -> dict[str, np.ndarray]:
  """A random training batch with the shapes the model expects."""
  rng = np.random.default_rng(seed)
  s = config.vit.image_size
  h, w = config.heatmap_size
  vocab = config.t5.vocab_size
  tok_shape = (batch_size, input_length)
  if config.variant == 'augmented':
    tok_shape = (batch_size, config.num_tasks, input_length)
  enc = rng.integers(3, vocab, size=tok_shape).astype(np.int32)
  enc[..., -1] = 0  # one pad position
  targets = rng.integers(3, vocab, size=(batch_size, target_length))
  targets[:, -2] = 1  # EOS
  targets[:, -1] = 0
  targets = targets.astype(np.int32)
  dec_in = np.concatenate(
      [np.zeros((batch_size, 1), np.int32), targets[:, :-1]], axis=1)
  return {
      'image': rng.uniform(-1, 1, (batch_size, s, s, 3)).astype(np.float32),
      'encoder_input_tokens': enc,
      'decoder_input_tokens': dec_in,
      'decoder_target_tokens': targets,
      'decoder_loss_weights': (targets > 0).astype(np.float32),
      'implausibility_heatmap': rng.uniform(0, 1, (batch_size, h, w)).astype(
          np.float32),
      'misalignment_heatmap': rng.uniform(0, 1, (batch_size, h, w)).astype(
          np.float32),
      'scores': rng.uniform(0, 1, (batch_size, 4)).astype(np.float32),
  }
