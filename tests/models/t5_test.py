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
"""Tests for richhf_jax.models.t5."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import partitioning
from richhf_jax.models import config as config_lib
from richhf_jax.models import t5

_B, _LE, _LD = 2, 6, 5


def _tiny(**overrides):
  return config_lib.t5_config('tiny', **overrides)


def _tokens(seed, shape, vocab=128):
  return jnp.asarray(np.random.RandomState(seed).randint(2, vocab, shape),
                     jnp.int32)


def _flat(tree, is_leaf=None):
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): leaf
          for path, leaf in leaves}


def _abstract(cfg):
  enc = jax.ShapeDtypeStruct((1, 4), jnp.int32)
  dec = jax.ShapeDtypeStruct((1, 3), jnp.int32)
  return jax.eval_shape(t5.T5Transformer(cfg).init, jax.random.key(0), enc,
                        dec)


@functools.lru_cache(maxsize=None)
def _model_and_params(cfg):
  model = t5.T5Transformer(cfg)
  variables = model.init(jax.random.key(0), jnp.ones((1, _LE), jnp.int32),
                         jnp.ones((1, _LD), jnp.int32))
  return model, nn.meta.unbox(variables)['params']


class RelativePositionBucketTest(parameterized.TestCase):

  # Hand-computed from the T5 definition (32 buckets, max distance 128).
  # Bidirectional: 16 buckets per direction, offsets < 8 exact, then
  # 8 + floor(log(n / 8) / log(16) * 8); keys after the query add 16.
  @parameterized.parameters(
      (0, 0), (-1, 1), (-7, 7), (-8, 8), (-16, 10), (-127, 15), (-128, 15),
      (-1000, 15), (1, 17), (7, 23), (8, 24), (16, 26), (500, 31))
  def test_bidirectional(self, rel, bucket):
    self.assertEqual(int(t5.relative_position_bucket(rel, True, 32, 128)),
                     bucket)

  # Causal: 32 buckets, offsets < 16 exact, then
  # 16 + floor(log(n / 16) / log(8) * 16); future keys share bucket 0.
  @parameterized.parameters(
      (0, 0), (5, 0), (-1, 1), (-15, 15), (-16, 16), (-32, 21), (-64, 26),
      (-127, 31), (-128, 31), (-5000, 31))
  def test_causal(self, rel, bucket):
    self.assertEqual(int(t5.relative_position_bucket(rel, False, 32, 128)),
                     bucket)


class T5StructureTest(parameterized.TestCase):

  def test_tiny_param_tree_matches_t5x(self):
    shapes = {k: v.shape
              for k, v in _flat(nn.meta.unbox(_abstract(_tiny()))).items()}
    expected = {
        'params/token_embedder/embedding': (128, 64),
        'params/encoder/relpos_bias/rel_embedding': (4, 32),
        'params/encoder/encoder_norm/scale': (64,),
        'params/decoder/relpos_bias/rel_embedding': (4, 32),
        'params/decoder/decoder_norm/scale': (64,),
        'params/decoder/logits_dense/kernel': (64, 128),
    }
    for i in range(2):
      enc = f'params/encoder/layers_{i}/'
      dec = f'params/decoder/layers_{i}/'
      for ln in ('pre_attention_layer_norm', 'pre_mlp_layer_norm'):
        expected[enc + ln + '/scale'] = (64,)
      for ln in ('pre_self_attention_layer_norm',
                 'pre_cross_attention_layer_norm', 'pre_mlp_layer_norm'):
        expected[dec + ln + '/scale'] = (64,)
      for prefix, attn in ((enc, 'attention'), (dec, 'self_attention'),
                           (dec, 'encoder_decoder_attention')):
        for proj in ('query', 'key', 'value'):
          # T5X stores flat 2-D kernels [embed, heads * head_dim].
          expected[f'{prefix}{attn}/{proj}/kernel'] = (64, 4 * 16)
        expected[f'{prefix}{attn}/out/kernel'] = (4 * 16, 64)
      for prefix in (enc, dec):
        expected[prefix + 'mlp/wi_0/kernel'] = (64, 128)
        expected[prefix + 'mlp/wi_1/kernel'] = (64, 128)
        expected[prefix + 'mlp/wo/kernel'] = (128, 64)
    self.assertEqual(shapes, expected)

  def test_relu_tied_tree(self):
    shapes = _flat(nn.meta.unbox(_abstract(
        _tiny(mlp_activations=('relu',), logits_via_embedding=True))))
    self.assertIn('params/encoder/layers_0/mlp/wi/kernel', shapes)
    self.assertNotIn('params/encoder/layers_0/mlp/wi_0/kernel', shapes)
    self.assertNotIn('params/decoder/logits_dense/kernel', shapes)

  @parameterized.named_parameters(('plain', False), ('scan', True))
  def test_every_param_has_known_logical_axes(self, scan):
    abstract = _abstract(_tiny(scan=scan))
    shapes = _flat(nn.meta.unbox(abstract))
    specs = _flat(nn.get_partition_spec(abstract),
                  is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    self.assertEqual(set(specs), set(shapes))
    for name, spec in specs.items():
      self.assertLen(tuple(spec), len(shapes[name].shape), name)
      self.assertNotIn(None, tuple(spec), name)
      partitioning.check_axis_names(tuple(spec), name)
    key = 'params/encoder/layers_0/attention/query/kernel'
    if scan:
      key = key.replace('layers_0', 'layers')
      self.assertEqual(tuple(specs[key]), ('layers', 'embed', 'joined_kv'))
      self.assertEqual(shapes[key].shape, (2, 64, 64))
    else:
      self.assertEqual(tuple(specs[key]), ('embed', 'joined_kv'))

  # Published sizes: T5.1.1-base 247,577,856 (untied logits), T5-base (1.0)
  # 222,903,552 (HF model cards / t5x). eval_shape allocates nothing.
  @parameterized.parameters(('t5_1_1_base', 247_577_856),
                            ('t5_1_0_base', 222_903_552))
  def test_param_count(self, name, published):
    abstract = _abstract(config_lib.t5_config(name))
    count = sum(x.size for x in jax.tree.leaves(nn.meta.unbox(abstract)))
    self.assertAlmostEqual(count / published, 1.0, delta=0.01)
    self.assertEqual(count, published)

  def test_query_init_folds_in_depth_scaling(self):
    _, params = _model_and_params(_tiny())
    attn = params['encoder']['layers_0']['attention']
    q_std = float(np.std(attn['query']['kernel']))
    k_std = float(np.std(attn['key']['kernel']))
    # fan_in normal: key std 1/sqrt(64); query further / sqrt(head_dim=16).
    self.assertAlmostEqual(k_std, 1 / 8, delta=0.01)
    self.assertAlmostEqual(q_std, 1 / 8 / 4, delta=0.004)


class T5BehaviourTest(parameterized.TestCase):

  def test_rms_layer_norm(self):
    x = jnp.array([[3.0, -4.0]])
    y = t5.LayerNorm(epsilon=0.0).apply(
        {'params': {'scale': jnp.array([1.0, 2.0])}}, x)
    rms = np.sqrt((9 + 16) / 2)
    np.testing.assert_allclose(y, [[3 / rms, -8 / rms]], rtol=1e-6)

  def test_encoder_padding_mask(self):
    cfg = _tiny()
    encoder = t5.T5Encoder(cfg)
    rng = np.random.RandomState(0)
    embedded = jnp.asarray(rng.randn(_B, _LE, 64), jnp.float32)
    mask = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    params = encoder.init(jax.random.key(0), embedded, mask)
    out = encoder.apply(params, embedded, mask)
    changed = embedded.at[0, 4:].set(100.0)
    out2 = encoder.apply(params, changed, mask)
    np.testing.assert_allclose(out[0, :4], out2[0, :4], atol=1e-6)
    np.testing.assert_allclose(out[1], out2[1], atol=1e-6)
    # Sanity: a real position does change the outputs.
    out3 = encoder.apply(params, embedded.at[0, 1].set(100.0), mask)
    self.assertGreater(float(jnp.max(jnp.abs(out3[0, 0] - out[0, 0]))), 1e-3)

  def test_decoder_is_causal(self):
    cfg = _tiny()
    model, params = _model_and_params(cfg)
    enc = _tokens(1, (_B, _LE))
    dec = _tokens(2, (_B, _LD))
    logits = model.apply({'params': params}, enc, dec)
    self.assertEqual(logits.shape, (_B, _LD, 128))
    self.assertEqual(logits.dtype, jnp.float32)
    changed = model.apply({'params': params}, enc, dec.at[:, 3].set(5))
    np.testing.assert_allclose(logits[:, :3], changed[:, :3], atol=1e-6)
    self.assertGreater(float(jnp.max(jnp.abs(logits[:, 3] - changed[:, 3]))),
                       1e-4)

  @parameterized.named_parameters(('plain', False), ('scan', True))
  def test_cached_decoding_matches_full_forward(self, scan):
    cfg = _tiny(scan=scan)
    model, params = _model_and_params(cfg)
    enc = _tokens(3, (_B, _LE)).at[0, -2:].set(0)  # some encoder padding
    dec = _tokens(4, (_B, _LD)).at[:, 0].set(0)  # start token 0
    full = model.apply({'params': params}, enc, dec)
    encoded = model.apply({'params': params}, enc, method='encode')
    _, cache = model.apply({'params': params}, encoded, enc, dec,
                           decode=True, max_decode_length=_LD,
                           method='decode', mutable=['cache'])
    cache = cache['cache']

    @jax.jit
    def step(token, cache):
      logits, new = model.apply(
          {'params': params, 'cache': cache}, encoded, enc, token,
          decode=True, max_decode_length=_LD, method='decode',
          mutable=['cache'])
      return logits, new['cache']

    for i in range(_LD):
      logits, cache = step(dec[:, i:i + 1], cache)
      np.testing.assert_allclose(logits[:, 0], full[:, i], atol=1e-5,
                                 err_msg=f'position {i}')

  def test_decode_needs_max_length(self):
    cfg = _tiny()
    model, params = _model_and_params(cfg)
    enc = _tokens(3, (1, _LE))
    with self.assertRaisesRegex(ValueError, 'max_decode_length'):
      model.apply({'params': params}, enc, enc, decode=True,
                  mutable=['cache'])

  def test_tied_logits_use_scaled_embedding(self):
    cfg = _tiny(mlp_activations=('relu',), logits_via_embedding=True)
    model, params = _model_and_params(cfg)
    enc = _tokens(5, (_B, _LE))
    dec = _tokens(6, (_B, _LD))
    logits, state = model.apply(
        {'params': params}, enc, dec,
        capture_intermediates=lambda m, _: isinstance(m, t5.LayerNorm))
    # The decoder's final (RMS-normed) output, captured at decoder_norm.
    y = state['intermediates']['decoder']['decoder_norm']['__call__'][0]
    table = params['token_embedder']['embedding']
    expected = np.asarray(y) @ np.asarray(table).T / np.sqrt(64)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)

  def test_bfloat16_activations_float32_params_and_logits(self):
    cfg = _tiny(dtype='bfloat16')
    model, params = _model_and_params(cfg)
    for leaf in jax.tree.leaves(params):
      self.assertEqual(leaf.dtype, jnp.float32)
    enc = _tokens(7, (1, _LE))
    encoded = model.apply({'params': params}, enc, method='encode')
    self.assertEqual(encoded.dtype, jnp.bfloat16)
    logits = model.apply({'params': params}, enc, enc[:, :_LD])
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertTrue(np.all(np.isfinite(logits)))

  def test_dropout_is_active_only_when_not_deterministic(self):
    cfg = _tiny(dropout_rate=0.5)
    model, params = _model_and_params(cfg)
    enc = _tokens(8, (1, _LE))
    dec = _tokens(9, (1, _LD))
    a = model.apply({'params': params}, enc, dec)
    b = model.apply({'params': params}, enc, dec)
    c = model.apply({'params': params}, enc, dec, deterministic=False,
                    rngs={'dropout': jax.random.key(0)})
    np.testing.assert_array_equal(a, b)
    self.assertFalse(np.allclose(a, c))


class CachedCrossAttentionTest(parameterized.TestCase):
  """The decode cache keeps the encoder keys / values, projected once."""

  def _setup(self, scan=False):
    cfg = _tiny(scan=scan)
    model, params = _model_and_params(cfg)
    enc = _tokens(8, (_B, _LE)).at[1, -2:].set(0)  # some encoder padding
    encoded = model.apply({'params': params}, enc, method='encode')
    _, cache = model.apply({'params': params}, encoded, enc,
                           jnp.zeros((_B, _LD), jnp.int32), decode=True,
                           max_decode_length=_LD, method='decode',
                           mutable=['cache'])
    return cfg, model, params, enc, encoded, cache['cache']

  def _step(self, model, params, encoded, enc, tokens, cache):
    logits, new = model.apply(
        {'params': params, 'cache': cache}, encoded, enc, tokens,
        decode=True, max_decode_length=_LD, method='decode',
        mutable=['cache'])
    return logits[:, 0], new['cache']

  def test_cache_holds_projected_encoder_keys_and_values(self):
    cfg, _, params, _, encoded, cache = self._setup()
    h, d = cfg.num_heads, cfg.head_dim
    for i in range(cfg.num_decoder_layers):
      layer = cache['decoder'][f'layers_{i}']
      # The self-attention cache keeps its T5X names.
      self.assertEqual(set(layer['self_attention']),
                       {'cached_key', 'cached_value', 'cache_index'})
      # In T5X's layout, [B, heads, head_dim, length].
      for name in ('cached_key', 'cached_value'):
        self.assertEqual(layer['self_attention'][name].shape, (_B, h, d, _LD))
      cross = layer['encoder_decoder_attention']
      self.assertEqual(set(cross), set(t5.ENCODED_CACHE_NAMES))
      kernels = params['decoder'][f'layers_{i}']['encoder_decoder_attention']
      for name, proj in (('encoded_key', 'key'), ('encoded_value', 'value')):
        want = np.einsum('bld,dk->blk', encoded, kernels[proj]['kernel'])
        want = want.reshape(_B, _LE, h, d)
        # Keys [B, H, Lenc, d], values [B, H, d, Lenc].
        want = want.transpose((0, 2, 1, 3) if proj == 'key' else (0, 2, 3, 1))
        np.testing.assert_allclose(cross[name], want, atol=1e-5)

  @parameterized.named_parameters(('plain', False), ('scan', True))
  def test_steps_read_the_cache_not_the_encoder_output(self, scan):
    _, model, params, enc, encoded, cache = self._setup(scan)
    tokens = jnp.zeros((_B, 1), jnp.int32)
    want, new_cache = self._step(model, params, encoded, enc, tokens, cache)
    got, _ = self._step(model, params, jnp.zeros_like(encoded), enc, tokens,
                        cache)
    np.testing.assert_array_equal(got, want)
    # The encoder part is passed through unchanged; the step part moves on.
    before, after = t5.split_decode_cache(cache), t5.split_decode_cache(
        new_cache)
    jax.tree.map(np.testing.assert_array_equal, before[0], after[0])
    def indices(step_part):
      return np.concatenate([np.ravel(v) for k, v in _flat(step_part).items()
                             if k.endswith('cache_index')])
    np.testing.assert_array_equal(indices(after[1]), indices(before[1]) + 1)

  @parameterized.product(scan=(False, True), expand_mask=(False, True))
  def test_beams_share_the_encoder_cache(self, scan, expand_mask):
    # G beams per example read the example's cached keys / values; this
    # equals decoding with everything repeated per beam.
    g = 3
    _, model, params, enc, encoded, cache = self._setup(scan)
    encoder_part, step_part = t5.split_decode_cache(cache)
    axis = 1 if scan else 0
    repeat = lambda x: jnp.repeat(x, g, axis=axis) if x.ndim > axis else x
    tiled_step = jax.tree.map(repeat, step_part)
    tokens = _tokens(9, (_B * g, 1))
    want, want_cache = self._step(
        model, params, jnp.repeat(encoded, g, 0), jnp.repeat(enc, g, 0),
        tokens, t5.merge_decode_cache(jax.tree.map(repeat, encoder_part),
                                      tiled_step))
    mask = jnp.repeat(enc, g, 0) if expand_mask else enc
    got, got_cache = self._step(
        model, params, jnp.repeat(encoded, g, 0) if expand_mask else encoded,
        mask, tokens, t5.merge_decode_cache(encoder_part, tiled_step))
    np.testing.assert_allclose(got, want, atol=1e-5)
    jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5),
                 t5.split_decode_cache(got_cache)[1],
                 t5.split_decode_cache(want_cache)[1])

  def test_query_rows_must_be_a_multiple_of_the_cached_batch(self):
    _, model, params, enc, encoded, cache = self._setup()
    encoder_part, step_part = t5.split_decode_cache(cache)
    step_part = jax.tree.map(
        lambda x: jnp.concatenate([x, x[:1]]) if x.ndim else x, step_part)
    with self.assertRaisesRegex(ValueError, 'multiple'):
      self._step(model, params, encoded, enc,
                 jnp.zeros((_B + 1, 1), jnp.int32),
                 t5.merge_decode_cache(encoder_part, step_part))

  def test_split_and_merge_round_trip(self):
    *_, cache = self._setup()
    encoder_part, step_part = t5.split_decode_cache(cache)
    self.assertTrue(all(k.split('/')[-1] in t5.ENCODED_CACHE_NAMES
                        for k in _flat(encoder_part)))
    self.assertFalse(any(k.split('/')[-1] in t5.ENCODED_CACHE_NAMES
                         for k in _flat(step_part)))
    merged = t5.merge_decode_cache(encoder_part, step_part)
    self.assertEqual(jax.tree.structure(merged), jax.tree.structure(cache))
    jax.tree.map(np.testing.assert_array_equal, merged, cache)


class StepKernelsTest(parameterized.TestCase):
  """Decoding steps over transposed kernels (`t5.STEP_KERNELS`)."""

  @parameterized.named_parameters(('plain', False), ('scan', True))
  def test_step_kernels_are_the_transposed_kernels_steps_read(self, scan):
    cfg = _tiny(scan=scan)
    _, params = _model_and_params(cfg)
    kernels = _flat(t5.step_kernels(params['decoder']))
    want = {k: v for k, v in _flat(params['decoder']).items()
            if k.endswith('/kernel')
            and not k.endswith(('encoder_decoder_attention/key/kernel',
                                'encoder_decoder_attention/value/kernel'))}
    self.assertEqual(sorted(kernels), sorted(want))
    self.assertTrue(any('encoder_decoder_attention/query' in k
                        for k in kernels))
    for k, v in want.items():
      np.testing.assert_array_equal(kernels[k], np.swapaxes(v, -1, -2),
                                    err_msg=k)

  def _decode_steps(self, cfg, params, kernels, blocks):
    """Logits of cached decoding over token blocks [B, t_i], concatenated."""
    model = t5.T5Transformer(cfg)
    enc = _tokens(5, (_B, _LE)).at[1, -1:].set(0)
    encoded = model.apply({'params': params}, enc, method='encode')
    _, cache = model.apply({'params': params}, encoded, enc,
                           jnp.zeros((_B, _LD), jnp.int32), decode=True,
                           max_decode_length=_LD, method='decode',
                           mutable=['cache'])
    cache = cache['cache']
    variables = {'params': params}
    if kernels is not None:
      variables[t5.STEP_KERNELS] = {'decoder': kernels}
    out = []
    for tokens in blocks:
      logits, new = jax.jit(lambda v, c, t: model.apply(
          {**v, 'cache': c}, encoded, enc, t, decode=True,
          max_decode_length=_LD, method='decode', mutable=['cache']))(
              variables, cache, tokens)
      cache = new['cache']
      out.append(logits)
    full = model.apply({'params': params}, enc,
                       jnp.concatenate(blocks, axis=1))
    return jnp.concatenate(out, axis=1), full

  @parameterized.named_parameters(
      ('plain_untied', False, False), ('scan_untied', True, False),
      ('plain_tied', False, True))
  def test_weight_major_steps_match_the_full_forward(self, scan, tied):
    cfg = _tiny(scan=scan, logits_via_embedding=tied)
    _, params = _model_and_params(cfg)
    dec = _tokens(6, (_B, _LD)).at[:, 0].set(0)
    # One token, then a block of three (a speculative call), then one.
    blocks = [dec[:, :1], dec[:, 1:4], dec[:, 4:]]
    steps, full = self._decode_steps(cfg, params,
                                     t5.step_kernels(params['decoder']),
                                     blocks)
    np.testing.assert_allclose(steps, full, atol=1e-5)

  def test_steps_read_the_step_kernels(self):
    # Zeroing the transposed MLP output kernel of layer 0 changes the
    # logits: the steps multiply by the collection, not by the params.
    cfg = _tiny()
    _, params = _model_and_params(cfg)
    kernels = t5.step_kernels(params['decoder'])
    kernels['layers_0']['mlp']['wo']['kernel'] *= 0.0
    dec = _tokens(6, (_B, _LD)).at[:, 0].set(0)
    steps, full = self._decode_steps(cfg, params, kernels, [dec])
    self.assertGreater(float(jnp.max(jnp.abs(steps - full))), 1e-3)

  def test_untransposed_step_kernel_is_rejected(self):
    cfg = _tiny()
    _, params = _model_and_params(cfg)
    kernels = t5.step_kernels(params['decoder'])
    wi = params['decoder']['layers_0']['mlp']
    name = sorted(k for k in wi if k.startswith('wi'))[0]
    kernels['layers_0']['mlp'][name]['kernel'] = wi[name]['kernel']
    dec = _tokens(6, (_B, _LD)).at[:, 0].set(0)
    with self.assertRaisesRegex(ValueError,
                                f'{name}: step kernel .* transposed'):
      self._decode_steps(cfg, params, kernels, [dec])

  def test_weight_major_dot(self):
    x = jnp.asarray(np.random.RandomState(0).randn(2, 3, 4), jnp.float32)
    w = jnp.asarray(np.random.RandomState(1).randn(4, 5), jnp.float32)
    np.testing.assert_allclose(t5.weight_major_dot(x, w.T, jnp.float32),
                               x @ w, rtol=1e-5, atol=1e-5)
    with self.assertRaisesRegex(ValueError, r'\[N, 4\]'):
      t5.weight_major_dot(x, w, jnp.float32)


if __name__ == '__main__':
  absltest.main()
