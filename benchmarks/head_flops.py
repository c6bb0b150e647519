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
"""Forward FLOPs per example of the heatmap head presets (XLA cost analysis).

For each configuration and heatmap head preset it compiles, on abstract
inputs (nothing is allocated or run):

  * one heatmap head on the fusion encoder's [1, h, w, D] feature map;
  * the whole model's forward pass for one example: ViT, fusion encoder, all
    heatmap and score heads (`RAHF.__call__` without decoder tokens);

and prints XLA's FLOP count of each (`Compiled.cost_analysis()`), the head
parameter count and the ratios to the `port` preset.

  python benchmarks/head_flops.py [--config paper,small]
      [--heatmap_head port,efficient] [--variant multihead]
"""

import argparse
import os
import sys

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import inference
from richhf_jax import model as model_lib
from richhf_jax.models import heatmap_head
# pylint: enable=g-import-not-at-top

COLUMNS = ('config', 'variant', 'heatmap_head', 'head_output', 'head_params',
           'head_gflop', 'model_gflop_per_example', 'head_ratio_vs_port',
           'model_ratio_vs_port')


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def head_cost(config) -> tuple[float | None, int, tuple[int, ...]]:
  """(FLOPs, params, output shape) of one heatmap head, one example."""
  h, w = config.grid
  x = jax.ShapeDtypeStruct((1, h, w, config.t5.emb_dim), jnp.float32)
  head = heatmap_head.HeatmapHead(config.heatmap_head)
  variables = nn.unbox(jax.eval_shape(head.init, jax.random.key(0), x))
  compiled = jax.jit(head.apply).lower(_abstract(variables), x).compile()
  out = jax.eval_shape(head.apply, variables, x)
  params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables))
  return common.cost_flops(compiled), params, tuple(out.shape[1:])


def model_cost(config, input_length: int) -> float | None:
  """FLOPs of the heads-and-scores forward pass for one example."""
  model = model_lib.RAHFModel(config)
  params = jax.eval_shape(
      lambda: model_lib.unbox(model.get_initial_variables(
          jax.random.key(0), input_length, 8))['params'])
  data = model.dummy_inputs(1, input_length, 8)
  compiled = jax.jit(inference.heads_fn(model)).lower(
      params, _abstract(data['image']),
      _abstract(data['encoder_input_tokens'])).compile()
  return common.cost_flops(compiled)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', type=common.csv_list(str),
                      default=['paper', 'small'])
  parser.add_argument('--heatmap_head', type=common.csv_list(str),
                      default=['port', 'efficient'])
  parser.add_argument('--variant', type=common.csv_list(str),
                      default=['multihead'])
  parser.add_argument('--no_model', action='store_true',
                      help='count the heads only (skips the whole-model '
                      'compile)')
  args = parser.parse_args(argv)
  for name in args.config:
    if name not in common.CONFIGS:
      parser.error(f'--config {name!r}: expected one of {common.CONFIGS}')
  for preset in args.heatmap_head:
    if preset not in heatmap_head.HEATMAP_HEAD_PRESETS:
      parser.error(f'--heatmap_head {preset!r}: expected one of '
                   f'{sorted(heatmap_head.HEATMAP_HEAD_PRESETS)}')
  rows = []
  for name in args.config:
    for variant in args.variant:
      base = {}
      for preset in args.heatmap_head:
        common.log(f'head flops: {name} {variant} {preset}')
        config = common.model_config(name, variant,
                                     heatmap_head_preset=preset)
        flops, params, out_shape = head_cost(config)
        model_flops = (None if args.no_model else
                       model_cost(config, common.SEQUENCE_LENGTHS[name][0]))
        row = dict(benchmark='head_flops', config=name, variant=variant,
                   heatmap_head=preset,
                   head_output='x'.join(map(str, out_shape)),
                   head_params=params,
                   head_gflop=round(flops / 1e9, 3) if flops else None,
                   model_gflop_per_example=(round(model_flops / 1e9, 2)
                                            if model_flops else None))
        if preset == 'port':
          base = dict(head=flops, model=model_flops)
        row['head_ratio_vs_port'] = (round(base['head'] / flops, 2)
                                     if base.get('head') and flops else None)
        row['model_ratio_vs_port'] = (
            round(base['model'] / model_flops, 2)
            if base.get('model') and model_flops else None)
        row.update(common.machine_info())
        rows.append(row)
  common.print_report(rows, COLUMNS)
  return 0


if __name__ == '__main__':
  sys.exit(main())
