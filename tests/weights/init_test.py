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
"""Tests for init checkpoints (`richhf_jax.weights.init`) and their use by
the trainer's resume order."""

import os

import jax
import numpy as np
import pytest

from richhf_jax import checkpoints
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax import train as train_lib
from richhf_jax import trainer as trainer_lib
from richhf_jax.weights import common
from richhf_jax.weights import init as init_lib


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('init')
  config = test_utils.tiny_config()
  export_dir = test_utils.tiny_export(str(tmp / 'export'), config, seed=7)
  exported = model_lib.unbox(model_lib.RAHFModel(config).get_initial_variables(
      jax.random.key(7), 8, 8))['params']
  # A big_vision-style .npz of a ViT: our `img` subtree, '/'-joined keys.
  vit = jax.tree.map(lambda x: np.asarray(x) + 1.0, exported['img'])
  npz = str(tmp / 'vit.npz')
  np.savez(npz, **common.flatten(vit))
  return config, export_dir, exported, vit, npz, tmp


def _leaves(tree):
  return dict(common.flatten(jax.tree.map(np.asarray, tree)))


def test_specs_apply_in_order(setup):
  config, export_dir, exported, vit, npz, _ = setup
  fresh = model_lib.unbox(model_lib.RAHFModel(config).get_initial_variables(
      jax.random.key(0), 8, 8))['params']
  logs = []
  got = init_lib.apply_init_checkpoints(
      fresh, [f'richhf:{export_dir}', f'vit_npz:{npz}'], config, logs.append)
  got, want_img, want_rest = _leaves(got), _leaves(vit), _leaves(exported)
  for k, v in got.items():
    if k.startswith('img/'):
      np.testing.assert_allclose(v, want_img[k[4:]], err_msg=k)
    else:
      np.testing.assert_allclose(v, want_rest[k], err_msg=k)
  assert len(logs) == 2 and 'vit_npz' in logs[1]


def test_bad_specs_are_named(setup):
  config, _, _, _, npz, tmp = setup
  with pytest.raises(ValueError, match='KIND:PATH'):
    init_lib.parse_spec(f'bigvision:{npz}')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    init_lib.parse_spec(f'vit_npz:{tmp}/missing.npz')
  other = test_utils.tiny_config(
      vit=test_utils.tiny_config().vit.__class__(
          **{**test_utils.tiny_config().vit.__dict__, 'width': 32,
             'mlp_dim': 64}))
  fresh = model_lib.unbox(model_lib.RAHFModel(other).get_initial_variables(
      jax.random.key(0), 8, 8))['params']
  with pytest.raises(common.WeightsMismatchError):
    init_lib.apply_init_checkpoints(fresh, [f'vit_npz:{npz}'], other,
                                    lambda s: None)


def test_new_run_starts_from_init_checkpoint(setup):
  config, export_dir, exported, _, _, tmp = setup
  tr = trainer_lib.Trainer(model_lib.RAHFModel(config),
                           trainer_lib.TrainConfig(batch_size=2, num_steps=1),
                           8, 8)
  ckpt = checkpoints.Checkpointer(str(tmp / 'run'), async_save=False)
  position = train_lib._restore_or_init(  # pylint: disable=protected-access
      tr, ckpt, config, lambda s: None, [f'richhf:{export_dir}'])
  assert position == 0
  got, want = _leaves(tr.state.params), _leaves(exported)
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-8,
                               err_msg=k)
  leaf = jax.tree.leaves(tr.state.params)[0]
  assert leaf.sharding == jax.tree.leaves(tr.state_shardings.params)[0]
  ckpt.close()
