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
"""Two processes emulate two hosts: train, checkpoint, restore on one.

Each worker (this file with argument `worker`) has 2 CPU devices and joins
the other through `jax.distributed` on 127.0.0.1 (gloo CPU collectives, the
default in this JAX). Together they form a 4-device data-parallel mesh, feed
their host-local halves of each global batch, train 3 steps and save a
checkpoint. A third, single-device process then restores that checkpoint and
also trains the same 3 steps alone on the whole batches.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEPS = 3


def _env(num_devices: int) -> dict[str, str]:
  env = dict(os.environ)
  # Keeps the suite's flags (tests/conftest.py: no LLVM optimizations).
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={num_devices}'
                      ).strip()
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_COMPILATION_CACHE_DIR'] = os.environ.get(
      'RICHHF_JAX_TEST_CACHE', os.path.join(_ROOT, '.cache', 'jax'))
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env['PYTHONPATH'] = _ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _setup():
  """The tiny model, its train config and the global batches."""
  # pylint: disable=g-import-not-at-top
  from richhf_jax import test_utils
  from richhf_jax import trainer as trainer_lib
  # pylint: enable=g-import-not-at-top
  cfg = test_utils.tiny_config()
  # eps=1: compare gradients, not Adam's amplified rounding (see
  # sharding_test).
  tc = trainer_lib.TrainConfig(num_steps=_STEPS, batch_size=4,
                               learning_rate=0.1, warmup_steps=1,
                               schedule='constant', eps=1.0, log_every=1,
                               checkpoint_every=_STEPS)
  batches = [test_utils.fake_batch(cfg, batch_size=4, seed=s)
             for s in range(_STEPS)]
  return cfg, tc, batches


def _barrier(name: str) -> None:
  """Waits for both processes through the coordination service.

  On this shared 2-core machine one process may compile tens of seconds
  longer than the other; gloo gives a new communicator only 30 s to see all
  processes, the coordination service's barrier waits as long as asked.
  """
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  distributed.global_state.client.wait_at_barrier(name, 600_000)


def _worker(process_id: int, port: int, model_dir: str) -> None:
  """One of the two hosts: train, checkpoint, dump params (process 0)."""
  # pylint: disable=g-import-not-at-top
  from richhf_jax import partitioning
  assert partitioning.initialize_distributed(
      'on', f'127.0.0.1:{port}', 2, process_id)
  import flax
  import jax
  from jax.experimental import multihost_utils
  from richhf_jax import checkpoints
  from richhf_jax import model as model_lib
  from richhf_jax import trainer as trainer_lib
  # pylint: enable=g-import-not-at-top
  assert (jax.process_count(), jax.device_count(),
          jax.local_device_count()) == (2, 4, 2)
  cfg, tc, batches = _setup()
  tr = trainer_lib.Trainer(model_lib.RAHFModel(cfg), tc, 6, 7)
  tr.init_state()
  # This host's rows of each global batch, as its input pipeline would
  # read them (seqio shards by process).
  index_map = tr.batch_sharding.addressable_devices_indices_map((4,))
  rows = sorted({r for idx in index_map.values()
                 for r in range(*idx[0].indices(4))})
  local = [{k: v[rows] for k, v in b.items()} for b in batches]
  first = tr.put_batch(local[0])
  tr.compile({k: jax.ShapeDtypeStruct(v.shape, v.dtype)
              for k, v in first.items()})
  _barrier('compiled')
  losses = []
  tr.train(iter(local), checkpoints.Checkpointer(model_dir), {'step': 0},
           log_fn=losses.append)
  params = multihost_utils.process_allgather(tr.state.params, tiled=True)
  if jax.process_index() == 0:
    flat = flax.traverse_util.flatten_dict(params, sep='/')
    np.savez(os.path.join(model_dir, 'params.npz'), **flat)
  print('RESULT ' + json.dumps({'rows': rows, 'logs': losses,
                                'process': jax.process_index()}), flush=True)
  multihost_utils.sync_global_devices('done')


def _restorer(model_dir: str) -> None:
  """One process, one device: restore the checkpoint; retrain alone."""
  # pylint: disable=g-import-not-at-top
  import flax
  import jax
  from richhf_jax import checkpoints
  from richhf_jax import model as model_lib
  from richhf_jax import trainer as trainer_lib
  # pylint: enable=g-import-not-at-top
  assert jax.device_count() == 1
  cfg, tc, batches = _setup()
  tr = trainer_lib.Trainer(model_lib.RAHFModel(cfg), tc, 6, 7)
  meta = tr.restore_state(checkpoints.Checkpointer(model_dir))
  flat = flax.traverse_util.flatten_dict(jax.device_get(tr.state.params),
                                         sep='/')
  saved = np.load(os.path.join(model_dir, 'params.npz'))
  diff = max(float(np.max(np.abs(flat[k] - saved[k]))) for k in flat)
  fresh = trainer_lib.Trainer(model_lib.RAHFModel(cfg), tc, 6, 7)
  fresh.init_state()
  logs = []
  fresh.train(iter(batches), None, None, log_fn=logs.append)
  alone = flax.traverse_util.flatten_dict(
      jax.device_get(fresh.state.params), sep='/')
  rel = max(float(np.max(np.abs(alone[k] - saved[k]))
                  / max(float(np.max(np.abs(saved[k]))), 1e-3)) for k in flat)
  print('RESULT ' + json.dumps({
      'step': meta['step'], 'num_params': len(flat),
      'num_saved': len(saved.files), 'max_restore_diff': diff,
      'single_process_rel_diff': rel, 'logs': logs}), flush=True)


def _result(proc_out: str) -> dict:
  lines = [l for l in proc_out.splitlines() if l.startswith('RESULT ')]
  return json.loads(lines[-1][len('RESULT '):]) if lines else {}


def _logged_losses(lines: list[str]) -> list[str]:
  """The `loss=` values (4 decimals) of the console step lines."""
  return [l.split(' loss=')[1].split()[0] for l in lines if ' loss=' in l]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class MultiProcessTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = tempfile.mkdtemp()
    port = str(_free_port())
    me = os.path.abspath(__file__)
    procs = [subprocess.Popen(
        [sys.executable, me, 'worker', str(i), port, cls.model_dir],
        env=_env(2), cwd=_ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
      if p.returncode:
        raise AssertionError(f'worker failed ({p.returncode}):\n'
                             f'{out[-5000:]}')
    cls.workers = [_result(o) for o in outs]
    proc = subprocess.run([sys.executable, me, 'restore', cls.model_dir],
                          env=_env(1), cwd=_ROOT, text=True,
                          capture_output=True, timeout=600, check=False)
    if proc.returncode:
      raise AssertionError(f'restore failed ({proc.returncode}):\n'
                           f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    cls.restored = _result(proc.stdout)

  def test_each_host_fed_its_half_of_the_batch(self):
    rows = sorted(r for w in self.workers for r in w['rows'])
    self.assertEqual(rows, [0, 1, 2, 3])
    self.assertEqual(sorted(w['process'] for w in self.workers), [0, 1])

  def test_only_process_zero_logs(self):
    logs = {w['process']: w['logs'] for w in self.workers}
    self.assertEqual(logs[1], [])
    self.assertTrue(any(l.startswith(f'step {_STEPS}/{_STEPS}')
                        for l in logs[0]), logs[0])

  def test_restoring_on_one_process_gives_the_same_params(self):
    self.assertEqual(self.restored['step'], _STEPS)
    self.assertEqual(self.restored['num_params'], self.restored['num_saved'])
    self.assertEqual(self.restored['max_restore_diff'], 0.0)

  def test_two_hosts_train_like_one(self):
    self.assertLess(self.restored['single_process_rel_diff'], 1e-5)
    main = [w for w in self.workers if w['process'] == 0][0]
    alone = _logged_losses(self.restored['logs'])
    self.assertLen(alone, _STEPS)
    self.assertEqual(_logged_losses(main['logs']), alone)


if __name__ == '__main__':
  if sys.argv[1:2] == ['worker']:
    _worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
  elif sys.argv[1:2] == ['restore']:
    _restorer(sys.argv[2])
  else:
    absltest.main()
