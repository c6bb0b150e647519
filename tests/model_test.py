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
"""Tests for the model wrapper: losses and prediction."""

import dataclasses
import functools

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax.models import rahf


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, params, *inputs):
  return module.apply({'params': params}, *inputs)


class RAHFModelTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = test_utils.tiny_config(heatmap_loss_weight=2.0,
                                     score_loss_weight=0.5,
                                     text_loss_weight=3.0)
    cls.model = model_lib.RAHFModel(cls.cfg)
    # Jitted, not eager: op-by-op dispatch compiles every primitive anew for
    # each shape, several times slower here than one program.
    cls.params = test_utils.init_params(cls.cfg)
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.loss_fn = staticmethod(
        jax.jit(lambda p, b: cls.model.loss_fn(p, b, None)))
    cls.loss, cls.aux = cls.loss_fn(cls.params, cls.batch)

  def forward(self, *inputs):
    return _apply(self.model.module, self.params, *inputs)

  def test_total_is_weighted_sum_of_reported_terms(self):
    aux = jax.device_get(self.aux)
    want = (2.0 * (aux['loss/implausibility_heatmap'] +
                   aux['loss/misalignment_heatmap'])
            + 0.5 * sum(aux[f'loss/{k}_score'] for k in rahf.SCORE_TYPES)
            + 3.0 * aux['loss/text'])
    self.assertAlmostEqual(float(self.loss), float(want), places=4)
    self.assertAlmostEqual(float(self.loss), float(aux['loss/total']),
                           places=5)

  def test_heatmap_term_is_pixel_mse(self):
    out = self.forward(self.batch['image'], self.batch['encoder_input_tokens'],
                       self.batch['decoder_input_tokens'])
    want = np.mean((np.asarray(out['implausibility_heatmap']) -
                    self.batch['implausibility_heatmap']) ** 2)
    self.assertAlmostEqual(float(self.aux['loss/implausibility_heatmap']),
                           float(want), places=5)

  def test_example_weights_mask_head_losses(self):
    # Example 0 weighted out of the heads (a caption-only example): the head
    # terms become example 1's alone, whatever example 0's targets are.
    b2 = dict(self.batch)
    b2['heatmap_weight'] = np.array([[0.0], [1.0]], np.float32)
    b2['score_weight'] = np.array([[0.0], [1.0]], np.float32)
    b3 = dict(b2)
    b3['scores'] = b2['scores'].copy()
    b3['scores'][0] = 0.0
    b3['implausibility_heatmap'] = b2['implausibility_heatmap'].copy()
    b3['implausibility_heatmap'][0] = 1.0
    _, aux2 = self.loss_fn(self.params, b2)
    _, aux3 = self.loss_fn(self.params, b3)
    out = self.forward(self.batch['image'], self.batch['encoder_input_tokens'],
                       self.batch['decoder_input_tokens'])
    want = np.mean((np.asarray(out['scores'])[1, 0] -
                    self.batch['scores'][1, 0]) ** 2)
    self.assertAlmostEqual(float(aux2['loss/plausibility_score']),
                           float(want), places=5)
    for k in ('loss/plausibility_score', 'loss/implausibility_heatmap'):
      self.assertAlmostEqual(float(aux2[k]), float(aux3[k]), places=6)
    self.assertAlmostEqual(float(aux2['loss/text']),
                           float(self.aux['loss/text']), places=5)
    # All weights zero: the head terms vanish instead of dividing by zero.
    b4 = dict(self.batch)
    b4['heatmap_weight'] = np.zeros((2, 1), np.float32)
    _, aux4 = self.loss_fn(self.params, b4)
    self.assertEqual(float(aux4['loss/misalignment_heatmap']), 0.0)

  def test_bad_example_weight_shape_is_named(self):
    b2 = dict(self.batch)
    b2['score_weight'] = np.ones((2, 3), np.float32)
    with self.assertRaisesRegex(ValueError, 'score_weight'):
      self.loss_fn(self.params, b2)  # Raised while tracing.

  def test_text_loss_ignores_padding(self):
    b2 = dict(self.batch)
    tgt = self.batch['decoder_target_tokens'].copy()
    tgt[:, -1] = 5  # a token at a zero-weight position
    b2['decoder_target_tokens'] = tgt
    _, aux2 = self.loss_fn(self.params, b2)
    self.assertAlmostEqual(float(aux2['loss/text']),
                           float(self.aux['loss/text']), places=5)

  def test_predict_batch_matches_forward_and_decodes(self):
    predict = jax.jit(functools.partial(self.model.predict_batch,
                                        max_decode_length=5))
    pred = predict(self.params, self.batch)
    out = self.forward(self.batch['image'], self.batch['encoder_input_tokens'])
    np.testing.assert_allclose(pred['scores'], out['scores'], atol=1e-6)
    np.testing.assert_allclose(pred['implausibility_heatmap'],
                               out['implausibility_heatmap'], atol=1e-6)
    self.assertEqual(pred['decoded'].shape, (2, 5))
    # Greedy decoding equals an argmax loop over full teacher-forced passes
    # (of one length: the decoder is causal, so the zeros after position t
    # do not change the logits at t).
    tokens = np.zeros((2, 6), np.int32)
    for t in range(5):
      logits = self.forward(self.batch['image'],
                            self.batch['encoder_input_tokens'],
                            tokens[:, :5])['logits']
      tokens[:, t + 1] = np.asarray(jnp.argmax(logits[:, t], -1), np.int32)
    want = tokens[:, 1:].copy()
    for row in want:  # positions after EOS are padding.
      hits = np.where(row == model_lib.EOS_ID)[0]
      if len(hits):
        row[hits[0] + 1:] = 0
    np.testing.assert_array_equal(pred['decoded'], want)

  def test_weight_major_steps_decode_the_same_tokens(self):
    # Steps over transposed kernels against steps over the params as
    # stored: same beams, same speculative tokens and calls.
    kernels = jax.jit(self.model.step_kernels)(self.params)
    for kwargs in (dict(num_beams=2), dict(draft_tokens=2)):
      got, want = (jax.jit(functools.partial(
          self.model.predict_batch, max_decode_length=5, **kwargs))(
              self.params, self.batch, step_kernels=k)
                   for k in (kernels, None))
      np.testing.assert_array_equal(got['decoded'], want['decoded'],
                                    err_msg=str(kwargs))
      if 'draft_tokens' in kwargs:
        self.assertEqual(int(got['decoder_calls']),
                         int(want['decoder_calls']))
    with self.assertRaisesRegex(ValueError, 'needs the model params'):
      self.model.step_kernels({'vit': {}})

  def test_check_batch_names_bad_heatmap(self):
    b = dict(self.batch)
    b['misalignment_heatmap'] = np.zeros((2, 8, 8), np.float32)
    with self.assertRaisesRegex(ValueError, 'misalignment_heatmap.*16, 16'):
      model_lib.check_batch(b, self.cfg)
    b = dict(self.batch)
    del b['scores']
    with self.assertRaisesRegex(ValueError, r"missing features \['scores'\]"):
      model_lib.check_batch(b, self.cfg)

  def test_zero_text_weight_drops_text_term(self):
    cfg = dataclasses.replace(self.cfg, text_loss_weight=0.0)
    model = model_lib.RAHFModel(cfg)
    loss, aux = jax.jit(lambda p, b: model.loss_fn(p, b, None))(self.params,
                                                                self.batch)
    self.assertAlmostEqual(
        float(loss), float(self.loss - 3.0 * self.aux['loss/text']), places=4)
    self.assertGreater(float(aux['loss/text']), 0)


if __name__ == '__main__':
  absltest.main()
