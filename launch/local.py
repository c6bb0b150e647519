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
r"""Trains on this machine's CPU, optionally emulating devices and hosts.

  python launch/local.py --gin_file=gin/runs/finetune_richhf.gin \
    --gin=MODEL_DIR="'/tmp/rahf'" --gin=DATA_DIR="'demo_out/joined'" \
    --gin=VOCAB_PATH="'demo_out/data/vocab/spm.model'"

`gin/local_tiny.gin` is added after the given gin files (unless
`--no-tiny`). `--topology=cpu-8` runs on 8 fake CPU devices (the mesh of the
topology); `--processes=2` starts that many processes on 127.0.0.1 that talk
through JAX's CPU collectives, as hosts of a pod would (the devices are
split between them). Stop: Ctrl-C sends SIGTERM to the trainers, which
checkpoint and exit.
"""

import argparse
import sys

if __package__ in (None, ''):
  import os  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import shlex

from configs import topologies
from launch import common
# pylint: enable=g-import-not-at-top,wrong-import-position


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  common.add_train_flags(p)
  p.set_defaults(python=sys.executable)
  p.add_argument('--tiny', default=True, action=argparse.BooleanOptionalAction,
                 help='add gin/local_tiny.gin')
  p.add_argument('--processes', type=int, default=1,
                 help='processes emulating hosts on 127.0.0.1')
  p.add_argument('--port', type=int, default=12355,
                 help='coordinator port of a multi-process run')
  return p.parse_args(argv)


def build_plan(args) -> common.Plan:
  """One stage: one train command per emulated host.

  Raises:
    ValueError: not a CPU topology, or devices that do not split evenly
      between the processes.
  """
  topo = topologies.get_config(args.topology)
  if topo.platform != 'cpu':
    raise ValueError(f'--topology={args.topology} is not a CPU topology; '
                     'use launch/tpu_pod.py or launch/gpu.py')
  if args.processes < 1 or topo.num_devices % args.processes:
    raise ValueError(f'--processes={args.processes} must divide the '
                     f'{topo.num_devices} devices of {args.topology}')
  gin_files = list(args.gin_file) + (['gin/local_tiny.gin'] if args.tiny
                                     else [])
  per_process = topo.num_devices // args.processes
  env = {'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': 2}
  if per_process > 1:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={per_process}'
  cd = f'cd {shlex.quote(common.REPO_ROOT)} && '
  if args.processes == 1:
    argv = common.train_argv(gin_files, args.gin, topo, args.python)
    return [[cd + common.env_prefix(env) + shlex.join(argv)]]
  argv = common.train_argv(gin_files, args.gin, topo, args.python,
                           distributed='on')
  stage = []
  for i in range(args.processes):
    proc_env = dict(env, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{args.port}',
                    JAX_NUM_PROCESSES=args.processes, JAX_PROCESS_ID=i)
    stage.append(cd + common.env_prefix(proc_env) + shlex.join(argv))
  return [stage]


def main(argv=None, out=sys.stdout) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return common.execute(build_plan(args), args.dry_run, out)


if __name__ == '__main__':
  sys.exit(main())
