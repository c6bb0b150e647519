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
"""The launchers' `--dry_run` commands and the topology configs."""

import io
import os
import shlex
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

from configs import topologies
from launch import common
from launch import gpu
from launch import local
from launch import tpu_pod

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RUN = ['--gin_file=gin/runs/finetune_richhf.gin',
        "--gin=MODEL_DIR='gs://b/run'"]


def _dry_run(module, argv) -> list[str]:
  out = io.StringIO()
  assert module.main(argv + ['--dry_run'], out) == 0
  return out.getvalue().splitlines()


def _train_argv(line: str) -> list[str]:
  """The `python -m richhf_jax.train ...` words inside a command line."""
  words = shlex.split(line)
  for w in words:  # Nested (ssh / --command=) remote command lines.
    if 'richhf_jax.train' in w and ' ' in w:
      return _train_argv(w.split('=', 1)[1] if w.startswith('--command=')
                         else w)
  i = words.index('richhf_jax.train')
  return words[i - 2:]


class TopologyTest(parameterized.TestCase):

  @parameterized.parameters(*topologies.names())
  def test_mesh_covers_every_device(self, name):
    cfg = topologies.get_config(name)
    self.assertEqual(cfg.mesh.data * cfg.mesh.fsdp * cfg.mesh.model,
                     cfg.num_devices)
    self.assertEqual(cfg.num_devices, cfg.num_hosts * cfg.devices_per_host)

  def test_known_topologies(self):
    v4 = topologies.get_config('v4-32')
    self.assertEqual((v4.num_hosts, v4.num_devices), (4, 16))
    self.assertEqual(v4.tpu.accelerator_type, 'v4-32')
    v5e = topologies.get_config('v5e-64')
    self.assertEqual(v5e.tpu.accelerator_type, 'v5litepod-64')
    self.assertEqual(dict(v5e.mesh), {'data': 16, 'fsdp': 4, 'model': 1})
    self.assertEqual(topologies.get_config('8xh100').num_devices, 8)

  def test_unknown_topology_lists_names(self):
    with self.assertRaisesRegex(ValueError, r"'v9-1'.*'v4-32'"):
      topologies.get_config('v9-1')


class TpuPodTest(absltest.TestCase):

  def test_run_creates_installs_and_trains_on_all_workers(self):
    lines = _dry_run(tpu_pod, ['--name=rahf', '--topology=v4-32',
                               '--project=proj'] + _RUN)
    self.assertLen(lines, 5)
    create, pack, copy, install, train = lines
    # Reuse if it exists, else a queued resource; wait until ACTIVE.
    self.assertIn('gcloud compute tpus tpu-vm describe rahf', create)
    self.assertIn('|| gcloud compute tpus queued-resources create rahf '
                  '--node-id=rahf --accelerator-type=v4-32 '
                  '--runtime-version=tpu-ubuntu2204-base '
                  '--zone=us-central2-b --project=proj', create)
    self.assertIn('= ACTIVE ]', create)
    self.assertTrue(pack.startswith('tar czf /tmp/richhf_jax.tgz'))
    self.assertIn(f'-C {_ROOT} .', pack)
    self.assertEqual(shlex.split(copy), [
        'gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', '/tmp/richhf_jax.tgz',
        'rahf:~/', '--worker=all', '--zone=us-central2-b', '--project=proj'])
    self.assertIn('--worker=all', install)
    self.assertIn("pip install -q -e . 'jax[tpu]'", shlex.split(install)[7])
    self.assertIn('--worker=all', shlex.split(train))
    self.assertEqual(_train_argv(train)[:5], [
        'python3', '-m', 'richhf_jax.train',
        '--gin_file=gin/runs/finetune_richhf.gin',
        '--gin.richhf_jax.TrainConfig.data_parallel=16'])
    self.assertIn("--gin.richhf_jax.train.distributed='on'",
                  _train_argv(train))
    self.assertEqual(_train_argv(train)[-5:], [
        "--gin.MODEL_DIR='gs://b/run'", '2>&1', '|', 'tee', '~/train.log'])

  def test_direct_create_spot_and_no_reuse(self):
    create = _dry_run(tpu_pod, ['--name=x', '--topology=v5e-64',
                                '--no-queued', '--spot', '--no-reuse',
                                '--zone=europe-west4-b'] + _RUN)[0]
    self.assertEqual(shlex.split(create), [
        'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'x',
        '--accelerator-type=v5litepod-64',
        '--version=v2-alpha-tpuv5-lite', '--spot', '--zone=europe-west4-b'])

  def test_stop_sends_sigterm_and_delete_removes_the_slice(self):
    stop = _dry_run(tpu_pod, ['--name=x', '--topology=v4-32', '--action=stop'])
    self.assertLen(stop, 1)
    self.assertIn("--command=pkill -TERM -f 'python3* -m richhf_jax.train' "
                  '|| true', shlex.split(stop[0]))
    delete = _dry_run(tpu_pod, ['--name=x', '--topology=v4-32',
                                '--action=delete'])
    self.assertEqual(shlex.split(delete[0])[:6], [
        'gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'x'])

  def test_refuses_a_gpu_topology(self):
    with self.assertRaisesRegex(ValueError, 'not a TPU topology'):
      _dry_run(tpu_pod, ['--name=x', '--topology=8xh100'] + _RUN)


class GpuTest(absltest.TestCase):

  def test_single_host_runs_here(self):
    lines = _dry_run(gpu, ['--topology=8xh100', '--repo_dir=/r'] + _RUN)
    self.assertLen(lines, 1)
    self.assertTrue(lines[0].startswith('cd /r && TF_CPP_MIN_LOG_LEVEL=2 '))
    self.assertIn("--gin.richhf_jax.train.distributed='off'",
                  _train_argv(lines[0]))

  def test_multi_host_sets_the_coordinator_env(self):
    lines = _dry_run(gpu, ['--topology=2x8xh100', '--hosts=ga,gb',
                           '--repo_dir=/r'] + _RUN)
    self.assertEqual(lines[-1], 'wait')
    self.assertLen(lines, 3)
    for i, line in enumerate(lines[:2]):
      self.assertTrue(line.endswith(' &'))
      words = shlex.split(line[:-2])
      self.assertEqual(words[:2], ['ssh', ['ga', 'gb'][i]])
      remote = words[2]
      self.assertIn('JAX_COORDINATOR_ADDRESS=ga:12345 JAX_NUM_PROCESSES=2 '
                    f'JAX_PROCESS_ID={i} ', remote)
      argv = _train_argv(remote)
      self.assertIn('--gin.richhf_jax.TrainConfig.model_parallel=2', argv)
      self.assertIn("--gin.richhf_jax.train.distributed='on'", argv)

  def test_host_count_must_match(self):
    with self.assertRaisesRegex(ValueError, 'lists 1 host.*has 2'):
      _dry_run(gpu, ['--topology=2x8xh100', '--hosts=ga'] + _RUN)


class LocalTest(absltest.TestCase):

  def test_two_processes_on_localhost(self):
    lines = _dry_run(local, ['--topology=cpu-8', '--processes=2',
                             '--python=python3'] + _RUN)
    self.assertLen(lines, 3)
    for i, line in enumerate(lines[:2]):
      self.assertIn('JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 '
                    f'JAX_NUM_PROCESSES=2 JAX_PLATFORMS=cpu JAX_PROCESS_ID={i}'
                    ' TF_CPP_MIN_LOG_LEVEL=2 XLA_FLAGS=--xla_force_host_'
                    'platform_device_count=4 python3 -m richhf_jax.train',
                    line)
      self.assertIn('--gin_file=gin/local_tiny.gin', _train_argv(line[:-2]))

  def test_the_printed_command_is_what_runs(self):
    # The script's own dry run prints one shell-parsable command.
    out = subprocess.run(
        [sys.executable, 'launch/local.py', '--dry_run', '--python=python3']
        + _RUN, cwd=_ROOT, capture_output=True, text=True, check=True)
    argv = _train_argv(out.stdout.strip())
    self.assertEqual(argv[:4], ['python3', '-m', 'richhf_jax.train',
                                '--gin_file=gin/runs/finetune_richhf.gin'])
    self.assertEqual(argv[4], '--gin_file=gin/local_tiny.gin')

  def test_bad_binding_is_refused(self):
    with self.assertRaisesRegex(ValueError, "--gin 'MODEL_DIR': expected "
                                'NAME=VALUE'):
      common.train_argv(['a.gin'], ['MODEL_DIR'], topologies.get_config())


if __name__ == '__main__':
  absltest.main()
