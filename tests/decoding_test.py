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
"""Tests for richhf_jax.decoding."""

import dataclasses
import functools

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import decoding
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax.models import config as config_lib
from richhf_jax.models import rahf
from richhf_jax.models import t5

_B, _LE, _MAX = 2, 6, 6


def _markov_step(table):
  """Step fn whose next-token log-probs depend on the previous token only."""
  table = jnp.log(jnp.asarray(table, jnp.float32))

  def step(tokens, cache):
    return table[tokens[:, 0]], {'calls': cache['calls'] + 1}
  return step


# Vocab: 0 start/pad, 1 EOS, 2 'a', 3 'b'. Greedy takes 'a' (0.6) and then EOS
# (0.34): 0.204. Beam search finds 'b' (0.4) then EOS (0.9): 0.36.
_TABLE = [[0.0001, 0.0001, 0.5998, 0.4],
          [0.97, 0.01, 0.01, 0.01],
          [0.0001, 0.34, 0.3299, 0.33],
          [0.0001, 0.9, 0.0499, 0.05]]


class FakeStepTest(parameterized.TestCase):

  def test_greedy(self):
    seqs, score = jax.jit(
        lambda c: decoding.greedy_decode(_markov_step(_TABLE), c,
                                         batch_size=1, max_decode_len=4))(
                                             {'calls': jnp.zeros((1,))})
    np.testing.assert_array_equal(seqs, [[2, 1, 0, 0]])
    np.testing.assert_allclose(score, np.log([0.5998 * 0.34]), rtol=1e-5)

  def test_beam_search_beats_greedy(self):
    seqs, scores = jax.jit(
        lambda c: decoding.beam_search(_markov_step(_TABLE), c, batch_size=1,
                                       beam_size=2, max_decode_len=4))(
                                           {'calls': jnp.zeros((1,))})
    self.assertEqual(seqs.shape, (1, 2, 4))
    np.testing.assert_array_equal(seqs[0, 0], [3, 1, 0, 0])
    np.testing.assert_array_equal(seqs[0, 1], [2, 1, 0, 0])
    np.testing.assert_allclose(scores[0], np.log([0.36, 0.5998 * 0.34]),
                               rtol=1e-4)

  def test_length_penalty_divides_scores(self):
    alpha = 0.8
    _, scores = decoding.beam_search(
        _markov_step(_TABLE), {'calls': jnp.zeros((1,))}, batch_size=1,
        beam_size=2, max_decode_len=4, alpha=alpha)
    lp = ((5.0 + 2) / 6.0)**alpha
    np.testing.assert_allclose(scores[0, 0], np.log(0.36) / lp, rtol=1e-4)

  def test_unfinished_returns_live_beams(self):
    # From 'a' the best continuation is always 'a': no EOS within 3 steps.
    table = [[0.01, 0.01, 0.97, 0.01], [0.97, 0.01, 0.01, 0.01],
             [0.01, 0.01, 0.97, 0.01], [0.01, 0.01, 0.97, 0.01]]
    seqs, _ = decoding.greedy_decode(_markov_step(table),
                                     {'calls': jnp.zeros((1,))},
                                     batch_size=1, max_decode_len=3)
    beams, _ = decoding.beam_search(_markov_step(table),
                                    {'calls': jnp.zeros((1,))}, batch_size=1,
                                    beam_size=1, max_decode_len=3)
    np.testing.assert_array_equal(seqs, [[2, 2, 2]])
    np.testing.assert_array_equal(beams[:, 0], seqs)

  def test_bad_sizes_raise(self):
    with self.assertRaisesRegex(ValueError, 'beam_size=0'):
      decoding.beam_search(_markov_step(_TABLE), {}, batch_size=1,
                           beam_size=0, max_decode_len=3)
    with self.assertRaisesRegex(ValueError, 'alpha'):
      decoding.beam_search(_markov_step(_TABLE), {}, batch_size=1,
                           beam_size=1, max_decode_len=3, alpha=-1.0)


class T5DecodingTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cfg = config_lib.t5_config('tiny')
    cls.model = t5.T5Transformer(cfg)
    enc = np.random.RandomState(0).randint(2, 128, (_B, _LE))
    enc[1, -2:] = 0
    cls.enc = jnp.asarray(enc, jnp.int32)
    variables = jax.jit(cls.model.init)(jax.random.key(0), cls.enc,
                                        jnp.zeros((_B, _MAX), jnp.int32))
    params = nn.meta.unbox(variables)['params']
    # Sharpen the output layer so the argmax is far from ties.
    params['decoder']['logits_dense']['kernel'] *= 8.0
    cls.params = params
    cls.encoded = cls.model.apply({'params': params}, cls.enc,
                                  method='encode')

  def _init_cache(self, encoded, enc):
    _, cache = self.model.apply(
        {'params': self.params}, encoded, enc,
        jnp.zeros((enc.shape[0], _MAX), jnp.int32), decode=True,
        max_decode_length=_MAX, method='decode', mutable=['cache'])
    return cache['cache']

  def _step_fn(self, encoded, enc):
    def step(tokens, cache):
      logits, new = self.model.apply(
          {'params': self.params, 'cache': cache}, encoded, enc, tokens,
          decode=True, max_decode_length=_MAX, method='decode',
          mutable=['cache'])
      return logits[:, 0], new['cache']
    return step

  def _argmax_without_cache(self):
    # Teacher-forced full forward on a fixed-length buffer (one compile);
    # causality makes the padding after position i irrelevant.
    forward = jax.jit(lambda dec: self.model.apply(
        {'params': self.params}, self.encoded, self.enc, dec,
        method='decode'))
    dec = np.zeros((_B, _MAX), np.int32)
    out = np.zeros((_B, _MAX), np.int32)
    done = np.zeros((_B,), bool)
    for i in range(_MAX):
      nxt = np.argmax(np.asarray(forward(jnp.asarray(dec)))[:, i], axis=-1)
      nxt = np.where(done, 0, nxt)
      out[:, i] = nxt
      done |= nxt == 1
      if i + 1 < _MAX:
        dec[:, i + 1] = nxt
    return out

  def test_greedy_matches_uncached_argmax_and_beam_1(self):
    cache = self._init_cache(self.encoded, self.enc)
    greedy = jax.jit(lambda c: decoding.greedy_decode(
        self._step_fn(self.encoded, self.enc), c, batch_size=_B,
        max_decode_len=_MAX))
    seqs, _ = greedy(cache)
    np.testing.assert_array_equal(seqs, self._argmax_without_cache())

    beam = jax.jit(lambda c: decoding.beam_search(
        self._step_fn(self.encoded, self.enc), c, batch_size=_B,
        beam_size=1, max_decode_len=_MAX))
    beams, _ = beam(cache)
    np.testing.assert_array_equal(beams[:, 0], seqs)

  def test_beam_search_with_t5_runs_and_sorts(self):
    k = 3
    encoded = decoding.flat_batch_beam_expand(self.encoded, k)
    enc = decoding.flat_batch_beam_expand(self.enc, k)
    cache = self._init_cache(self.encoded, self.enc)
    seqs, scores = jax.jit(lambda c: decoding.beam_search(
        self._step_fn(encoded, enc), c, batch_size=_B, beam_size=k,
        max_decode_len=_MAX, alpha=0.6))(cache)
    self.assertEqual(seqs.shape, (_B, k, _MAX))
    scores = np.asarray(scores)
    self.assertTrue(np.all(np.diff(scores, axis=1) <= 1e-6), scores)
    self.assertTrue(np.all(np.isfinite(scores)))

  def _shared_step_fn(self, encoder_part):
    # The step part alone is the loop state; the encoder keys / values are
    # closed over and shared by the beams of an example.
    def step(tokens, cache):
      logits, new = self.model.apply(
          {'params': self.params,
           'cache': t5.merge_decode_cache(encoder_part, cache)},
          self.encoded, self.enc, tokens, decode=True,
          max_decode_length=_MAX, method='decode', mutable=['cache'])
      return logits[:, 0], t5.split_decode_cache(new['cache'])[1]
    return step

  @parameterized.parameters(1, 3)
  def test_shared_encoder_cache_decodes_like_the_full_cache(self, k):
    cache = self._init_cache(self.encoded, self.enc)
    encoder_part, step_part = t5.split_decode_cache(cache)
    ref = jax.jit(lambda c: decoding.beam_search(
        self._step_fn(decoding.flat_batch_beam_expand(self.encoded, k),
                      decoding.flat_batch_beam_expand(self.enc, k)),
        c, batch_size=_B, beam_size=k, max_decode_len=_MAX))(cache)
    got = jax.jit(lambda c: decoding.beam_search(
        self._shared_step_fn(encoder_part), c, batch_size=_B, beam_size=k,
        max_decode_len=_MAX))(step_part)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-5)
    greedy = jax.jit(lambda c: decoding.greedy_decode(
        self._shared_step_fn(encoder_part), c, batch_size=_B,
        max_decode_len=_MAX))(step_part)
    np.testing.assert_array_equal(greedy[0], self._argmax_without_cache())

  def _greedy_and_speculative(self, draft_source, k, length):
    """(greedy, speculative) results over caches of `length` (+ k + 1)."""
    def init(n):
      return self.model.apply(
          {'params': self.params}, self.encoded, self.enc,
          jnp.zeros((_B, n), jnp.int32), decode=True, max_decode_length=n,
          method='decode', mutable=['cache'])[1]['cache']

    def step_fn(n):
      def step(tokens, cache):
        logits, new = self.model.apply(
            {'params': self.params, 'cache': cache}, self.encoded, self.enc,
            tokens, decode=True, max_decode_length=n, method='decode',
            mutable=['cache'])
        return logits, new['cache']
      return step

    greedy = jax.jit(lambda c: decoding.greedy_decode(
        step_fn(length), c, batch_size=_B, max_decode_len=length))(
            init(length))
    spec = jax.jit(lambda c, src: decoding.speculative_greedy_decode(
        step_fn(length + k + 1), c, draft_source=src, draft_len=k,
        batch_size=_B, max_decode_len=length))(
            init(length + k + 1), jnp.asarray(draft_source, jnp.int32))
    return greedy, spec

  @parameterized.parameters(1, 3, 8)
  def test_speculative_equals_greedy_whatever_the_draft(self, k):
    length = 12
    greedy, _ = self._greedy_and_speculative(np.zeros((_B, 1)), k, length)
    out = np.asarray(greedy[0])
    rng = np.random.RandomState(k)
    sources = {
        'oracle': out,
        'random': rng.randint(2, 128, (_B, 10)),
        # The output with a token dropped and a foreign one inserted, as a
        # prompt relates to its marked copy.
        'edited': np.concatenate([out[:, :2], np.full((_B, 1), 127),
                                  out[:, 3:]], axis=1),
    }
    steps = {}
    for name, src in sources.items():
      seqs, score, n = self._greedy_and_speculative(src, k, length)[1]
      np.testing.assert_array_equal(seqs, out, err_msg=name)
      np.testing.assert_allclose(score, greedy[1], atol=1e-4, err_msg=name)
      steps[name] = int(n)
    # The longest sequence (EOS included).
    emitted = max(int(np.argmax(row == 1)) + 1 if 1 in row else length
                  for row in out)
    # Every step emits at least one token; a perfect draft K + 1.
    self.assertLessEqual(steps['random'], emitted)
    self.assertEqual(steps['oracle'], -(-emitted // (k + 1)), steps)
    self.assertLess(steps['edited'], steps['random'] if k > 1 else 99)

  def test_draft_pointer_follows_copies_and_skips_marks(self):
    src = jnp.asarray([[5, 6, 7, 6, 1, 0]], jnp.int32)
    np.testing.assert_array_equal(
        decoding.prompt_draft(src, jnp.asarray([3]), 4), [[6, 1, 0, 0]])
    ptr = functools.partial(decoding.advance_pointer, src, jnp.asarray([0]))
    # Two drafts accepted, then the model's own mark (9): stay after them.
    np.testing.assert_array_equal(ptr(jnp.asarray([2]), jnp.asarray([9])),
                                  [2])
    # The next prompt token: move past it.
    np.testing.assert_array_equal(ptr(jnp.asarray([2]), jnp.asarray([7])),
                                  [3])
    # A repeated token matches its first occurrence after the accepted ones.
    np.testing.assert_array_equal(ptr(jnp.asarray([2]), jnp.asarray([6])),
                                  [4])
    # A skipped word: the copy resumes after the later token.
    np.testing.assert_array_equal(ptr(jnp.asarray([0]), jnp.asarray([7])),
                                  [3])
    # Padding never matches.
    np.testing.assert_array_equal(ptr(jnp.asarray([5]), jnp.asarray([0])),
                                  [5])
    # Only `window` positions from the draft on are searched: a word the
    # model inserts that the prompt uses further on is its own, and the
    # copy stays put.
    np.testing.assert_array_equal(
        ptr(jnp.asarray([0]), jnp.asarray([7]), window=2), [0])
    np.testing.assert_array_equal(
        ptr(jnp.asarray([1]), jnp.asarray([1]), window=3), [1])
    np.testing.assert_array_equal(
        ptr(jnp.asarray([1]), jnp.asarray([1]), window=4), [5])

  def test_speculative_rejects_bad_arguments(self):
    step = lambda t, c: (jnp.zeros(t.shape + (4,)), c)
    with self.assertRaisesRegex(ValueError, 'draft_len=0'):
      decoding.speculative_greedy_decode(
          step, {}, draft_source=jnp.zeros((2, 3), jnp.int32), draft_len=0,
          batch_size=2, max_decode_len=4)
    with self.assertRaisesRegex(ValueError, r'expected \[2, source_length\]'):
      decoding.speculative_greedy_decode(
          step, {}, draft_source=jnp.zeros((3, 3), jnp.int32), draft_len=2,
          batch_size=2, max_decode_len=4)


class ModelDecodeTest(parameterized.TestCase):
  """`RAHFModel._decode` against beam search over a per-beam full cache."""

  @parameterized.parameters(1, 2)
  def test_decode_matches_the_reference_formulation(self, k):
    cfg = test_utils.tiny_config()
    model = model_lib.RAHFModel(cfg)
    params = test_utils.init_params(cfg, seed=1)
    # Sharpen the tied / untied output layer so the argmax is far from ties.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 8.0 if 'logits_dense' in jax.tree_util.keystr(
            path) else x, params)
    rng = np.random.RandomState(3)
    encoded = jnp.asarray(rng.randn(_B, _LE, cfg.t5.emb_dim), jnp.float32)
    mask = jnp.asarray(np.arange(_LE)[None] < np.array([[_LE], [_LE - 2]]))

    def reference(p):
      apply = functools.partial(model.module.apply, method=rahf.RAHF.decode,
                                decode=True, max_decode_length=_MAX,
                                mutable=['cache'])
      cache = apply({'params': p}, encoded, mask,
                    jnp.zeros((_B, _MAX), jnp.int32))[1]['cache']
      enc_k = decoding.flat_batch_beam_expand(encoded, k)
      mask_k = decoding.flat_batch_beam_expand(mask, k)

      def step(tokens, c):
        logits, new = apply({'params': p, 'cache': c}, enc_k, mask_k, tokens)
        return logits[:, -1], new['cache']
      return decoding.beam_search(step, cache, batch_size=_B, beam_size=k,
                                  max_decode_len=_MAX)[0][:, 0]

    # pylint: disable-next=protected-access
    got = jax.jit(lambda p: model._decode(p, encoded, mask, _MAX, k))(params)
    np.testing.assert_array_equal(got, jax.jit(reference)(params))
    if k == 1:
      # Speculative greedy decoding, drafting from the greedy output with its
      # second token replaced: the same tokens.
      src = np.asarray(got).copy()
      src[:, 1] = 5
      # pylint: disable-next=protected-access
      spec = jax.jit(lambda p, s: model._decode(
          p, encoded, mask, _MAX, 1, draft_tokens=3, draft_source=s))(
              params, jnp.asarray(src))
      np.testing.assert_array_equal(spec, got)
      with self.assertRaisesRegex(ValueError, 'greedy decoding only'):
        # pylint: disable-next=protected-access
        model._decode(params, encoded, mask, _MAX, 2, draft_tokens=3,
                      draft_source=jnp.asarray(src))

  def test_speculative_with_scanned_layers(self):
    # nn.scan stacks the per-layer cache indices: [layers] -> [layers, B].
    cfg = test_utils.tiny_config()
    cfg = dataclasses.replace(cfg, t5=dataclasses.replace(cfg.t5, scan=True))
    model = model_lib.RAHFModel(cfg)
    params = model_lib.unbox(
        model.get_initial_variables(jax.random.key(2)))['params']
    rng = np.random.RandomState(4)
    encoded = jnp.asarray(rng.randn(_B, _LE, cfg.t5.emb_dim), jnp.float32)
    mask = jnp.ones((_B, _LE), bool)
    # pylint: disable=protected-access
    greedy = jax.jit(lambda p: model._decode(p, encoded, mask, _MAX, 1))(
        params)
    spec, calls = jax.jit(lambda p, s: model._decode(
        p, encoded, mask, _MAX, 1, draft_tokens=2, draft_source=s,
        return_steps=True))(params, greedy)
    # pylint: enable=protected-access
    np.testing.assert_array_equal(spec, greedy)
    self.assertEqual(int(calls), -(-_MAX // 3))  # A perfect draft.


if __name__ == '__main__':
  absltest.main()
