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
"""What is alive at the peak of an XLA memory plan.

XLA's `memory_analysis()` (the `xla_*_gib` fields of the benchmarks) gives
one total; this finds the moment of the plan where the most buffer bytes are
alive and lists them by shape and by the instruction that made them, with
the instruction index at which each was made and freed. Make the dump with
XLA_FLAGS before the process starts, e.g.

  XLA_FLAGS='--xla_dump_to=/tmp/dump --xla_dump_hlo_module_re=.*train_step.*
      --xla_dump_hlo_pass_re=NONE' \\
    python benchmarks/train_step.py --config paper --batch 2 --remat \\
      --optimizer adafactor --compile_only
  python benchmarks/xla_peak.py /tmp/dump --module train_step

It reads the `*-buffer-assignment.txt` (buffer sizes and shapes) and
`*-live-range.txt` (the instruction order and each buffer's live interval)
files that CPU and GPU compiles write after optimization. Sizes are those
of the buffer-assignment values; aliased and constant buffers count once
per value, so the peak can differ slightly from XLA's packed total.
"""

import argparse
import collections
import dataclasses
import glob
import json
import os
import re
import sys
from typing import Sequence

_VALUE = re.compile(
    r'^ value: <\d+ (\S+) @0> \(size=(\d+),offset=\d+\): (\S+)')
_INSTRUCTION = re.compile(r'^\s+(\d+):(\S+)\s*$')
_RANGE = re.compile(r'^\s+(\S+)\{[^}]*\}:(\d+)-(\d+)\s*$')
_SUFFIX = '-buffer-assignment.txt'


@dataclasses.dataclass(frozen=True)
class Buffer:
  """One buffer of the plan: its defining instruction and live interval."""
  name: str
  size: int
  shape: str
  start: int
  end: int


@dataclasses.dataclass(frozen=True)
class Peak:
  """The plan's peak: when it happens and what is alive then."""
  module: str
  bytes: int
  index: int
  length: int
  instruction: str
  alive: tuple[Buffer, ...]


def find_module(dump_dir: str, module: str) -> str:
  """The dump's file prefix (`.../module_NNNN.jit_X.<pass>`) for `module`."""
  paths = sorted(p for p in glob.glob(os.path.join(dump_dir, '*' + _SUFFIX))
                 if module in os.path.basename(p))
  if not paths:
    raise FileNotFoundError(
        f'no *{_SUFFIX} for a module matching {module!r} in {dump_dir}; '
        'dump with XLA_FLAGS=--xla_dump_to=DIR before the process starts')
  if len(paths) > 1:
    names = [os.path.basename(p)[:-len(_SUFFIX)] for p in paths]
    raise ValueError(f'{len(paths)} modules match {module!r}: {names}; '
                     'pass a more specific --module')
  return paths[0][:-len(_SUFFIX)]


def read_peak(prefix: str) -> Peak:
  """Parses one module's buffer assignment and live ranges."""
  sizes = {}
  with open(prefix + _SUFFIX) as f:
    for line in f:
      m = _VALUE.match(line)
      if m:
        sizes[m.group(1)] = (int(m.group(2)), m.group(3))
  range_path = prefix + '-live-range.txt'
  if not os.path.exists(range_path):
    raise FileNotFoundError(f'{range_path} is missing (XLA writes it beside '
                            f'the buffer assignment)')
  sequence, buffers, section = [], [], None
  with open(range_path) as f:
    for line in f:
      if 'InstructionSequence:' in line:
        section = 'sequence'
      elif 'BufferLiveRange:' in line:
        section = 'ranges'
      elif section == 'sequence' and (m := _INSTRUCTION.match(line)):
        sequence.append(m.group(2))
      elif section == 'ranges' and (m := _RANGE.match(line)):
        if m.group(1) in sizes:
          size, shape = sizes[m.group(1)]
          buffers.append(Buffer(m.group(1), size, shape, int(m.group(2)),
                                int(m.group(3))))
  if not buffers:
    raise ValueError(f'{prefix}: no buffer live ranges could be read')
  length = max(b.end for b in buffers) + 1
  delta = [0] * (length + 1)
  for b in buffers:
    delta[b.start] += b.size
    delta[b.end + 1] -= b.size
  live, best, index = 0, -1, 0
  for i in range(length):
    live += delta[i]
    if live > best:
      best, index = live, i
  alive = tuple(sorted((b for b in buffers if b.start <= index <= b.end),
                       key=lambda b: -b.size))
  return Peak(os.path.basename(prefix), best, index, length,
              sequence[index] if index < len(sequence) else '', alive)


def by_shape(peak: Peak) -> list[tuple[str, int, int]]:
  """(shape, total bytes, count) of the live buffers, largest first."""
  total, count = collections.Counter(), collections.Counter()
  for b in peak.alive:
    total[b.shape] += b.size
    count[b.shape] += 1
  return [(s, n, count[s]) for s, n in total.most_common()]


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('dump_dir')
  parser.add_argument('--module', default='train_step',
                      help='substring of the module name')
  parser.add_argument('--top', type=int, default=15)
  args = parser.parse_args(argv)
  peak = read_peak(find_module(args.dump_dir, args.module))
  gib = 2 ** 30
  print(f'{peak.module}: peak {peak.bytes / gib:.2f} GiB alive at '
        f'instruction {peak.index} of {peak.length} ({peak.instruction})')
  shapes = by_shape(peak)[:args.top]
  print(f'{"GiB":>7} {"count":>5}  shape')
  for shape, size, n in shapes:
    print(f'{size / gib:7.2f} {n:5d}  {shape}')
  print(f'{"MiB":>7} {"made":>6} {"freed":>6}  buffer')
  for b in peak.alive[:args.top]:
    print(f'{b.size / 2**20:7.0f} {b.start:6d} {b.end:6d}  {b.name} '
          f'{b.shape}')
  print(json.dumps(dict(
      benchmark='xla_peak', module=peak.module,
      peak_gib=round(peak.bytes / gib, 3), index=peak.index,
      length=peak.length, instruction=peak.instruction,
      by_shape=[dict(shape=s, gib=round(n / gib, 3), count=c)
                for s, n, c in shapes])))
  return 0


if __name__ == '__main__':
  sys.exit(main())
