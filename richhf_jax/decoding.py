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


def set_cache_index(cache: Cache, index: Array, *,
                    add_axis: bool = False) -> Cache:
  """Sets every `cache_index` leaf of a decoder cache to `index`.

  Args:
    cache: a decoder cache (its `cache_index` leaves are scalars, or
      [layers] under nn.scan, with index.shape appended once add_axis has
      been used).
    index: a scalar, or [B] (one position per sequence).
    add_axis: append index.shape to every leaf's shape (turns a shared
      index into per-sequence ones); else leaves keep their shape.

  Returns:
    The cache with new `cache_index` leaves.
  """
  index = jnp.asarray(index, jnp.int32)

  def fn(path, x):
    if getattr(path[-1], 'key', None) != 'cache_index':
      return x
    shape = x.shape + index.shape if add_axis else x.shape
    return jnp.broadcast_to(index, shape).astype(x.dtype)
  return jax.tree_util.tree_map_with_path(fn, cache)


def prompt_draft(source: Array, pointer: Array, draft_len: int) -> Array:
  """The draft tokens: `draft_len` tokens of `source` from `pointer` on.

  Args:
    source: int [B, S], the prompt tokens the output copies (0 = pad).
    pointer: int [B], where in `source` the draft starts.
    draft_len: number of draft tokens K.

  Returns:
    int32 [B, K]; positions past the end of `source` are pad (0).
  """
  padded = jnp.pad(source.astype(jnp.int32), ((0, 0), (0, draft_len)))
  idx = pointer[:, None] + jnp.arange(draft_len)[None, :]
  idx = jnp.minimum(idx, padded.shape[1] - 1)
  return jnp.take_along_axis(padded, idx, axis=1)


# How far past the draft a model's own token is looked for in the prompt
# (`advance_pointer`): far enough to follow a few skipped words, near enough
# that a word the model inserts does not send the copy to a later use of it.
RESYNC_WINDOW = 8


def advance_pointer(source: Array, pointer: Array, accepted: Array,
                    last: Array, window: int = RESYNC_WINDOW) -> Array:
  """Moves the copy pointer past a block's accepted and last tokens.

  The accepted draft tokens were `source[pointer : pointer + accepted]`.
  The block's last token (the model's own choice) continues the copy if it
  occurs in the `window` source positions from `pointer + accepted` on: the
  pointer moves past its first such occurrence (this follows skipped
  words). Otherwise it is a token of the model's own (a keyword mark, or a
  word the prompt does not have there) and the pointer stays after the
  accepted tokens.

  Args:
    source: int [B, S] (0 = pad, never matched).
    pointer: int [B], the block's draft start.
    accepted: int [B], the accepted draft tokens.
    last: int [B], the block's last emitted token.
    window: source positions searched for `last`.

  Returns:
    int32 [B], the next draft start.
  """
  start = pointer + accepted
  pos = jnp.arange(source.shape[1])[None, :]
  hit = ((source == last[:, None]) & (source != PAD_ID)
         & (pos >= start[:, None]) & (pos < start[:, None] + window))
  first = jnp.argmax(hit, axis=1)
  return jnp.where(jnp.any(hit, axis=1), first + 1, start).astype(jnp.int32)


def speculative_greedy_decode(tokens_to_logits: StepFn, cache: Cache, *,
                              draft_source: Array, draft_len: int,
                              batch_size: int, max_decode_len: int,
                              eos_id: int = EOS_ID, pad_id: int = PAD_ID,
                              start_id: int = START_ID
                              ) -> tuple[Array, Array, Array]:
  """Greedy decoding that verifies K tokens copied from the prompt per call.

  The keyword output is the prompt written back with a few words marked, so
  most next tokens are the prompt's next tokens. Each call feeds, per
  sequence, its last emitted token and K draft tokens copied from
  `draft_source` (`prompt_draft`) through the decoder at once ([B, K + 1]
  tokens: the weights are read once for all of them) and keeps the longest
  prefix of the draft that equals the model's own argmax choices, plus the
  model's next choice after it. Every emitted token is therefore the argmax
  the one-token decoder would have emitted (up to float rounding of the
  different matrix shapes); a call emits 1 to K + 1 tokens per sequence.
  Each sequence keeps its own cache position (the cache index becomes a [B]
  vector), so one sequence's rejected draft does not hold back the others.

  Args:
    tokens_to_logits: step function called with [batch_size, K + 1] tokens,
      returning logits [batch_size, K + 1, vocab] and the cache advanced by
      K + 1 positions.
    cache: the initialised cache for batch_size sequences, at least
      max_decode_len + K + 1 long.
    draft_source: int [batch_size, S], the prompt tokens (0 = pad).
    draft_len: K >= 1.
    batch_size: number of sequences.
    max_decode_len: decoded length.
    eos_id: end-of-sequence id.
    pad_id: written after EOS.
    start_id: the first decoder input token.

  Returns:
    (tokens, log_probs, calls): as `greedy_decode`, plus the number of
    decoder calls (int32 scalar).

  Raises:
    ValueError: for non-positive sizes or a draft_source of another batch.
  """
  k, n, b = draft_len, max_decode_len, batch_size
  if min(k, n, b) <= 0:
    raise ValueError(f'draft_len={k}, max_decode_len={n} and batch_size={b} '
                     'must be positive')
  if draft_source.ndim != 2 or draft_source.shape[0] != b:
    raise ValueError(f'draft_source has shape {draft_source.shape}; expected '
                     f'[{b}, source_length]')
  source = draft_source.astype(jnp.int32)
  width = n + k + 1  # A finished sequence still writes a block at i <= n.
  j = jnp.arange(k + 1)[None, :]

  def cond(state):
    _, _, _, finished, _, _, _, _ = state
    return ~jnp.all(finished)

  def body(state):
    i, token, pointer, finished, seqs, score, calls, cache = state
    draft = prompt_draft(source, pointer, k)  # [B, K]
    block = jnp.concatenate([token, draft], axis=1)  # [B, K + 1]
    logits, cache = tokens_to_logits(block, cache)
    logits = jnp.reshape(logits, (b, k + 1, -1)).astype(jnp.float32)
    pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # [B, K + 1]
    lp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1),
                             pred[..., None], axis=-1)[..., 0]
    # Accepted drafts: the run of pred[:, j] == draft[:, j] from j = 0,
    # cut so that nothing is emitted past position n - 1.
    agree = jnp.cumprod((pred[:, :k] == draft).astype(jnp.int32), axis=1)
    m = jnp.minimum(jnp.sum(agree, axis=1), n - 1 - i)
    m = jnp.where(finished, 0, m)  # [B]
    # The emitted tokens are pred[:, :m + 1]; mask what follows an EOS.
    is_eos = pred == eos_id
    eos_before = jnp.cumsum(is_eos, axis=1) - is_eos > 0
    dead = finished[:, None] | eos_before | (j > m[:, None])
    out = jnp.where(dead, pad_id, pred)
    seqs = jax.vmap(lambda row, new, at: lax.dynamic_update_slice(
        row, new, (at,)))(seqs, out, i)
    score = score + jnp.sum(jnp.where(dead, 0.0, lp), axis=1)
    last = jnp.take_along_axis(pred, m[:, None], axis=1)  # [B, 1]
    pointer = advance_pointer(source, pointer, m, last[:, 0])
    i = jnp.where(finished, i, i + m + 1)
    finished = finished | jnp.any(is_eos & ~dead, axis=1) | (i >= n)
    cache = set_cache_index(cache, i)
    return i, last, pointer, finished, seqs, score, calls + 1, cache

  cache = set_cache_index(cache, jnp.zeros((b,), jnp.int32), add_axis=True)
  state = (jnp.zeros((b,), jnp.int32),
           jnp.full((b, 1), start_id, jnp.int32),
           jnp.zeros((b,), jnp.int32),
           jnp.zeros((b,), bool),
           jnp.full((b, width), pad_id, jnp.int32),
           jnp.zeros((b,), jnp.float32),
           jnp.array(0, jnp.int32), cache)
  i, _, _, _, seqs, score, calls, _ = lax.while_loop(cond, body, state)
  # Slots past a sequence's last emitted token hold a rejected block's tail.
  seqs = jnp.where(jnp.arange(width)[None, :] < i[:, None], seqs, pad_id)
  return seqs[:, :n], score, calls
