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
"""The model wrapper: losses, prediction with decoding, initial variables.

The small interface of t5x's `BaseModel`: `get_initial_variables`, `loss_fn`,
`predict_batch`. The optimizer stays out of it (the trainer owns it).

Batch keys (see docs/architecture.md): `image` [B, S, S, 3],
`encoder_input_tokens` [B, L] (or [B, K, L] for augmented prompts),
`decoder_input_tokens`, `decoder_target_tokens`, `decoder_loss_weights`
[B, T], `implausibility_heatmap`, `misalignment_heatmap` [B, H, W],
`scores` [B, 4]. Optional: `heatmap_weight`, `score_weight` [B, 1] (or [B]),
per-example weights of the head losses (the captioning mixture sets them to
0 for caption-only examples); missing means 1.
"""

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from richhf_jax import decoding
from richhf_jax.models import rahf
from richhf_jax.models import t5

Array = jax.Array
PyTree = Any

EOS_ID = 1
PAD_ID = 0

_REQUIRED_KEYS = ('image', 'encoder_input_tokens', 'decoder_input_tokens',
                  'decoder_target_tokens', 'decoder_loss_weights',
                  'implausibility_heatmap', 'misalignment_heatmap', 'scores')


def check_batch(batch: Mapping[str, Any], config: rahf.RAHFConfig) -> None:
  """Raises ValueError naming the key when a training batch is malformed."""
  missing = [k for k in _REQUIRED_KEYS if k not in batch]
  if missing:
    raise ValueError(f'batch is missing features {missing}; it has '
                     f'{sorted(batch)}')
  s = config.vit.image_size
  img = batch['image'].shape
  if len(img) != 4 or img[1:] != (s, s, 3):
    raise ValueError(f'batch["image"] has shape {img}; expected '
                     f'[B, {s}, {s}, 3] for vit.image_size={s}')
  hm = tuple(config.heatmap_size)
  for k in rahf.HEATMAP_TYPES:
    shape = batch[f'{k}_heatmap'].shape
    if tuple(shape[1:]) != hm:
      raise ValueError(
          f'batch["{k}_heatmap"] has shape {shape}; the heatmap head outputs '
          f'[B, {hm[0]}, {hm[1]}] (set the data pipeline heatmap size to the '
          'head resolution)')
  if batch['scores'].shape[1:] != (len(rahf.SCORE_TYPES),):
    raise ValueError(f'batch["scores"] has shape {batch["scores"].shape}; '
                     f'expected [B, {len(rahf.SCORE_TYPES)}]')


def example_weights(batch: Mapping[str, Array], key: str) -> Array:
  """The [B] per-example weights `batch[key]` ([B] or [B, 1]); 1 if absent."""
  batch_size = batch['image'].shape[0]
  if key not in batch:
    return jnp.ones((batch_size,), jnp.float32)
  w = jnp.asarray(batch[key], jnp.float32)
  if w.shape not in ((batch_size,), (batch_size, 1)):
    raise ValueError(f'batch["{key}"] has shape {w.shape}; expected '
                     f'[{batch_size}] or [{batch_size}, 1]')
  return w.reshape((batch_size,))


def weighted_mean(values: Array, weights: Array) -> Array:
  """sum(w * v) / max(sum(w), 1): a batch without weighted examples gives 0."""
  return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), 1.0)


def heatmap_pixel_loss(config: rahf.RAHFConfig, logits: Array,
                       target: Array) -> Array:
  """Per-pixel heatmap loss (`config.heatmap_loss`) of [B, H, W] logits."""
  target = target.astype(jnp.float32)
  if config.heatmap_loss == 'bce':
    return optax.sigmoid_binary_cross_entropy(logits, target)
  return jnp.square(jax.nn.sigmoid(logits) - target)


def cross_entropy(logits: Array, targets: Array,
                  weights: Array) -> tuple[Array, Array]:
  """Weighted mean token cross entropy and accuracy (float32)."""
  logits = logits.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  weights = weights.astype(jnp.float32)
  denom = jnp.maximum(weights.sum(), 1.0)
  acc = ((jnp.argmax(logits, -1) == targets) * weights).sum() / denom
  return (ce * weights).sum() / denom, acc


class RAHFModel:
  """Wraps the `RAHF` module with its losses and prediction.

  Attributes:
    config: the whole-model configuration.
    module: the flax module.
  """

  def __init__(self, config: rahf.RAHFConfig):
    self.config = config
    self.module = rahf.RAHF(config)

  # --------------------------------------------------------------------------
  # Variables.
  # --------------------------------------------------------------------------

  def dummy_inputs(self, batch_size: int = 1, input_length: int = 8,
                   target_length: int = 8) -> dict[str, Array]:
    """Zero inputs of the right shapes (for init and compilation)."""
    s = self.config.vit.image_size
    tok_shape = (batch_size, input_length)
    if self.config.variant == 'augmented':
      tok_shape = (batch_size, self.config.num_tasks, input_length)
    return {
        'image': jnp.zeros((batch_size, s, s, 3), jnp.float32),
        'encoder_input_tokens': jnp.ones(tok_shape, jnp.int32),
        'decoder_input_tokens': jnp.ones((batch_size, target_length),
                                         jnp.int32),
    }

  def get_initial_variables(self, rng: Array, input_length: int = 8,
                            target_length: int = 8) -> PyTree:
    """Initial variables (params boxed with their logical axis names)."""
    x = self.dummy_inputs(1, input_length, target_length)
    return self.module.init(
        {'params': rng, 'dropout': rng}, x['image'],
        x['encoder_input_tokens'], x['decoder_input_tokens'], train=False)

  # --------------------------------------------------------------------------
  # Training.
  # --------------------------------------------------------------------------

  def loss_fn(self, params: PyTree, batch: Mapping[str, Array],
              dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """Weighted sum of heatmap loss, score MSE and token cross entropy.

    Args:
      params: model parameters (unboxed).
      batch: a training batch (see module docstring).
      dropout_rng: enables dropout when given.

    Returns:
      (total loss, aux) where aux holds every loss term separately under
      `loss/<name>` plus `text/accuracy`.
    """
    cfg = self.config
    train = dropout_rng is not None
    rngs = {'dropout': dropout_rng} if train else {}
    out = self.module.apply(
        {'params': params}, batch['image'], batch['encoder_input_tokens'],
        batch['decoder_input_tokens'], train=train, rngs=rngs)
    aux = {}
    total = 0.0
    hm_w = example_weights(batch, 'heatmap_weight')
    for k in rahf.HEATMAP_TYPES:
      per_pixel = heatmap_pixel_loss(cfg, out[f'{k}_heatmap_logits'],
                                     batch[f'{k}_heatmap'])
      term = weighted_mean(jnp.mean(per_pixel, axis=(1, 2)), hm_w)
      aux[f'loss/{k}_heatmap'] = term
      total += cfg.heatmap_loss_weight * term
    sc_w = example_weights(batch, 'score_weight')
    sq = jnp.square(out['scores'] - batch['scores'].astype(jnp.float32))
    for i, k in enumerate(rahf.SCORE_TYPES):
      term = weighted_mean(sq[:, i], sc_w)
      aux[f'loss/{k}_score'] = term
      total += cfg.score_loss_weight * term
    text_loss, acc = cross_entropy(out['logits'],
                                   batch['decoder_target_tokens'],
                                   batch['decoder_loss_weights'])
    aux['loss/text'] = text_loss
    aux['text/accuracy'] = acc
    total += cfg.text_loss_weight * text_loss
    aux['loss/total'] = total
    return total, aux

  # --------------------------------------------------------------------------
  # Inference.
  # --------------------------------------------------------------------------

  def predict_batch(self, params: PyTree, batch: Mapping[str, Array], *,
                    max_decode_length: int,
                    num_beams: int = 1,
                    draft_tokens: int = 0,
                    return_loss: bool = False,
                    step_kernels: PyTree | None = None
                    ) -> dict[str, Array]:
    """Heatmaps, scores and decoded keyword tokens for a batch.

    The encoder runs once; its output feeds the heads and the cached decoder.

    Args:
      params: model parameters.
      batch: needs `image` and `encoder_input_tokens`.
      max_decode_length: decoded sequence length (tokens after the start).
      num_beams: 1 = greedy, else beam search.
      draft_tokens: K > 0 (greedy only): each decoder call verifies K
        tokens copied from the prompt (`decoding.speculative_greedy_decode`;
        the same tokens as plain greedy decoding, fewer decoder calls).
      return_loss: also return the teacher-forced text loss `loss/text` (the
        batch must then carry decoder targets); it reuses the same encoder
        output.
      step_kernels: `step_kernels(params)`, or None: decoding steps then
        multiply the params as stored.

    Returns:
      dict with `implausibility_heatmap`, `misalignment_heatmap` [B, H, W],
      `scores` [B, 4], `decoded` [B, max_decode_length] int32 (0-padded after
      EOS), `decoder_calls` (int32 scalar, with draft_tokens > 0) and
      `loss/...` terms when asked.
    """
    variables = {'params': params}
    encoded, mask = self.module.apply(
        variables, batch['image'], batch['encoder_input_tokens'],
        method=rahf.RAHF.encode)
    out = self.module.apply(variables, encoded, method=rahf.RAHF.predict_heads)
    kw_encoded, kw_mask = self.module.apply(
        variables, encoded, mask, method=rahf.RAHF.keyword_encoding)
    decoded = self._decode(
        params, kw_encoded, kw_mask, max_decode_length, num_beams,
        draft_tokens=draft_tokens,
        draft_source=self.keyword_prompt(batch['encoder_input_tokens']),
        return_steps=bool(draft_tokens), step_kernels=step_kernels)
    if draft_tokens:
      out['decoded'], out['decoder_calls'] = decoded
    else:
      out['decoded'] = decoded
    if return_loss:
      logits = self.module.apply(
          variables, kw_encoded, kw_mask, batch['decoder_input_tokens'],
          method=rahf.RAHF.decode)
      text_loss, _ = cross_entropy(logits, batch['decoder_target_tokens'],
                                   batch['decoder_loss_weights'])
      out['loss/text'] = text_loss
    return out

  def step_kernels(self, params: PyTree) -> PyTree:
    """Transposed decoder kernels for faster decoding steps (CPU).

    `t5.step_kernels` of the decoder, in its computation dtype. Passed to
    `predict_batch` / `_decode` they make the steps multiply weight-major
    (same results up to summation order). Make them once per params in a
    program of their own (`jax.jit(model.step_kernels)(params)`) and pass
    them in: made inside the decoding program, XLA may fold the transposes
    away, and remaking them per call costs more than the steps save.
    """
    if 'decoder' not in params:
      raise ValueError('step_kernels needs the model params (a "decoder" '
                       f'subtree); got keys {sorted(params)}')
    return t5.step_kernels(params['decoder'], self.config.t5.jnp_dtype)

  def keyword_prompt(self, tokens: Array) -> Array:
    """The keyword task's prompt tokens [B, L] (augmented: the last slot)."""
    return tokens[:, -1] if self.config.variant == 'augmented' else tokens

  def _init_decode_cache(self, params: PyTree, encoded: Array, mask: Array,
                         max_decode_length: int) -> tuple[PyTree, PyTree]:
    """The decoder cache for B sequences: (encoder part, step part).

    The encoder part holds every cross-attention layer's keys and values of
    `encoded` (the one-time projection); the step part is the zeroed
    self-attention cache of length max_decode_length (see
    `t5.split_decode_cache`).
    """
    # The cache length is the length of the tokens given at initialisation.
    dummy = jnp.zeros((encoded.shape[0], max_decode_length), jnp.int32)
    cache = self.module.apply(
        {'params': params}, encoded, mask, dummy, decode=True,
        max_decode_length=max_decode_length, method=rahf.RAHF.decode,
        mutable=['cache'])[1]['cache']
    return t5.split_decode_cache(cache)

  def _decode(self, params: PyTree, encoded: Array, mask: Array,
              max_decode_length: int, num_beams: int, *,
              draft_tokens: int = 0,
              draft_source: Array | None = None,
              return_steps: bool = False,
              step_kernels: PyTree | None = None
              ) -> Array | tuple[Array, Array]:
    """Autoregressive decoding with the KV cache: [B, max_decode_length].

    The cache-initialising call projects the encoder output to every
    cross-attention layer's keys and values once; the decoding loop carries
    only the self-attention cache (`t5.split_decode_cache`) and closes over
    the encoder part, which beam search then shares across an example's
    beams instead of copying it per beam. With draft_tokens K > 0 (greedy)
    each call verifies K tokens copied from draft_source [B, S], the prompt
    tokens, and the cache is K + 1 positions longer to hold a whole block.
    return_steps (draft_tokens > 0) also returns the number of decoder calls.
    step_kernels (`step_kernels(params)`) makes the steps multiply
    weight-major.
    """
    batch = encoded.shape[0]
    if draft_tokens < 0:
      raise ValueError(f'draft_tokens must be >= 0, got {draft_tokens}')
    if draft_tokens and num_beams > 1:
      raise ValueError(f'draft_tokens={draft_tokens} works with greedy '
                       f'decoding only, not num_beams={num_beams}')
    if draft_tokens and draft_source is None:
      raise ValueError('draft_tokens > 0 needs draft_source (the prompt '
                       'tokens)')
    cache_length = max_decode_length + (draft_tokens + 1 if draft_tokens
                                        else 0)
    encoder_cache, cache = self._init_decode_cache(params, encoded, mask,
                                                   cache_length)
    step_vars = {'params': params}
    if step_kernels is not None:
      step_vars[t5.STEP_KERNELS] = {'decoder': step_kernels}

    def tokens_to_logits(tokens, cache):
      # `encoded` only fixes shapes here: the steps read the cached keys and
      # values, so nothing is computed from it inside the loop.
      logits, new_vars = self.module.apply(
          {**step_vars,
           'cache': t5.merge_decode_cache(encoder_cache, cache)},
          encoded, mask, tokens, decode=True,
          max_decode_length=cache_length, method=rahf.RAHF.decode,
          mutable=['cache'])
      return logits, t5.split_decode_cache(new_vars['cache'])[1]

    if draft_tokens:
      seqs, _, steps = decoding.speculative_greedy_decode(
          tokens_to_logits, cache, draft_source=draft_source,
          draft_len=draft_tokens, batch_size=batch,
          max_decode_len=max_decode_length, eos_id=EOS_ID)
      return (seqs, steps) if return_steps else seqs

    if num_beams > 1:
      seqs, _ = decoding.beam_search(
          tokens_to_logits, cache, batch_size=batch, beam_size=num_beams,
          max_decode_len=max_decode_length, eos_id=EOS_ID)
      return seqs[:, 0]
    seqs, _ = decoding.greedy_decode(
        tokens_to_logits, cache, batch_size=batch,
        max_decode_len=max_decode_length, eos_id=EOS_ID)
    return seqs


def make_step_kernels(model: RAHFModel, params: PyTree,
                      weight_major_steps: bool | None = None
                      ) -> PyTree | None:
  """`model.step_kernels(params)` by their own program, or None.

  weight_major_steps None = on the CPU backend only, where the weight-major
  steps were measured faster (docs/performance.md, "Weight-major decoding
  steps"); they hold a second copy of the decoder's kernels.
  """
  if weight_major_steps is None:
    weight_major_steps = jax.default_backend() == 'cpu'
  if not weight_major_steps:
    return None
  return _step_kernels_program(model.config)(params)


@functools.lru_cache(maxsize=None)
def _step_kernels_program(config: rahf.RAHFConfig):
  """One jitted `RAHFModel.step_kernels` per config (compiled once)."""
  return jax.jit(RAHFModel(config).step_kernels)


def decoded_lengths(tokens: np.ndarray, eos_id: int = EOS_ID) -> np.ndarray:
  """Decoded tokens up to and including the first EOS (or all), per row."""
  tokens = np.asarray(tokens)
  is_eos = tokens == eos_id
  return np.where(is_eos.any(axis=1), np.argmax(is_eos, axis=1) + 1,
                  tokens.shape[1])


def unbox(tree: PyTree) -> PyTree:
  """Strips logical-partitioning boxes."""
  return nn.meta.unbox(tree)
