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
"""The sharded train step equals the single-device step (8 fake devices).

The JAX part runs in a subprocess (this file with argument `worker`) with
`--xla_force_host_platform_device_count=8`, so the rest of the suite keeps
one device. The worker trains the tiny RAHF for 3 steps on one device and on
a 2x2x2 data x fsdp x model mesh from the same init and batches, and prints
a JSON summary.
"""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One mesh that uses every axis at once: one compile of the sharded step.
_MESHES = {
    'single': None,
    'data2_fsdp2_model2': {'data': 2, 'fsdp': 2, 'model': 2},
}
_PROBE = 'encoder/layers_0/mlp/wi_0/kernel'  # [embed=64, mlp=128]


def subprocess_env(num_devices: int) -> dict[str, str]:
  """Environment of a JAX subprocess: fake CPU devices, the test cache."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_'
                      f'device_count={num_devices}').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_COMPILATION_CACHE_DIR'] = os.environ.get(
      'RICHHF_JAX_TEST_CACHE', os.path.join(_ROOT, '.cache', 'jax'))
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env['PYTHONPATH'] = _ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _worker() -> None:
  """Trains on each mesh; prints losses, param diffs and per-device bytes."""
  # pylint: disable=g-import-not-at-top
  import flax
  import jax
  from richhf_jax import model as model_lib
  from richhf_jax import partitioning
  from richhf_jax import test_utils
  from richhf_jax import trainer as trainer_lib
  # pylint: enable=g-import-not-at-top
  assert jax.device_count() == 8, jax.devices()
  cfg = test_utils.tiny_config()
  # Adam turns float rounding noise in (near-)zero gradients (attention key
  # biases have an exactly-zero gradient) into full-size steps whose sign
  # depends on the reduction order. eps=1 makes the update proportional to
  # the gradient moments, so the comparison sees the sharded gradients.
  tc = trainer_lib.TrainConfig(num_steps=3, batch_size=8, learning_rate=0.1,
                               warmup_steps=1, schedule='constant', eps=1.0)
  batches = [test_utils.fake_batch(cfg, batch_size=8, seed=s)
             for s in range(3)]
  out, ref = {}, None
  for name, sizes in _MESHES.items():
    if sizes is None:
      mesh = partitioning.make_mesh(devices=jax.devices()[:1])
    else:
      mesh = partitioning.make_mesh(**sizes)
    tr = trainer_lib.Trainer(model_lib.RAHFModel(cfg), tc, 6, 7, mesh=mesh)
    tr.init_state()
    losses = []
    for b in batches:
      gb = tr.put_batch(b)
      if tr._compiled_step is None:  # pylint: disable=protected-access
        tr.compile({k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                    for k, v in gb.items()})
      losses.append(float(tr.step(gb)['loss/total']))
    params = flax.traverse_util.flatten_dict(
        jax.device_get(tr.state.params), sep='/')
    if ref is None:
      ref = params
    # allclose(rtol=1e-5, atol=1e-7) holds iff this ratio is <= 1 (atol for
    # entries near zero, e.g. biases a few steps from their zero init).
    close = max(float(np.max(np.abs(params[k] - ref[k])
                             / (1e-5 * np.abs(ref[k]) + 1e-7))) for k in ref)
    # What the mesh says one device holds: each dim divided by the sizes
    # of the mesh axes it is sharded over.
    expected = 0
    for x, sh in zip(jax.tree.leaves(tr.state.params),
                     jax.tree.leaves(tr.state_shardings.params)):
      n = x.size
      for axes in sh.spec:
        for a in (axes if isinstance(axes, tuple) else (axes,)):
          if a is not None:
            n //= mesh.shape[a]
      expected += n * x.dtype.itemsize
    probe = flax.traverse_util.flatten_dict(tr.state.params, sep='/')[_PROBE]
    out[name] = {
        'losses': losses, 'allclose_ratio': close,
        'bytes_per_device': tr.param_bytes_per_device(),
        'expected_bytes_per_device': expected,
        'probe_shard_shape': list(probe.addressable_shards[0].data.shape),
        'num_devices': mesh.size,
    }
  print('RESULT ' + json.dumps(out), flush=True)


class ShardingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), 'worker'],
        env=subprocess_env(8), cwd=_ROOT, capture_output=True, text=True,
        timeout=600, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    if proc.returncode or not lines:
      raise AssertionError(f'worker failed ({proc.returncode}):\n'
                           f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    cls.result = json.loads(lines[-1][len('RESULT '):])

  def test_sharded_steps_equal_the_single_device_step(self):
    ref = self.result['single']['losses']
    self.assertLen(ref, 3)
    for name in _MESHES:
      r = self.result[name]
      self.assertEqual(r['num_devices'], 1 if name == 'single' else 8)
      np.testing.assert_allclose(r['losses'], ref, rtol=1e-5, err_msg=name)
      self.assertLessEqual(r['allclose_ratio'], 1.0, name)
    # The steps did train: the losses are not all equal.
    self.assertGreater(np.ptp(ref), 1e-4)

  def test_per_device_parameter_bytes_follow_the_mesh(self):
    single = self.result['single']['bytes_per_device']
    for name in _MESHES:
      r = self.result[name]
      self.assertEqual(r['bytes_per_device'], r['expected_bytes_per_device'],
                       name)
    # FSDP halves every parameter with an `embed` dimension, model
    # parallelism halves the MLP and attention matrices again.
    self.assertLess(self.result['data2_fsdp2_model2']['bytes_per_device'],
                    0.5 * single)
    shapes = {n: r['probe_shard_shape'] for n, r in self.result.items()}
    self.assertEqual(shapes, {'single': [64, 128],
                              'data2_fsdp2_model2': [32, 64]})


if __name__ == '__main__':
  if sys.argv[1:] == ['worker']:
    _worker()
  else:
    absltest.main()
