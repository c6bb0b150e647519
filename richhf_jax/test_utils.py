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


def init_params(config: rahf.RAHFConfig, seed: int = 0):
  """Unboxed initial params of `RAHFModel(config)`, initialised under jit.

  One program per architecture whatever the seed (the key is an argument),
  so callers across test files share its persistent-cache entry; eager
  `init` instead compiles every primitive op by op.
  """
  # pylint: disable=g-import-not-at-top
  import jax
  from richhf_jax import model as model_lib
  # pylint: enable=g-import-not-at-top
  model = model_lib.RAHFModel(config)
  return jax.jit(lambda r: model_lib.unbox(
      model.get_initial_variables(r))['params'])(jax.random.key(seed))


# Prompts of the tiny vocabulary that `tiny_export` bundles.
TINY_PROMPTS = ('a red circle and two blue squares',
                'three yellow triangles on a green background',
                'a big orange star at the top')


def tiny_vocab(model_prefix: str) -> str:
  """A SentencePiece model of `TINY_PROMPTS` small enough for tiny_config."""
  from richhf_jax.data import release  # pylint: disable=g-import-not-at-top
  from richhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
  targets = [release.marked_target(p.split(), [i % 2 for i in range(
      len(p.split()))]) for p in TINY_PROMPTS]
  return vocab.train_vocab(list(TINY_PROMPTS) + targets, model_prefix)


def tiny_export(out_dir: str, config: rahf.RAHFConfig | None = None,
                seed: int = 0, input_length: int = 8,
                target_length: int = 8) -> str:
  """An inference export (richhf_jax.export layout) of an initialised model.

  Args:
    out_dir: the export directory to write; the vocabulary is trained in
      `out_dir + '_vocab'`.
    config: default `tiny_config()`.
    seed: parameter init seed.
    input_length: prompt token length recorded in the export.
    target_length: decoded token length recorded in the export.

  Returns:
    The export path.
  """
  from richhf_jax import export  # pylint: disable=g-import-not-at-top
  config = config or tiny_config()
  params = init_params(config, seed)
  spm_model = tiny_vocab(out_dir + '_vocab/spm')
  return export.save_export(out_dir, config, params, spm_model,
                            input_length=input_length,
                            target_length=target_length, overwrite=True)
