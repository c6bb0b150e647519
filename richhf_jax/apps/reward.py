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
"""A differentiable reward from RAHF's predictions (paper Sec. 5).

  from richhf_jax import inference
  from richhf_jax.apps import reward
  p = inference.Predictor.load('/tmp/rahf_export')
  tokens = p.tokenize(['a yellow cat'])[0]
  weights = {'plausibility': 1.0, 'aesthetics': 0.5, 'implausibility': 1.0}
  grad = jax.grad(reward.reward, argnums=1)(p.params, image, tokens,
                                            weights, p.config)

`reward` is a pure function of (params, image): the encoder and the heads
only (no decoding), so `jax.grad` w.r.t. the image gives a guidance signal
for a diffusion sampler or a reward gradient to fine-tune a generator. An
image of another size is resized inside the function with
`jax.image.resize(..., antialias=True)`, the same kernel as the training
pipeline's TF resize, and stays differentiable.

The reward is sum_k w_k * score_k over the named scores, minus w_h times the
mean of heatmap h for the heatmap names (`implausibility`, `misalignment`):
higher is better.

The caller jits it; on CPU, `jax.jit(..., compiler_options=
compile_options.defaults())` compiles it the way `Predictor` does (the
heads' convolutions outside YNNPACK fusions, ~10-14% faster forward).
"""

from typing import Any, Mapping, Sequence, Union

import jax
import jax.numpy as jnp

from richhf_jax.models import rahf

PyTree = Any
Weights = Union[Mapping[str, float], Sequence[float], jax.Array]


def _weight_vectors(weights: Weights) -> tuple[jax.Array, jax.Array]:
  """(score weights [4], heatmap penalties [2]) from a mapping or sequence."""
  if isinstance(weights, Mapping):
    known = rahf.SCORE_TYPES + rahf.HEATMAP_TYPES
    unknown = sorted(set(weights) - set(known))
    if unknown:
      raise ValueError(f'unknown reward weight names {unknown}; expected '
                       f'names from {known}')
    scores = jnp.asarray([weights.get(k, 0.0) for k in rahf.SCORE_TYPES],
                         jnp.float32)
    maps = jnp.asarray([weights.get(k, 0.0) for k in rahf.HEATMAP_TYPES],
                       jnp.float32)
    return scores, maps
  w = jnp.asarray(weights, jnp.float32)
  n = len(rahf.SCORE_TYPES)
  if w.shape not in ((n,), (n + len(rahf.HEATMAP_TYPES),)):
    raise ValueError(f'reward weights have shape {w.shape}; expected ({n},) '
                     f'score weights {rahf.SCORE_TYPES} or ({n + 2},) with '
                     f'heatmap penalties {rahf.HEATMAP_TYPES} appended')
  return w[:n], (w[n:] if w.shape[0] > n else jnp.zeros((2,), jnp.float32))


def reward(params: PyTree, image: jax.Array, prompt_tokens: jax.Array,
           weights: Weights, config: rahf.RAHFConfig) -> jax.Array:
  """The weighted predicted quality of an image; differentiable in `image`.

  Args:
    params: model parameters (e.g. `Predictor.params`).
    image: float [H, W, 3] in [-1, 1], or a batch [B, H, W, 3]; resized to
      the model's input size when H, W differ from it.
    prompt_tokens: int tokens of the prompt, [L] (multi-head) or [K, L]
      (augmented prompts), with a leading B axis for a batch of images
      (`Predictor.tokenize`).
    weights: a mapping from score / heatmap names to weights, or a sequence
      of 4 score weights (optionally followed by 2 heatmap penalties).
    config: the model config (static).

  Returns:
    float32 scalar for one image, [B] for a batch.

  Raises:
    ValueError: bad shapes or weight names.
  """
  score_w, map_w = _weight_vectors(weights)
  single = image.ndim == 3
  if image.ndim not in (3, 4) or image.shape[-1] != 3:
    raise ValueError(f'image has shape {image.shape}; expected [H, W, 3] or '
                     '[B, H, W, 3]')
  images = image[None] if single else image
  tokens = jnp.asarray(prompt_tokens)
  tok_rank = 1 if config.variant == 'multihead' else 2
  if tokens.ndim == tok_rank:
    tokens = jnp.broadcast_to(tokens, (images.shape[0],) + tokens.shape)
  if tokens.ndim != tok_rank + 1 or tokens.shape[0] != images.shape[0]:
    raise ValueError(f'prompt_tokens has shape {tokens.shape}; expected one '
                     f'rank-{tok_rank} token array per image')
  s = config.vit.image_size
  if images.shape[1:3] != (s, s):
    images = jax.image.resize(images, (images.shape[0], s, s, 3), 'linear',
                              antialias=True)
  module = rahf.RAHF(config)
  variables = {'params': params}
  encoded, _ = module.apply(variables, images.astype(jnp.float32), tokens,
                            method=rahf.RAHF.encode)
  out = module.apply(variables, encoded, method=rahf.RAHF.predict_heads)
  value = out['scores'] @ score_w
  for i, k in enumerate(rahf.HEATMAP_TYPES):
    value = value - map_w[i] * out[f'{k}_heatmap'].mean(axis=(1, 2))
  return value[0] if single else value
