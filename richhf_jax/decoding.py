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
"""Greedy and beam-search decoding over a per-token step function.

Both decoders are pure functions of a step function (as in t5x
`decoding.py`):

  tokens_to_logits(tokens [N, 1] int32, cache) -> (logits [N, vocab], cache)

where the cache is the model's 'cache' collection, initialised before the
call (see `richhf_jax.models.t5`). Everything runs inside `lax.while_loop`
with static shapes, so the decoders can be jitted whole. T5 conventions:
the decoder starts from token 0, EOS is 1, and positions after EOS hold the
pad id 0.

The cache passed here is the loop state: beam search tiles every leaf with a
batch axis to the beams and gathers it by beam at every step. Parts that do
not change during decoding (the T5 decoder's cross-attention keys and
values, `t5.split_decode_cache`) are best closed over by the step function
instead: they then stay out of the loop state and are neither copied per
beam nor gathered.
"""

from typing import Any, Callable

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Cache = Any
StepFn = Callable[[Array, Cache], tuple[Array, Cache]]

EOS_ID = 1
PAD_ID = 0
START_ID = 0
# Large negative finite score: -inf would turn into NaN in sums and divisions.
NEG_INF = np.float32(-1.0e7)


def _step_logits(tokens_to_logits: StepFn, tokens: Array, cache: Cache,
                 n: int) -> tuple[Array, Cache]:
  logits, cache = tokens_to_logits(tokens, cache)
  if logits.size % n:
    raise ValueError(f'tokens_to_logits returned logits {logits.shape}; '
                     f'expected [{n}, vocab] or [{n}, 1, vocab]')
  return jnp.reshape(logits, (n, -1)).astype(jnp.float32), cache


def greedy_decode(tokens_to_logits: StepFn, cache: Cache, *, batch_size: int,
                  max_decode_len: int, eos_id: int = EOS_ID,
                  pad_id: int = PAD_ID, start_id: int = START_ID
                  ) -> tuple[Array, Array]:
  """Decodes by taking the argmax token at every step.

  Args:
    tokens_to_logits: the step function (see module docstring), called with
      [batch_size, 1] tokens.
    cache: the initialised cache for batch_size sequences.
    batch_size: number of sequences.
    max_decode_len: static number of decoding steps (the cache length).
    eos_id: end-of-sequence id; a sequence stops after emitting it.
    pad_id: written after EOS.
    start_id: the first decoder input token.

  Returns:
    (tokens, log_probs): int32 [batch_size, max_decode_len], the decoded ids
    without the start token (EOS included, then padding), and float32
    [batch_size], the summed log-probabilities of the emitted tokens.

  Raises:
    ValueError: for a non-positive batch_size or max_decode_len.
  """
  if batch_size <= 0 or max_decode_len <= 0:
    raise ValueError(f'batch_size={batch_size} and max_decode_len='
                     f'{max_decode_len} must be positive')

  def cond(state):
    i, _, _, finished, _, _ = state
    return jnp.logical_and(i < max_decode_len, ~jnp.all(finished))

  def body(state):
    i, token, seqs, finished, score, cache = state
    logits, cache = _step_logits(tokens_to_logits, token, cache, batch_size)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    nxt_lp = jnp.take_along_axis(log_probs, nxt[:, None], axis=-1)[:, 0]
    score = score + jnp.where(finished, 0.0, nxt_lp)
    nxt = jnp.where(finished, pad_id, nxt)
    seqs = lax.dynamic_update_slice(seqs, nxt[:, None], (0, i))
    finished = finished | (nxt == eos_id)
    return i + 1, nxt[:, None], seqs, finished, score, cache

  state = (jnp.array(0, jnp.int32),
           jnp.full((batch_size, 1), start_id, jnp.int32),
           jnp.full((batch_size, max_decode_len), pad_id, jnp.int32),
           jnp.zeros((batch_size,), bool),
           jnp.zeros((batch_size,), jnp.float32), cache)
  _, _, seqs, _, score, _ = lax.while_loop(cond, body, state)
  return seqs, score


def flat_batch_beam_expand(x: Array, beam_size: int, axis: int = 0) -> Array:
  """Repeats each batch entry beam_size times: [B, ...] -> [B * K, ...].

  Use it on everything the step function closes over that has a batch axis
  (e.g. the encoder output and mask) before calling `beam_search`.

  Args:
    x: array with the batch on `axis`.
    beam_size: K.
    axis: the batch axis.

  Returns:
    The array with entry b repeated at rows b * K ... b * K + K - 1.
  """
  return jnp.repeat(x, beam_size, axis=axis)


def _map_cache(fn: Callable[[Array], Array], cache: Cache,
               axis: int) -> Cache:
  # Leaves without a batch axis (the scalar `cache_index`, or [layers] under
  # nn.scan) are shared by all sequences and left alone.
  return jax.tree.map(lambda x: fn(x) if x.ndim > axis else x, cache)


def _gather_beams(x: Array, beam_idx: Array, batch_size: int,
                  old_beams: int, axis: int = 0) -> Array:
  """Picks beams from the flat [B * old_beams, ...] axis by [B, new] ids."""
  x = jnp.moveaxis(x, axis, 0)
  rest = x.shape[1:]
  x = jnp.reshape(x, (batch_size, old_beams) + rest)
  idx = jnp.reshape(beam_idx, beam_idx.shape + (1,) * len(rest))
  x = jnp.take_along_axis(x, idx, axis=1)
  x = jnp.reshape(x, (-1,) + rest)
  return jnp.moveaxis(x, 0, axis)


def brevity_penalty(alpha: float, length: Array) -> Array:
  """GNMT length penalty ((5 + length) / 6) ** alpha (arXiv:1609.08144)."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def beam_search(tokens_to_logits: StepFn, cache: Cache, *, batch_size: int,
                beam_size: int, max_decode_len: int, alpha: float = 0.0,
                eos_id: int = EOS_ID, pad_id: int = PAD_ID,
                start_id: int = START_ID, cache_batch_axis: int = 0
                ) -> tuple[Array, Array]:
  """Beam search with a GNMT length penalty.

  The cache is given for batch_size sequences and tiled to
  batch_size * beam_size here; the step function is called with
  [batch_size * beam_size, 1] tokens, beams of one example adjacent (expand
  its closed-over inputs with `flat_batch_beam_expand`).

  Args:
    tokens_to_logits: the step function (see module docstring).
    cache: the initialised cache for batch_size sequences.
    batch_size: number of examples B.
    beam_size: beams per example K.
    max_decode_len: static number of decoding steps (the cache length).
    alpha: length-penalty exponent; 0 ranks by total log-probability.
    eos_id: end-of-sequence id.
    pad_id: written after EOS.
    start_id: the first decoder input token.
    cache_batch_axis: the batch axis of the cache leaves (1 for caches of
      layers stacked with nn.scan).

  Returns:
    (tokens, scores): int32 [B, K, max_decode_len] best first, and float32
    [B, K] length-normalised log-probabilities. An example with no sequence
    finished by max_decode_len returns its live beams.

  Raises:
    ValueError: for non-positive sizes or a negative alpha.
  """
  if min(batch_size, beam_size, max_decode_len) <= 0:
    raise ValueError(
        f'batch_size={batch_size}, beam_size={beam_size} and max_decode_len='
        f'{max_decode_len} must be positive')
  if alpha < 0:
    raise ValueError(f'alpha must be >= 0, got {alpha}')
  b, k, n = batch_size, beam_size, max_decode_len
  ax = cache_batch_axis
  cache = _map_cache(lambda x: flat_batch_beam_expand(x, k, ax), cache, ax)

  def cond(state):
    i, live_seqs, live_lp, fin_seqs, fin_scores, fin_flags, _ = state
    del live_seqs, fin_seqs
    # Log-probabilities only fall and the penalty only grows, so no live
    # beam can beat the worst kept finished one after this bound.
    best_live = live_lp[:, 0] / brevity_penalty(alpha, n)
    worst_fin = jnp.min(jnp.where(fin_flags, fin_scores, -NEG_INF), axis=1)
    worst_fin = jnp.where(jnp.all(fin_flags, axis=1), worst_fin, NEG_INF)
    done = jnp.all(best_live < worst_fin)
    return jnp.logical_and(i < n, ~done)

  def body(state):
    i, live_seqs, live_lp, fin_seqs, fin_scores, fin_flags, cache = state
    token = lax.dynamic_slice_in_dim(live_seqs, jnp.maximum(i - 1, 0), 1, 2)
    token = jnp.where(i == 0, start_id, token)  # [B, K, 1]
    logits, cache = _step_logits(tokens_to_logits,
                                 jnp.reshape(token, (b * k, 1)), cache,
                                 b * k)
    vocab = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits).reshape(b, k, vocab)
    cand_lp = (live_lp[:, :, None] + log_probs).reshape(b, k * vocab)
    # 2K candidates always leave K that do not end in EOS.
    top_lp, top_idx = lax.top_k(cand_lp, 2 * k)  # [B, 2K]
    parent = top_idx // vocab
    tok = (top_idx % vocab).astype(jnp.int32)
    seqs = jnp.take_along_axis(live_seqs, parent[:, :, None], axis=1)
    seqs = lax.dynamic_update_slice_in_dim(seqs, tok[:, :, None], i, 2)
    is_eos = tok == eos_id

    # Live beams: best K candidates that did not end.
    live_cand = jnp.where(is_eos, NEG_INF, top_lp)
    new_live_lp, live_pick = lax.top_k(live_cand, k)  # [B, K]
    new_live_seqs = jnp.take_along_axis(seqs, live_pick[:, :, None], axis=1)
    src = jnp.take_along_axis(parent, live_pick, axis=1)  # beam of origin
    cache = _map_cache(lambda x: _gather_beams(x, src, b, k, ax), cache, ax)

    # Finished: merge the newly ended candidates with those kept so far.
    new_scores = jnp.where(is_eos, top_lp / brevity_penalty(alpha, i + 1),
                           NEG_INF)
    all_seqs = jnp.concatenate([fin_seqs, seqs], axis=1)
    all_scores = jnp.concatenate([fin_scores, new_scores], axis=1)
    all_flags = jnp.concatenate([fin_flags, is_eos], axis=1)
    fin_scores, fin_pick = lax.top_k(all_scores, k)
    fin_seqs = jnp.take_along_axis(all_seqs, fin_pick[:, :, None], axis=1)
    fin_flags = jnp.take_along_axis(all_flags, fin_pick, axis=1)
    return (i + 1, new_live_seqs, new_live_lp, fin_seqs, fin_scores,
            fin_flags, cache)

  # Only beam 0 is live at the start, so the first step does not pick K
  # copies of the same token.
  live_lp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32),
                     (b, 1))
  state = (jnp.array(0, jnp.int32),
           jnp.full((b, k, n), pad_id, jnp.int32), live_lp,
           jnp.full((b, k, n), pad_id, jnp.int32),
           jnp.full((b, k), NEG_INF, jnp.float32), jnp.zeros((b, k), bool),
           cache)
  i, live_seqs, live_lp, fin_seqs, fin_scores, fin_flags, _ = (
      lax.while_loop(cond, body, state))
  any_fin = jnp.any(fin_flags, axis=1)  # [B]
  live_scores = live_lp / brevity_penalty(alpha, i)
  seqs = jnp.where(any_fin[:, None, None], fin_seqs, live_seqs)
  scores = jnp.where(any_fin[:, None], fin_scores, live_scores)
  return seqs, scores
