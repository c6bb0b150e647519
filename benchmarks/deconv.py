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
"""Transposed-conv cost: the 'phase' and 'dilated' methods of ConvTranspose2D.

Times the forward pass and forward + backward (gradients with respect to
input, kernel and bias of `sum(y * cotangent)`) of one
`conv_layers.ConvTranspose2D` per shape and method. The default shapes are
the four deconvs of the `port` heatmap head at the paper configuration's
24x24 feature grid (24 -> 48 -> 96 -> 192 -> 384, k=3, s=2, pad=1,
output_padding=1). The dilated backward pass is slow on CPU: the largest
shape takes minutes (`--shapes` picks fewer).

  python -m benchmarks.deconv [--methods phase,dilated] \
      [--shapes 24:384:768,48:768:384] [--batch 1] [--steps 2]

Output: a table, then one JSON line per (shape, method).
"""

import argparse
import sys

# pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from richhf_jax.models import conv_layers
from richhf_jax.models import heatmap_head

COLUMNS = ('in_side', 'out_side', 'c_in', 'c_out', 'method', 'batch',
           'dtype', 'fwd_sec', 'fwd_bwd_sec', 'gflop_fwd', 'compile_sec',
           'speedup_fwd_bwd')


def port_shapes(grid: int = 24) -> list[tuple[int, int, int]]:
  """(input side, input channels, output channels) of the port's deconvs."""
  config = heatmap_head.get_heatmap_head_config('port')
  shapes, side, c_in = [], grid, config.conv_channels[-1]
  for c_out in config.upsample_channels:
    shapes.append((side, c_in, c_out))
    side, c_in = 2 * side, c_out
  return shapes


def _parse_shape(text: str) -> tuple[int, int, int]:
  """'side:c_in:c_out' -> ints (argparse type)."""
  parts = text.split(':')
  try:
    values = tuple(int(p) for p in parts)
  except ValueError:
    values = ()
  if len(values) != 3 or min(values) < 1:
    raise argparse.ArgumentTypeError(
        f'shape must be side:c_in:c_out with positive ints, got {text!r}')
  return values


def run_case(shape: tuple[int, int, int], method: str,
             args: argparse.Namespace) -> dict:
  """Compiles and times forward and forward + backward of one case."""
  side, c_in, c_out = shape
  dtype = jnp.dtype(args.dtype)
  layer = conv_layers.ConvTranspose2D(features=c_out, kernel_size=3,
                                      stride=2, padding=1, output_padding=1,
                                      dtype=dtype, method=method)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((args.batch, side, side, c_in)), dtype)
  params = {
      'kernel': jnp.asarray(rng.standard_normal((3, 3, c_in, c_out))
                            / np.sqrt(9 * c_in), jnp.float32),
      'bias': jnp.zeros((c_out,), jnp.float32)}
  out_side = conv_layers.transposed_conv_output_size(side, 3, 2, 1, 1)
  cotangent = jnp.asarray(
      rng.standard_normal((args.batch, out_side, out_side, c_out)), dtype)

  def forward(params, x):
    return layer.apply({'params': params}, x)

  def loss(params, x):
    y = layer.apply({'params': params}, x).astype(jnp.float32)
    return jnp.sum(y * cotangent.astype(jnp.float32))

  row = dict(benchmark='deconv', in_side=side, out_side=out_side, c_in=c_in,
             c_out=c_out, method=method, batch=args.batch, dtype=args.dtype)
  compile_total = 0.0
  for key, fn in (('fwd', forward),
                  ('fwd_bwd', jax.grad(loss, argnums=(0, 1)))):
    if key not in args.passes:
      row[f'{key}_sec'] = None
      continue
    common.log(f'  {side}x{side}x{c_in} -> {c_out} {method} {key}')
    compiled, compile_sec, flops = common.compile_ahead(fn, params, x)
    compile_total += compile_sec
    times = common.time_calls(lambda: compiled(params, x), args.steps,
                              args.warmup)
    row[f'{key}_sec'] = round(min(times), 4)
    row[f'{key}_median_sec'] = round(float(np.median(times)), 4)
    row[f'gflop_{key}'] = round(flops / 1e9, 3) if flops else None
  row['compile_sec'] = round(compile_total, 2)
  row.update(common.machine_info())
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--methods', type=common.csv_list(str),
                      default=list(conv_layers.DECONV_METHODS),
                      help=f'comma list of {conv_layers.DECONV_METHODS}')
  parser.add_argument('--shapes', type=common.csv_list(_parse_shape),
                      default=port_shapes(),
                      help='comma list of side:c_in:c_out (default: the '
                      'port head at a 24x24 grid)')
  parser.add_argument('--passes', type=common.csv_list(str),
                      default=['fwd', 'fwd_bwd'],
                      help='comma list of fwd,fwd_bwd')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--steps', type=int, default=2,
                      help='timed calls per pass (best is reported)')
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--dtype', default='float32', choices=common.DTYPES)
  args = parser.parse_args(argv)
  for method in args.methods:
    if method not in conv_layers.DECONV_METHODS:
      parser.error(f'--methods {method!r}: expected one of '
                   f'{conv_layers.DECONV_METHODS}')
  for key in args.passes:
    if key not in ('fwd', 'fwd_bwd'):
      parser.error(f'--passes {key!r}: expected fwd or fwd_bwd')
  if args.batch < 1 or args.steps < 1 or args.warmup < 0:
    parser.error('--batch and --steps must be >= 1 and --warmup >= 0, got '
                 f'{args.batch}, {args.steps} and {args.warmup}')

  rows = []
  for shape in args.shapes:
    for method in args.methods:
      row = run_case(shape, method, args)
      common.log('case result: ' + str(row))
      rows.append(row)
  # Dilated time over phase time, on the phase rows.
  for row in rows:
    other = [r for r in rows if r['method'] == 'dilated' and
             (r['in_side'], r['c_in'], r['c_out']) ==
             (row['in_side'], row['c_in'], row['c_out'])]
    if (row['method'] == 'phase' and other and row['fwd_bwd_sec']
        and other[0]['fwd_bwd_sec']):
      row['speedup_fwd_bwd'] = round(
          other[0]['fwd_bwd_sec'] / row['fwd_bwd_sec'], 2)
  common.print_report(rows, COLUMNS)
  return 0


if __name__ == '__main__':
  sys.exit(main())
