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
"""Runs a benchmark set, one case per process, and collects the JSON lines.

`make bench` runs the `cpu` set. Each case is a separate process, so each
peak RSS is that case's own high-water mark and no compiled program is
shared. The cases' JSON lines go to --out (JSONL, one line per case, plus
the case's command and wall time), and a summary table is printed.

Sets, with their wall time on the 2-core development CPU:

  quick  small config only: train b1, inference b1, full inference b1,
         decoding b1, head FLOPs (~6 min).
  cpu    `quick` plus: small train b2 (1 step), b4 (compiled only),
         augmented train (1 step) and inference b1, small inference b2/b4
         and efficient head; paper config inference b1 (port and efficient
         heads), augmented inference b1, full inference b1, decoding b1
         (greedy, and speculative with one mark per 64 tokens), and the
         paper train step compiled only (`--compile_only`: FLOPs
         and XLA's memory plan) at b1, b2, b2 with remat and b4 with remat
         (24.3 min, 2026-11-30). Timed paper train steps are in `full`
         (a step takes about a minute at b1 and four at b2 with remat,
         Adafactor and the heads over slices, plus the compilations).
  full   `cpu` plus timed paper train steps (b1; b2 with remat), a timed
         small b4 step, the small train step with the efficient head, and
         the input pipeline.

--budget_min stops starting new cases once the budget is spent (the skipped
cases are listed); --timeout_min bounds each case.

  python benchmarks/run_all.py [--set cpu] [--out /tmp/richhf_bench.jsonl]
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (script, arguments); each entry is one process.
QUICK = [
    ('train_step.py', '--config small --batch 1 --steps 1'),
    ('inference.py', '--config small --batch 1 --steps 3'),
    ('full_inference.py', '--config small --batch 1 --steps 2'),
    ('decoding.py', '--config small --batch 1 --steps 3'),
    ('head_flops.py', '--config paper,small'),
]
CPU = QUICK + [
    ('train_step.py', '--config small --batch 2 --steps 1 --warmup 0'),
    ('train_step.py', '--config small --batch 4 --compile_only'),
    ('train_step.py', '--config small --batch 1 --variant augmented '
                      '--steps 1 --warmup 0'),
    ('inference.py', '--config small --batch 2 --steps 2'),
    ('inference.py', '--config small --batch 4 --steps 2'),
    ('inference.py', '--config small --batch 1 --variant augmented '
                     '--steps 2'),
    ('inference.py', '--config small --batch 1 --heatmap_head efficient '
                     '--steps 3'),
    ('train_step.py', '--config paper --batch 1 --compile_only'),
    ('train_step.py', '--config paper --batch 2 --compile_only'),
    ('train_step.py', '--config paper --batch 2 --remat --compile_only'),
    # The memory-target configuration: remat, Adafactor, heatmap heads over
    # slices of the batch.
    ('train_step.py', '--config paper --batch 2 --remat --optimizer adafactor '
                      '--heatmap_batch_chunks 2 --compile_only'),
    ('train_step.py', '--config paper --batch 4 --remat --optimizer adafactor '
                      '--heatmap_batch_chunks 4 --compile_only'),
    ('inference.py', '--config paper --batch 1 --steps 2'),
    ('inference.py', '--config paper --batch 1 --heatmap_head efficient '
                     '--steps 2'),
    ('inference.py', '--config paper --batch 1 --variant augmented '
                     '--steps 1'),
    ('full_inference.py', '--config paper --batch 1 --steps 1'),
    # Greedy, and speculative with one keyword mark in the 64 tokens (about
    # a demo-trained model's rate of rejected drafts; docs/performance.md).
    ('decoding.py', '--config paper --batch 1 --steps 3 --draft_tokens 7 '
                    '--draft marked --marks 1'),
]
FULL = CPU + [
    ('train_step.py', '--config paper --batch 1 --steps 1'),
    ('train_step.py', '--config paper --batch 2 --remat --optimizer adafactor '
                      '--heatmap_batch_chunks 2 --steps 1 --warmup 0'),
    ('train_step.py', '--config small --batch 4 --steps 1'),
    ('train_step.py', '--config small --batch 1 --heatmap_head efficient '
                      '--steps 2'),
    ('input_pipeline.py', '--steps 10'),
]
SETS = {'quick': QUICK, 'cpu': CPU, 'full': FULL}

SUMMARY = ('benchmark', 'config', 'variant', 'heatmap_head', 'batch', 'remat',
           'examples_per_sec', 'ms_per_token', 'draft_ms_per_token',
           'sec_per_call', 'compile_sec',
           'gflop_per_example', 'fraction_of_peak', 'peak_memory_gib')


def json_lines(text: str) -> list[dict]:
  """The JSON objects printed one per line in `text`."""
  rows = []
  for line in text.splitlines():
    line = line.strip()
    if line.startswith('{') and line.endswith('}'):
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        pass
  return rows


def run_case(script: str, arguments: str, timeout_s: float,
             extra_env: dict[str, str]) -> tuple[list[dict], float, str]:
  """Runs one benchmark process; returns (rows, seconds, error or '')."""
  cmd = [sys.executable, os.path.join(HERE, script)] + arguments.split()
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **extra_env},
                          check=False)
  except subprocess.TimeoutExpired:
    return [], time.perf_counter() - t0, f'timed out after {timeout_s:.0f}s'
  seconds = time.perf_counter() - t0
  if proc.returncode:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return [], seconds, f'exit {proc.returncode}: ' + ' | '.join(tail)
  return json_lines(proc.stdout), seconds, ''


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--set', default='cpu', choices=sorted(SETS))
  parser.add_argument('--out', default='/tmp/richhf_bench.jsonl',
                      help='JSONL file of every case result (overwritten)')
  parser.add_argument('--budget_min', type=float, default=30.0,
                      help='start no case after this many minutes')
  parser.add_argument('--timeout_min', type=float, default=12.0,
                      help='per-case limit in minutes')
  parser.add_argument('--only', default='',
                      help='run only cases whose command contains this text')
  args = parser.parse_args(argv)
  todo = [c for c in SETS[args.set] if args.only in ' '.join(c)]
  t_start = time.perf_counter()
  all_rows, skipped, failed = [], [], []
  with open(args.out, 'w') as out:
    for script, arguments in todo:
      elapsed = (time.perf_counter() - t_start) / 60
      if elapsed > args.budget_min:
        skipped.append(f'{script} {arguments}')
        continue
      print(f'[{elapsed:5.1f} min] {script} {arguments}', file=sys.stderr,
            flush=True)
      rows, seconds, error = run_case(script, arguments,
                                      60 * args.timeout_min,
                                      {'TF_CPP_MIN_LOG_LEVEL': '2'})
      if error:
        failed.append(f'{script} {arguments}: {error}')
        print(f'  FAILED: {error}', file=sys.stderr, flush=True)
      for r in rows:
        r.update(command=f'{script} {arguments}',
                 case_wall_sec=round(seconds, 1))
        out.write(json.dumps(r, sort_keys=True) + '\n')
        out.flush()
      all_rows.extend(rows)
  total = (time.perf_counter() - t_start) / 60
  widths = {c: max([len(c)] + [len(_fmt(r.get(c))) for r in all_rows])
            for c in SUMMARY}
  print(' '.join(c.rjust(widths[c]) for c in SUMMARY))
  for r in all_rows:
    print(' '.join(_fmt(r.get(c)).rjust(widths[c]) for c in SUMMARY))
  print(f'{len(all_rows)} results in {total:.1f} min -> {args.out}')
  for s in skipped:
    print(f'skipped (budget): {s}')
  for f in failed:
    print(f'failed: {f}')
  return 1 if failed else 0


def _fmt(value) -> str:
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


if __name__ == '__main__':
  sys.exit(main())
