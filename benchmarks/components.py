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
"""Train-step cost per model part: ViT, one heatmap head, one score head.

Times forward + backward (gradients of a sum-of-squares loss with respect to
parameters and input) of each part alone, with the part's inputs drawn at
the shapes the full model gives it. Shows which part keeps the full train
step (`train_step.py`) from the matmul peak.

  python -m benchmarks.components --config paper --dtype bfloat16 --batch 16
"""

import argparse
import sys

# pylint: disable=g-import-not-at-top
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from richhf_jax.models import heatmap_head
from richhf_jax.models import score_head
from richhf_jax.models import vit as vit_lib

COLUMNS = ('config', 'part', 'batch', 'dtype', 'sec_per_call',
           'gflop_per_example', 'achieved_gflops', 'fraction_of_peak',
           'compile_sec')


def _parts(config, batch: int):
  """(name, module, input array) for each part of `config`."""
  rng = np.random.default_rng(0)
  size = config.vit.image_size
  image = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  grid = size // config.vit.patch_size
  features = rng.standard_normal(
      (batch, grid, grid, config.t5.emb_dim)).astype(np.float32)
  return [
      ('vit', vit_lib.ViT(config.vit), jnp.asarray(image)),
      ('heatmap_head', heatmap_head.HeatmapHead(config.heatmap_head),
       jnp.asarray(features, config.heatmap_head.dtype)),
      ('score_head', score_head.ScoreHead(config.score_head),
       jnp.asarray(features, config.score_head.dtype)),
  ]


def _grad_fn(module: nn.Module):
  def loss(params, x):
    out = module.apply({'params': params}, x)
    if isinstance(out, tuple):
      out = out[0]
    return jnp.mean(jnp.square(out.astype(jnp.float32)))
  return jax.grad(loss, argnums=(0, 1))


def run_case(name: str, variant: str, batch: int, args: argparse.Namespace,
             peak_gflops: float) -> list[dict]:
  """Compiles and times forward + backward of every part."""
  config = common.model_config(name, variant, args.dtype, args.remat,
                               args.heatmap_head,
                               wiring=args.wiring)
  rows = []
  for part, module, x in _parts(config, batch):
    if args.parts and part not in args.parts:
      continue
    common.log(f'  {part}')
    params = nn.unbox(jax.jit(module.init)(jax.random.key(0), x))['params']
    compiled, compile_sec, flops = common.compile_ahead(
        _grad_fn(module), params, x)
    times = common.time_calls(lambda: compiled(params, x), args.steps,
                              args.warmup)
    row = dict(benchmark='components', config=name, part=part, batch=batch,
               dtype=args.dtype, remat=args.remat,
               heatmap_head=args.heatmap_head,
               compile_sec=round(compile_sec, 2),
               matmul_peak_gflops=round(peak_gflops, 1))
    row.update(common.summarize(times, batch, flops, peak_gflops))
    row.update(common.machine_info())
    rows.append(row)
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  common.add_model_flags(parser, default_steps=5)
  parser.add_argument('--remat', action='store_true')
  parser.add_argument('--parts', type=common.csv_list(str), default=[],
                      help='comma list of vit,heatmap_head,score_head '
                      '(default all)')
  return common.run_benchmark(parser, argv, 'components', run_case, COLUMNS)


if __name__ == '__main__':
  sys.exit(main())
