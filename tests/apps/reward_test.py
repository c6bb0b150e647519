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
"""Tests for richhf_jax.apps.reward: gradients against finite differences."""

import functools

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import inference
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax.apps import reward as reward_lib

_WEIGHTS = {'plausibility': 1.0, 'aesthetics': 0.5, 'overall': 0.25,
            'implausibility': 2.0}


class RewardTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = test_utils.tiny_config()
    cls.params = test_utils.init_params(cls.cfg, seed=1)
    rng = np.random.default_rng(0)
    cls.image = jnp.asarray(rng.uniform(-1, 1, (32, 32, 3)), jnp.float32)
    tokens = np.zeros((8,), np.int32)
    tokens[:5] = [5, 9, 17, 30, 1]
    cls.tokens = jnp.asarray(tokens)
    fn = jax.jit(functools.partial(reward_lib.reward, config=cls.cfg))
    cls.fn = staticmethod(fn)
    cls.grad = staticmethod(jax.jit(jax.grad(fn, argnums=1)))

  def test_grad_matches_finite_differences(self):
    g = np.asarray(self.grad(self.params, self.image, self.tokens, _WEIGHTS))
    self.assertEqual(g.shape, (32, 32, 3))
    self.assertTrue(np.isfinite(g).all())
    self.assertGreater(np.abs(g).max(), 0)
    rng = np.random.default_rng(1)
    eps = 1e-2
    for _ in range(3):
      v = rng.standard_normal((32, 32, 3)).astype(np.float32)
      v /= np.linalg.norm(v)
      plus = self.fn(self.params, self.image + eps * v, self.tokens, _WEIGHTS)
      minus = self.fn(self.params, self.image - eps * v, self.tokens,
                      _WEIGHTS)
      numeric = (float(plus) - float(minus)) / (2 * eps)
      analytic = float(np.sum(g * v))
      self.assertAlmostEqual(numeric, analytic,
                             delta=0.05 * abs(analytic) + 1e-4)

  def test_value_is_the_weighted_prediction(self):
    module = model_lib.RAHFModel(self.cfg).module
    out = jax.jit(module.apply)({'params': self.params}, self.image[None],
                                self.tokens[None])
    scores = np.asarray(out['scores'][0])
    want = (scores[0] + 0.5 * scores[2] + 0.25 * scores[3]
            - 2.0 * float(out['implausibility_heatmap'][0].mean()))
    got = float(self.fn(self.params, self.image, self.tokens, _WEIGHTS))
    self.assertAlmostEqual(got, want, places=5)
    # A sequence of weights means the same as the mapping.
    vectors = reward_lib._weight_vectors  # pylint: disable=protected-access
    for got, want in zip(vectors([1.0, 0.0, 0.5, 0.25, 2.0, 0.0]),
                         vectors(_WEIGHTS)):
      np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(vectors([1, 2, 3, 4])[1], [0, 0])

  def test_batch_and_other_resolutions(self):
    batch = jnp.stack([self.image, -self.image])
    values = self.fn(self.params, batch, self.tokens, _WEIGHTS)
    self.assertEqual(values.shape, (2,))
    self.assertAlmostEqual(
        float(values[0]),
        float(self.fn(self.params, self.image, self.tokens, _WEIGHTS)),
        places=5)
    # A 48 px image is resized inside the reward as the data pipeline would.
    rng = np.random.default_rng(2)
    big = rng.uniform(-1, 1, (48, 48, 3)).astype(np.float32)
    resized = inference.resize_channels((big + 1) * 127.5, (32, 32)) / 127.5 - 1
    self.assertAlmostEqual(
        float(self.fn(self.params, jnp.asarray(big), self.tokens, _WEIGHTS)),
        float(self.fn(self.params, jnp.asarray(resized), self.tokens,
                      _WEIGHTS)), places=4)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, r"unknown reward weight names "
                                r"\['beauty'\]"):
      reward_lib.reward(self.params, self.image, self.tokens, {'beauty': 1},
                        self.cfg)
    with self.assertRaisesRegex(ValueError, r'shape \(3,\)'):
      reward_lib.reward(self.params, self.image, self.tokens, [1, 2, 3],
                        self.cfg)
    with self.assertRaisesRegex(ValueError, 'image has shape'):
      reward_lib.reward(self.params, self.image[..., :2], self.tokens,
                        _WEIGHTS, self.cfg)
    with self.assertRaisesRegex(ValueError, 'prompt_tokens has shape'):
      reward_lib.reward(self.params, jnp.stack([self.image] * 2),
                        jnp.stack([self.tokens] * 3), _WEIGHTS, self.cfg)


if __name__ == '__main__':
  absltest.main()
