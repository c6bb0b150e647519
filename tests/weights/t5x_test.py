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
"""Tests for richhf_jax.weights.t5x on T5X-format checkpoints written here."""

import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import flax
import jax
import ml_dtypes
import numpy as np
import tensorstore as ts

from richhf_jax import test_utils
from richhf_jax.models import config as config_lib
from richhf_jax.weights import common
from richhf_jax.weights import t5x

_CFG = config_lib.t5_config('tiny')  # T5.1.1 style: gated GELU, untied


def _params(cfg, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32),
                      t5x.abstract_t5_params(cfg))


def write_t5x(root, step, target, *, version=3, wrap=True, state_dict=True,
              gcs=False, bf16_as_uint16=False):
  """Writes `target` as T5X does: msgpack + one zarr array per big param.

  Args:
    root: the model directory.
    step: the checkpoint step (directory `checkpoint_<step>`).
    target: the parameter tree.
    version: the format version written to the msgpack.
    wrap: put the optimizer dict under 'optimizer' (version >= 1).
    state_dict: serialise with flax.serialization.to_bytes, which turns the
      specs' lists into {'0': ..} dicts (else msgpack_serialize, lists kept).
    gcs: write specs the way GCS-written checkpoints have them.
    bf16_as_uint16: store big params as bfloat16 bits in uint16 arrays, as
      versions < 3 did.

  Returns:
    The checkpoint directory.
  """
  ckpt = os.path.join(root, f'checkpoint_{step}')
  os.makedirs(ckpt)

  def leaf(path, arr):
    if arr.ndim < 2:
      return arr  # small params stay inline, as unpartitioned ones do
    name = 'target.' + path.replace('/', '.')
    if bf16_as_uint16:
      arr = arr.astype(ml_dtypes.bfloat16).view(np.uint16)
    chunks = [max(1, s // 2) for s in arr.shape]  # several chunk files
    spec = {'driver': 'zarr', 'dtype': arr.dtype.name,
            'kvstore': {'driver': 'file', 'path': name},
            'metadata': {'chunks': chunks, 'compressor': {'id': 'gzip'},
                         'shape': list(arr.shape)}}
    local = dict(spec, kvstore={'driver': 'file',
                                'path': os.path.join(ckpt, name)})
    pending.append((ts.open(local, create=True), arr))
    if gcs:
      spec['kvstore'] = {'driver': 'gcs', 'bucket': 't5x-dummy-bucket'}
      spec['path'] = name
    return spec

  pending = []  # (open future, array): written concurrently below
  flat = common.flatten(target)
  tree = common.unflatten({p: leaf(p, a) for p, a in flat.items()})
  for write in [opened.result().write(arr) for opened, arr in pending]:
    write.result()
  # Adafactor-like slots, which the loader must skip.
  slots = common.unflatten({p: {'v_row': np.zeros(a.shape[:1], np.float32),
                                'v_col': np.zeros(a.shape[-1:], np.float32)}
                            for p, a in flat.items()})
  state = {'target': tree,
           'state': {'step': np.int32(step), 'param_states': slots}}
  contents = {'version': version, 'optimizer': state} if wrap else state
  serialize = (flax.serialization.to_bytes if state_dict
               else flax.serialization.msgpack_serialize)
  with open(os.path.join(ckpt, 'checkpoint'), 'wb') as f:
    f.write(serialize(contents))
  return ckpt


class T5XTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.params = _params(_CFG)

  def tearDown(self):
    shutil.rmtree(self.root)
    super().tearDown()

  def assertTreeEqual(self, got, want):
    got, want = common.flatten(got), common.flatten(want)
    self.assertEqual(sorted(got), sorted(want))
    for k in want:
      self.assertEqual(got[k].dtype, np.float32, k)
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)

  @parameterized.named_parameters(
      ('v3_state_dict_lists', dict()),
      ('v3_plain_lists', dict(state_dict=False)),
      ('v0_unwrapped', dict(version=0, wrap=False)),
      ('gcs_specs', dict(gcs=True)),
  )
  def test_reads_back_the_params(self, kwargs):
    ckpt = write_t5x(self.root, 100, self.params, **kwargs)
    self.assertTrue(os.path.isdir(os.path.join(
        ckpt, 'target.encoder.layers_0.attention.query.kernel')))
    self.assertTreeEqual(t5x.load(ckpt, _CFG), self.params)

  def test_version_2_bfloat16_stored_as_uint16(self):
    ckpt = write_t5x(self.root, 1, self.params, version=2,
                     bf16_as_uint16=True)
    got = common.flatten(t5x.load(ckpt, _CFG))
    for k, v in common.flatten(self.params).items():
      want = v.astype(ml_dtypes.bfloat16).astype(np.float32) if v.ndim >= 2 \
          else v
      np.testing.assert_array_equal(got[k], want, err_msg=k)

  def test_model_dir_picks_latest_or_given_step(self):
    other = _params(_CFG, seed=1)
    write_t5x(self.root, 10, self.params)
    write_t5x(self.root, 20, other)
    self.assertTreeEqual(t5x.load(self.root, _CFG), other)
    self.assertTreeEqual(t5x.load(self.root, _CFG, step=10), self.params)
    msgpack = os.path.join(self.root, 'checkpoint_10', 'checkpoint')
    self.assertTreeEqual(t5x.load(msgpack, _CFG), self.params)

  def test_merges_into_rahf_beside_other_subtrees(self):
    cfg = test_utils.tiny_config()
    params = _params(cfg.t5)
    tree = t5x.load(write_t5x(self.root, 1, params), cfg.t5)
    abstract = common.abstract_params(cfg)
    merged = common.merge_each(abstract, tree, what='T5X')
    np.testing.assert_array_equal(
        merged['encoder']['layers_1']['mlp']['wo']['kernel'],
        params['encoder']['layers_1']['mlp']['wo']['kernel'])
    self.assertIsInstance(merged['img']['embedding']['kernel'],
                          jax.ShapeDtypeStruct)

  def test_config_mismatch_is_named(self):
    ckpt = write_t5x(self.root, 1, self.params)
    v1_0 = config_lib.t5_config('tiny', mlp_activations=('relu',),
                                logits_via_embedding=True)
    with self.assertRaises(common.WeightsMismatchError) as ctx:
      t5x.load(ckpt, v1_0)
    err = ctx.exception
    self.assertIn('decoder/logits_dense/kernel (64, 128)', err.unexpected)
    self.assertIn('encoder/layers_0/mlp/wi_0/kernel (64, 128)',
                  err.unexpected)
    self.assertIn('encoder/layers_0/mlp/wi/kernel (64, 128)', err.missing)
    self.assertEmpty(err.misshaped)

  def test_missing_array_directory(self):
    ckpt = write_t5x(self.root, 1, self.params)
    shutil.rmtree(os.path.join(ckpt, 'target.decoder.logits_dense.kernel'))
    with self.assertRaisesRegex(FileNotFoundError,
                                'decoder/logits_dense/kernel'):
      t5x.load(ckpt)

  def test_no_checkpoint(self):
    with self.assertRaisesRegex(FileNotFoundError, 'checkpoint_<step>'):
      t5x.load(self.root)


if __name__ == '__main__':
  absltest.main()
