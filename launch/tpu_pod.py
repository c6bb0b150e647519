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
r"""Trains on a Cloud TPU VM pod slice: create or reuse, install, run, stream.

  python launch/tpu_pod.py --name=rahf-v4 --topology=v4-32 \
    --project=my-project --gin_file=gin/runs/finetune_richhf.gin \
    --gin=MODEL_DIR="'gs://bucket/rahf'" --gin=DATA_DIR="'gs://bucket/joined'" \
    --gin=VOCAB_PATH="'gs://bucket/spm.model'" [--dry_run]

Stages (`--action=run`, the default):
  1. create the slice if it does not exist: a queued resource
     (`--queued`, the default; add `--spot` for spot capacity) or a direct
     `tpu-vm create`, then wait until it is ACTIVE/READY;
  2. copy this checkout to every worker (`tpu-vm scp --worker=all`) and
     `pip install` it with jax[tpu];
  3. run the same train command on all workers (`tpu-vm ssh --worker=all`,
     JAX finds the other workers itself: `distributed='on'`), streaming every
     worker's output here and into `~/train.log` on each worker.

Stop a run: `--action=stop` sends SIGTERM to the trainer on every worker,
which writes a checkpoint at the next step and exits (a rerun of
`--action=run` resumes from MODEL_DIR). Ctrl-C here only stops the log
stream's ssh sessions. `--action=delete` deletes the slice (and its queued
resource). `--action=logs` streams `~/train.log` of every worker.
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

ACTIONS = ('run', 'stop', 'delete', 'logs')
_REMOTE_DIR = '~/richhf_jax'
_TARBALL = '/tmp/richhf_jax.tgz'
_EXCLUDES = ('.venv', '.cache', '.git', 'demo_out', '__pycache__')


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  common.add_train_flags(p)
  p.add_argument('--name', required=True, help='TPU VM / queued resource')
  p.add_argument('--project', default='', help='GCP project (default: the '
                 'gcloud config)')
  p.add_argument('--zone', default='', help='default: the topology\'s zone')
  p.add_argument('--action', default='run', choices=ACTIONS)
  p.add_argument('--queued', default=True,
                 action=argparse.BooleanOptionalAction,
                 help='create through a queued resource (default) or '
                 'directly')
  p.add_argument('--spot', action='store_true', help='spot capacity')
  p.add_argument('--reuse', default=True,
                 action=argparse.BooleanOptionalAction,
                 help='skip creation when the slice exists')
  return p.parse_args(argv)


def _gcloud(args, *words) -> str:
  """A `gcloud compute tpus ...` command with zone and project."""
  topo = topologies.get_config(args.topology)
  cmd = ['gcloud', 'compute', 'tpus', *words,
         f'--zone={args.zone or topo.tpu.zone}']
  if args.project:
    cmd.append(f'--project={args.project}')
  return shlex.join(cmd)


def _ssh(args, remote: str) -> str:
  return _gcloud(args, 'tpu-vm', 'ssh', args.name, '--worker=all',
                 f'--command={remote}')


def create_stage(args) -> list[str]:
  """Creates the slice unless it exists (then waits until it is ready)."""
  topo = topologies.get_config(args.topology)
  spot = ['--spot'] if args.spot else []
  if args.queued:
    create = _gcloud(args, 'queued-resources', 'create', args.name,
                     f'--node-id={args.name}',
                     f'--accelerator-type={topo.tpu.accelerator_type}',
                     f'--runtime-version={topo.tpu.runtime_version}', *spot)
    state = _gcloud(args, 'queued-resources', 'describe', args.name,
                    '--format=value(state.state)')
    wait = (f'until [ "$({state})" = ACTIVE ]; do echo waiting for '
            f'{args.name}; sleep 30; done')
  else:
    create = _gcloud(args, 'tpu-vm', 'create', args.name,
                     f'--accelerator-type={topo.tpu.accelerator_type}',
                     f'--version={topo.tpu.runtime_version}', *spot)
    wait = ''
  describe = _gcloud(args, 'tpu-vm', 'describe', args.name,
                     '--format=value(state)')
  if args.reuse:
    line = f'{describe} >/dev/null 2>&1 || {create}'
  else:
    line = create
  return [f'{line} && {wait}' if wait else line]


def install_stages(args) -> list[list[str]]:
  """Packs this checkout, copies it to every worker, installs it there."""
  excludes = ' '.join(f'--exclude={shlex.quote(e)}' for e in _EXCLUDES)
  pack = (f'tar czf {_TARBALL} {excludes} -C {shlex.quote(common.REPO_ROOT)}'
          ' .')
  copy = _gcloud(args, 'tpu-vm', 'scp', _TARBALL, f'{args.name}:~/',
                 '--worker=all')
  install = (f'mkdir -p {_REMOTE_DIR} && tar xzf ~/richhf_jax.tgz -C '
             f'{_REMOTE_DIR} && cd {_REMOTE_DIR} && {args.python} -m pip '
             "install -q -e . 'jax[tpu]'")
  return [[pack], [copy], [_ssh(args, install)]]


def train_stage(args) -> list[str]:
  topo = topologies.get_config(args.topology)
  argv = common.train_argv(args.gin_file, args.gin, topo, args.python,
                           distributed='on')
  env = common.env_prefix({'TF_CPP_MIN_LOG_LEVEL': 2})
  remote = (f'cd {_REMOTE_DIR} && {env}{shlex.join(argv)} 2>&1 | '
            'tee ~/train.log')
  return [_ssh(args, remote)]


def build_plan(args) -> common.Plan:
  """The stages of `args.action`."""
  topo = topologies.get_config(args.topology)
  if topo.platform != 'tpu':
    raise ValueError(f'--topology={args.topology} is not a TPU topology; '
                     'use launch/gpu.py or launch/local.py')
  if args.action == 'stop':
    return [[_ssh(args, "pkill -TERM -f 'python3* -m richhf_jax.train' || "
                  'true')]]
  if args.action == 'logs':
    return [[_ssh(args, 'tail -n 100 -f ~/train.log')]]
  if args.action == 'delete':
    if args.queued:
      return [[_gcloud(args, 'queued-resources', 'delete', args.name,
                       '--force', '--quiet')]]
    return [[_gcloud(args, 'tpu-vm', 'delete', args.name, '--quiet')]]
  return [create_stage(args), *install_stages(args), train_stage(args)]


def main(argv=None, out=sys.stdout) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return common.execute(build_plan(args), args.dry_run, out)


if __name__ == '__main__':
  sys.exit(main())
