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
"""What the launchers share: the train command, plans, dry runs, streaming.

A launcher builds a plan: a list of stages, each a list of shell commands
that run in parallel (one per host); stages run one after the other. With
`--dry_run` the plan is printed (one command per line, parallel commands of
a stage marked `&` and followed by `wait`) and nothing runs.
"""

import argparse
import os
import shlex
import subprocess
import sys
import threading
from typing import Sequence, TextIO

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # Run as `python launch/x.py`.
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import topologies
# pylint: enable=g-import-not-at-top,wrong-import-position

Stage = list[str]
Plan = list[Stage]


def add_train_flags(parser: argparse.ArgumentParser) -> None:
  """Flags every launcher takes: the topology and the training run."""
  parser.add_argument('--topology', default='cpu',
                      help=f'one of {topologies.names()}')
  parser.add_argument('--gin_file', action='append', default=[],
                      help='gin files of the run (repeatable)')
  parser.add_argument('--gin', action='append', default=[],
                      metavar='NAME=VALUE',
                      help="gin binding, e.g. MODEL_DIR=\"'gs://b/run'\" "
                      '(repeatable)')
  parser.add_argument('--python', default='python3',
                      help='python executable on the hosts')
  parser.add_argument('--dry_run', action='store_true',
                      help='print the exact commands and run nothing')


def train_argv(gin_files: Sequence[str], gin_bindings: Sequence[str],
               topology, python: str = 'python3',
               distributed: str = 'off') -> list[str]:
  """argv of `python -m richhf_jax.train` for `topology`.

  The mesh shape comes from the topology config; bindings given later (the
  user's) override it.

  Raises:
    ValueError: no gin file, or a binding without '='.
  """
  if not gin_files:
    raise ValueError('give at least one --gin_file (see gin/runs/)')
  argv = [python, '-m', 'richhf_jax.train']
  argv += [f'--gin_file={f}' for f in gin_files]
  mesh = {'data_parallel': topology.mesh.data,
          'fsdp_parallel': topology.mesh.fsdp,
          'model_parallel': topology.mesh.model}
  argv += [f'--gin.richhf_jax.TrainConfig.{k}={v}' for k, v in mesh.items()]
  argv.append(f"--gin.richhf_jax.train.distributed='{distributed}'")
  for b in gin_bindings:
    if '=' not in b:
      raise ValueError(f'--gin {b!r}: expected NAME=VALUE')
    argv.append(f'--gin.{b}')
  return argv


def env_prefix(env: dict[str, str]) -> str:
  """`K=V K2=V2 ` for a shell command line (sorted, quoted)."""
  return ''.join(f'{k}={shlex.quote(str(v))} ' for k, v in sorted(env.items()))


def format_plan(plan: Plan) -> str:
  """The plan as shell lines (parallel commands end with `&` + `wait`)."""
  lines = []
  for stage in plan:
    if len(stage) == 1:
      lines.append(stage[0])
    else:
      lines += [f'{c} &' for c in stage] + ['wait']
  return '\n'.join(lines)


def _stream(proc: subprocess.Popen, prefix: str, out: TextIO) -> None:
  for line in proc.stdout:
    out.write(f'{prefix}{line}')
    out.flush()


def run_plan(plan: Plan, out: TextIO = sys.stdout) -> int:
  """Runs the stages in order, streaming output; returns the exit status."""
  for stage in plan:
    procs = [subprocess.Popen(c, shell=True, text=True,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for c in stage]
    threads = [threading.Thread(
        target=_stream, args=(p, f'[{i}] ' if len(stage) > 1 else '', out))
               for i, p in enumerate(procs)]
    for t in threads:
      t.start()
    try:
      codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
      for p in procs:  # Forward as a preemption: the run checkpoints.
        p.terminate()
      codes = [p.wait() for p in procs]
    for t in threads:
      t.join()
    bad = [c for c in codes if c]
    if bad:
      return bad[0]
  return 0


def execute(plan: Plan, dry_run: bool, out: TextIO = sys.stdout) -> int:
  if dry_run:
    out.write(format_plan(plan) + '\n')
    return 0
  return run_plan(plan, out)
