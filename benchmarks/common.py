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
"""Shared parts of the model benchmarks: configs, timing, FLOPs, memory.

Every model benchmark (`train_step.py`, `inference.py`, `full_inference.py`,
`decoding.py`) builds one of the `CONFIGS` with random parameters (no
checkpoint; shapes from `jax.eval_shape`, values drawn on the host, see
`init_params`), compiles its function ahead of time, times a few calls after
warm-up, and reports per case:

  * examples/s (or ms per token), median and best seconds per call;
  * compile seconds;
  * XLA's FLOP count of the compiled function (`cost_analysis()`), the
    achieved FLOP/s, and that as a fraction of a float32 (or --dtype)
    matrix-multiply peak measured in the same process (`matmul_peak`);
  * peak memory: the process RSS high-water mark on CPU
    (`resource.getrusage`), `peak_bytes_in_use` of the device on
    accelerators. The RSS mark never goes down, so a process that runs
    several cases reports the largest so far; `run_all.py` runs one case
    per process.

Output: a table, then one JSON line per case (`print_report`).

Configurations:
  paper  ViT-L/16 at 384 px + T5 v1.0 base (t5-base) + the `port` heads:
         the public PyTorch port's model, heatmaps 384x384.
  small  ViT-B/16 at 224 px + a 6-layer d=512 T5 v1.0 (t5-small sized) +
         the `port` heads, heatmaps 224x224.
  tiny   `richhf_jax.test_utils.tiny_config` (for smoke tests).

Wiring (--wiring): 'paper' (default; the decoder cross-attends to every
encoder position, 576 image + 64 prompt at the paper configuration) or
'port' (the port's `rahf.PORT_WIRING`: the decoder attends to the 64 prompt
positions, as the port's decoder does; the heads and their FLOPs are the
same).
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import compile_options
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.models import score_head
from richhf_jax.weights import port

CONFIGS = ('paper', 'small', 'tiny')
WIRINGS = ('paper', 'port')
DTYPES = ('float32', 'bfloat16')
# Prompt tokens (encoder) and keyword tokens (decoder) per example.
SEQUENCE_LENGTHS = {'paper': (64, 64), 'small': (64, 64), 'tiny': (8, 8)}
# T5 v1.0 small (HF `t5-small`): the small configuration's fusion encoder.
T5_SMALL_V1_0 = dict(emb_dim=512, num_heads=8, head_dim=64, mlp_dim=2048,
                     num_encoder_layers=6, num_decoder_layers=6)


def model_config(name: str, variant: str = 'multihead',
                 dtype: str = 'float32', remat: bool = False,
                 heatmap_head_preset: str = 'port',
                 heatmap_batch_chunks: int = 1,
                 wiring: str = 'paper') -> rahf.RAHFConfig:
  """The RAHF configuration `name` (see the module docstring).

  Args:
    name: one of CONFIGS.
    variant: 'multihead' or 'augmented'.
    dtype: activation dtype of every part ('float32' or 'bfloat16').
    remat: rematerialize ViT blocks, T5 layers and heatmap upsampling blocks
      in the backward pass.
    heatmap_head_preset: heatmap head preset for 'paper' and 'small' ('port'
      or 'efficient'); 'tiny' always uses the tiny heads.
    heatmap_batch_chunks: `HeatmapHeadConfig.batch_chunks` (the heatmap
      heads run over this many sequential slices of the batch).
    wiring: 'paper' (the `RAHFConfig` defaults: the decoder cross-attends
      to every encoder position) or 'port' (`rahf.PORT_WIRING`: the ViT
      class token fused too, the decoder attends to the prompt positions
      only, no padding mask; the port's ViT semantics, exact GELU and
      layer-norm epsilon 1e-12), as the port's model computes.

  Raises:
    ValueError: an unknown name, dtype or wiring.
  """
  if name not in CONFIGS:
    raise ValueError(f'unknown benchmark config {name!r}; expected one of '
                     f'{CONFIGS}')
  if wiring not in WIRINGS:
    raise ValueError(f'unknown wiring {wiring!r}; expected one of {WIRINGS}')
  if dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
  if name == 'tiny':
    base = test_utils.tiny_config(variant=variant)
    vit, t5 = base.vit, base.t5
    hm, sc = base.heatmap_head, base.score_head
  else:
    if name == 'paper':
      vit = config_lib.vit_config('L/16', image_size=384)
      t5 = config_lib.t5_config('t5_1_0_base')
    else:
      vit = config_lib.vit_config('B/16', image_size=224)
      t5 = config_lib.t5_config('t5_1_0_base', **T5_SMALL_V1_0)
    hm = heatmap_head.get_heatmap_head_config(heatmap_head_preset)
    sc = score_head.get_score_head_config('port')
  wired = {}
  if wiring == 'port':
    vit = dataclasses.replace(vit, **port.HF_VIT_SEMANTICS)
    wired = rahf.PORT_WIRING
  jdtype = jnp.dtype(dtype)
  return rahf.RAHFConfig(
      vit=dataclasses.replace(vit, dtype=dtype, remat=remat),
      t5=dataclasses.replace(t5, dtype=dtype, remat=remat),
      heatmap_head=dataclasses.replace(hm, dtype=jdtype, remat=remat,
                                       batch_chunks=heatmap_batch_chunks),
      score_head=dataclasses.replace(sc, dtype=jdtype),
      variant=variant, **wired)


def abstract_params(model: model_lib.RAHFModel, input_length: int,
                    target_length: int) -> Any:
  """ShapeDtypeStructs of the unboxed parameters (nothing allocated)."""
  return jax.eval_shape(lambda: model_lib.unbox(model.get_initial_variables(
      jax.random.key(0), input_length, target_length))['params'])


def init_params(model: model_lib.RAHFModel, input_length: int,
                target_length: int, seed: int = 0) -> Any:
  """Random parameters of the model's shapes, made on the host.

  The shapes come from `jax.eval_shape` of the model's init; the values are
  numpy draws (kernels and embeddings N(0, 1/fan_in), norm scales 1, biases
  0), which skips compiling the whole init: on a loaded 2-core CPU the
  jitted init of the `small` configuration took ~3 minutes to compile,
  longer than the timed work. Timing does not depend on the values.
  """
  rng = np.random.default_rng(seed)

  def make(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if len(leaf.shape) >= 2:
      fan_in = int(np.prod(leaf.shape[:-1]))
      value = rng.standard_normal(leaf.shape, dtype=np.float32)
      value *= np.float32(1 / np.sqrt(fan_in))
    elif name == 'scale':
      value = np.ones(leaf.shape, np.float32)
    else:
      value = np.zeros(leaf.shape, np.float32)
    return jnp.asarray(value, leaf.dtype)

  abstract = abstract_params(model, input_length, target_length)
  return jax.block_until_ready(
      jax.tree_util.tree_map_with_path(make, abstract))


def fake_batch(config: rahf.RAHFConfig, batch_size: int, input_length: int,
               target_length: int) -> dict[str, jax.Array]:
  """A random batch with every training key, on the default device."""
  batch = test_utils.fake_batch(config, batch_size, input_length,
                                target_length)
  return {k: jnp.asarray(v) for k, v in batch.items()}


# ----------------------------------------------------------------------------
# Measurements.
# ----------------------------------------------------------------------------


def on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


def matmul_peak(dtype: str = 'float32', size: int | None = None,
                repeats: int = 5) -> float:
  """Best GFLOP/s of a jitted [n, n] x [n, n] matmul (2 n^3 FLOPs).

  n defaults to 2048 on CPU (~17 GFLOP per call) and 8192 on accelerators.
  """
  n = size or (2048 if on_cpu() else 8192)
  if not on_cpu():
    # Accelerator clocks ramp up under load: time more calls.
    repeats = max(repeats, 30)
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)),
                  jnp.dtype(dtype))
  b = a.T + 0
  f = jax.jit(jnp.matmul)
  jax.block_until_ready(f(a, b))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a, b))
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best / 1e9


def peak_memory_bytes() -> tuple[str, int]:
  """('rss', process high-water RSS) on CPU, else ('device', peak bytes)."""
  if on_cpu():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return 'rss', kb if sys.platform == 'darwin' else kb * 1024
  stats = jax.devices()[0].memory_stats() or {}
  return 'device', int(stats.get('peak_bytes_in_use', 0))


def current_rss_bytes() -> int | None:
  """This process's resident set now (Linux /proc), or None elsewhere."""
  try:
    with open('/proc/self/statm') as f:
      pages = int(f.read().split()[1])
  except (OSError, ValueError, IndexError):
    return None
  return pages * os.sysconf('SC_PAGE_SIZE')


def cost_flops(compiled: Any) -> float | None:
  """FLOPs from XLA's cost analysis of a `Lowered` or `Compiled`, or None.

  Pass the `Lowered` where there is one: its count is of the HLO before
  backend passes, so it is the same on every backend. On GPU the compiled
  program's count leaves out the convolutions and matmuls that became
  library calls (cuDNN/cuBLAS), and can undercount by several times.
  `cost_analysis()` returns a dict in recent JAX and a list with one dict per
  computation in older ones; None when unavailable.
  """
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or 'flops' not in cost:
    return None
  return float(cost['flops'])


def memory_analysis_gib(compiled: Any) -> dict[str, float | None]:
  """XLA's static buffer sizes of a compiled function, in GiB.

  `argument` (inputs), `output`, `alias` (outputs sharing a donated input's
  buffer) and `temp` (everything live inside the program at some point).
  `argument + output - alias + temp` bounds the device memory the call
  needs beyond other live arrays. Values are None when unavailable.
  """
  keys = ('argument', 'output', 'alias', 'temp')
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    stats = None
  out = {}
  for k in keys:
    value = getattr(stats, f'{k}_size_in_bytes', None) if stats else None
    out[f'xla_{k}_gib'] = (round(value / 2 ** 30, 3)
                           if value is not None else None)
  if all(out[f'xla_{k}_gib'] is not None for k in keys):
    out['xla_total_gib'] = round(
        out['xla_argument_gib'] + out['xla_output_gib'] -
        out['xla_alias_gib'] + out['xla_temp_gib'], 3)
  else:
    out['xla_total_gib'] = None
  return out


def compile_ahead(fn: Callable[..., Any], *args,
                  compiler_options: dict[str, Any] | None = None,
                  **jit_kwargs) -> tuple[Any, float, float | None]:
  """jit + lower + compile on `args`: (compiled, seconds, FLOPs per call).

  The FLOPs are `cost_flops` of the lowered program (backend-independent);
  `compiler_options` are XLA options of this executable (see
  `richhf_jax.compile_options`).
  """
  t0 = time.perf_counter()
  lowered = jax.jit(fn, **jit_kwargs).lower(*args)
  compiled = lowered.compile(compiler_options=compiler_options or None)
  seconds = time.perf_counter() - t0
  return compiled, seconds, program_flops(lowered, compiled)


def program_flops(lowered: Any, compiled: Any) -> float | None:
  """`cost_flops` of the lowered program, else of the compiled one.

  Some backends give no pre-compilation analysis (seen on GPU, jax 0.11).
  """
  return cost_flops(lowered) or cost_flops(compiled)


def time_calls(call: Callable[[], Any], steps: int,
               warmup: int = 1) -> list[float]:
  """Seconds of each of `steps` calls (blocking on the result) after warmup."""
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - t0)
  return times


def machine_info() -> dict[str, Any]:
  """Where the numbers come from (load average included: shared machines)."""
  dev = jax.devices()[0]
  try:
    load = [round(x, 2) for x in os.getloadavg()]
  except OSError:
    load = None
  return dict(backend=jax.default_backend(), device=dev.device_kind,
              num_devices=jax.device_count(), cpus=os.cpu_count(),
              load_avg=load, jax=jax.__version__,
              python=platform.python_version(), host=platform.machine())


def summarize(times: Sequence[float], examples_per_call: int,
              flops: float | None, peak_gflops: float) -> dict[str, Any]:
  """Throughput, achieved FLOP/s and its share of the matmul peak."""
  med = statistics.median(times)
  out = dict(sec_per_call=round(med, 4), best_sec=round(min(times), 4),
             steps=len(times),
             examples_per_sec=round(examples_per_call / med, 4))
  if flops:
    gflops = flops / med / 1e9
    out.update(gflop_per_call=round(flops / 1e9, 2),
               gflop_per_example=round(flops / 1e9 / examples_per_call, 2),
               achieved_gflops=round(gflops, 1),
               fraction_of_peak=round(gflops / peak_gflops, 3))
  else:
    out.update(gflop_per_call=None, gflop_per_example=None,
               achieved_gflops=None, fraction_of_peak=None)
  kind, peak = peak_memory_bytes()
  out.update(memory_kind=kind, peak_memory_gib=round(peak / 2 ** 30, 3))
  return out


# ----------------------------------------------------------------------------
# Command line and output.
# ----------------------------------------------------------------------------


def csv_list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
  """argparse type: a comma-separated list of `kind`."""
  def parse(text: str) -> list[Any]:
    return [kind(x) for x in text.split(',') if x]
  return parse


def add_model_flags(parser: argparse.ArgumentParser, *,
                    default_config: str = 'small', default_batch: str = '1',
                    default_steps: int = 3) -> None:
  """The flags every model benchmark shares."""
  parser.add_argument('--config', type=csv_list(str), default=[default_config],
                      help=f'comma list of {CONFIGS}')
  parser.add_argument('--batch', type=csv_list(int),
                      default=csv_list(int)(default_batch),
                      help='comma list of batch sizes')
  parser.add_argument('--variant', type=csv_list(str), default=['multihead'],
                      help=f'comma list of {rahf.VARIANTS}')
  parser.add_argument('--steps', type=int, default=default_steps,
                      help='timed calls per case (after --warmup)')
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--dtype', default='float32', choices=DTYPES,
                      help='activation dtype (params stay float32)')
  parser.add_argument('--heatmap_head', default='port',
                      choices=('port', 'efficient'),
                      help='heatmap head preset of the paper/small configs')
  parser.add_argument('--wiring', default='paper', choices=WIRINGS,
                      help="'port': the port's wiring (rahf.PORT_WIRING; "
                      'the decoder attends to the prompt positions only)')
  parser.add_argument('--input_length', type=int, default=0,
                      help='prompt tokens; 0 = the config default')
  parser.add_argument('--target_length', type=int, default=0,
                      help='keyword tokens; 0 = the config default')
  parser.add_argument('--matmul_size', type=int, default=0,
                      help='side of the peak-measuring matmul; 0 = 2048 on '
                      'CPU, 8192 on accelerators')
  parser.add_argument('--compiler_options', type=parse_compiler_options,
                      default=None,
                      help="XLA compile options of the timed program: "
                      "'default' (what the library compiles it with), "
                      "'none', or NAME=VALUE[,NAME=VALUE...]")


def parse_compiler_options(text: str) -> dict[str, str] | None:
  """--compiler_options: None for 'default', {} for 'none', else a dict."""
  if text == 'default':
    return None
  if text == 'none':
    return {}
  options = {}
  for item in text.split(','):
    name, sep, value = item.partition('=')
    if not sep or not name.strip() or not value.strip():
      raise argparse.ArgumentTypeError(
          f'{item!r}: expected NAME=VALUE (or default, none)')
    options[name.strip()] = value.strip()
  return options


def model_compiler_options(args: argparse.Namespace) -> dict[str, Any]:
  """The forward program's options: --compiler_options, else the library's.

  None (the flag's default) means what `richhf_jax.inference.Predictor` and
  the evaluation compile with (`compile_options.defaults()`).
  """
  return compile_options.resolve(getattr(args, 'compiler_options', None))


def check_model_flags(parser: argparse.ArgumentParser,
                      args: argparse.Namespace) -> None:
  """Rejects bad flag values with a message naming the flag."""
  for name in args.config:
    if name not in CONFIGS:
      parser.error(f'--config {name!r}: expected one of {CONFIGS}')
  for v in args.variant:
    if v not in rahf.VARIANTS:
      parser.error(f'--variant {v!r}: expected one of {rahf.VARIANTS}')
  if not args.batch or min(args.batch) < 1:
    parser.error(f'--batch must be positive ints, got {args.batch}')
  if args.steps < 1 or args.warmup < 0:
    parser.error(f'--steps must be >= 1 and --warmup >= 0, got '
                 f'{args.steps} and {args.warmup}')


def lengths(args: argparse.Namespace, name: str) -> tuple[int, int]:
  """(input_length, target_length) from the flags or the config default."""
  il, tl = SEQUENCE_LENGTHS[name]
  return args.input_length or il, args.target_length or tl


def cases(args: argparse.Namespace) -> Iterable[tuple[str, str, int]]:
  """(config, variant, batch) for every combination of the flags."""
  for name in args.config:
    for variant in args.variant:
      for batch in args.batch:
        yield name, variant, batch


def print_report(rows: Sequence[dict[str, Any]],
                 columns: Sequence[str]) -> None:
  """A table of `columns`, then every row as one JSON line."""
  widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows))
            for c in columns]
  print(' '.join(c.rjust(w) for c, w in zip(columns, widths)))
  for r in rows:
    print(' '.join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))
  for r in rows:
    print(json.dumps(r, sort_keys=True))
  sys.stdout.flush()


def _fmt(value: Any) -> str:
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


def log(message: str) -> None:
  """Progress to stderr (stdout holds the table and the JSON lines)."""
  print(message, file=sys.stderr, flush=True)


def run_benchmark(parser: argparse.ArgumentParser, argv, title: str,
                  run_case: Callable[..., dict[str, Any]],
                  columns: Sequence[Any]) -> int:
  """Parses the flags, measures the matmul peak, runs every case, reports.

  Args:
    parser: the script's parser, with `add_model_flags` (and its own flags).
    argv: command-line arguments (None: sys.argv).
    title: names the benchmark in progress lines.
    run_case: (name, variant, batch, args, peak_gflops) -> result row (or
      a list of rows).
    columns: the report's columns (see `print_report`).
  """
  args = parser.parse_args(argv)
  check_model_flags(parser, args)
  peak = matmul_peak(args.dtype, args.matmul_size or None)
  log(f'matmul peak: {peak:.1f} GFLOP/s ({args.dtype})')
  rows = []
  failed = False
  for name, variant, batch in cases(args):
    log(f'{title}: {name} {variant} batch {batch}')
    try:
      row = run_case(name, variant, batch, args, peak)
    except Exception as e:  # pylint: disable=broad-except
      # One case running out of memory must not lose the others' figures.
      failed = True
      row = dict(config=name, variant=variant, batch=batch,
                 error=f'{type(e).__name__}: {str(e)[:300]}')
    # Each row as soon as it exists: a later case may be killed.
    for r in row if isinstance(row, list) else [row]:
      r.setdefault('wiring', getattr(args, 'wiring', 'paper'))
      log('case result: ' + json.dumps(r, sort_keys=True))
      rows.append(r)
  print_report(rows, columns)
  return 1 if failed else 0
