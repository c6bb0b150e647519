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
r"""Trains on GPU hosts: one host directly, several over ssh with a coordinator.

Single host (runs here):
  python launch/gpu.py --topology=8xh100 \
    --gin_file=gin/runs/finetune_richhf.gin --gin=MODEL_DIR="'/ckpt/rahf'" \
    --gin=DATA_DIR="'/data/joined'" --gin=VOCAB_PATH="'/data/spm.model'"

Several hosts (the same checkout and data paths on each, reachable by ssh;
the first host is the JAX coordinator):
  python launch/gpu.py --topology=2x8xh100 --hosts=gpu-a,gpu-b \
    --repo_dir=/home/me/richhf_jax ... [--dry_run]

Every host runs the same train command with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID set; output is streamed here, prefixed
with the host index. Stop: Ctrl-C here sends SIGTERM to the local ssh
clients; to checkpoint and stop the trainers themselves run
`ssh HOST "pkill -TERM -f 'python3* -m richhf_jax.train'"` on each host (each
saves at the next step and exits; rerunning resumes).
"""

import argparse
import shlex
import sys

if __package__ in (None, ''):
  import os  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import topologies
from launch import common
# pylint: enable=g-import-not-at-top,wrong-import-position


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  common.add_train_flags(p)
  p.add_argument('--hosts', default='',
                 help='comma-separated ssh hosts (multi-host topologies); '
                 'the first is the coordinator')
  p.add_argument('--coordinator_port', type=int, default=12345)
  p.add_argument('--repo_dir', default=common.REPO_ROOT,
                 help='this repository on every host')
  return p.parse_args(argv)


def build_plan(args) -> common.Plan:
  """One stage: the train command on every host, in parallel.

  Raises:
    ValueError: not a GPU topology, or the host list does not match it.
  """
  topo = topologies.get_config(args.topology)
  if topo.platform != 'gpu':
    raise ValueError(f'--topology={args.topology} is not a GPU topology; '
                     'use launch/tpu_pod.py or launch/local.py')
  hosts = [h for h in args.hosts.split(',') if h]
  env = {'TF_CPP_MIN_LOG_LEVEL': 2}
  if topo.num_hosts == 1 and not hosts:
    argv = common.train_argv(args.gin_file, args.gin, topo, args.python)
    return [[f'cd {shlex.quote(args.repo_dir)} && '
             f'{common.env_prefix(env)}{shlex.join(argv)}']]
  if len(hosts) != topo.num_hosts:
    raise ValueError(f'--hosts lists {len(hosts)} host(s); topology '
                     f'{args.topology} has {topo.num_hosts}')
  argv = common.train_argv(args.gin_file, args.gin, topo, args.python,
                           distributed='on')
  stage = []
  for i, host in enumerate(hosts):
    host_env = dict(env, JAX_COORDINATOR_ADDRESS=
                    f'{hosts[0]}:{args.coordinator_port}',
                    JAX_NUM_PROCESSES=len(hosts), JAX_PROCESS_ID=i)
    remote = (f'cd {shlex.quote(args.repo_dir)} && '
              f'{common.env_prefix(host_env)}{shlex.join(argv)}')
    stage.append(shlex.join(['ssh', host, remote]))
  return [stage]


def main(argv=None, out=sys.stdout) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return common.execute(build_plan(args), args.dry_run, out)


if __name__ == '__main__':
  sys.exit(main())
