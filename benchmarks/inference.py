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
"""Inference throughput of RAHF's heads: heatmaps and scores, no decoding.

One jitted call runs the ViT, the fusion encoder and every heatmap and score
head (`RAHF.__call__` without decoder tokens) on random parameters; its
outputs are the two heatmaps and the four scores. FLOPs are XLA's count of
that call.

  python benchmarks/inference.py --config small --batch 1,2 \
      [--variant multihead,augmented] [--steps 3] [--dtype float32] \
      [--heatmap_head port|efficient]

See `benchmarks/common.py` for the configurations and the reported fields.
"""

import argparse
import os
import sys
import time

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top
from benchmarks import common
from richhf_jax import model as model_lib
# pylint: enable=g-import-not-at-top

COLUMNS = ('config', 'variant', 'heatmap_head', 'batch', 'dtype',
           'examples_per_sec', 'sec_per_call', 'compile_sec',
           'gflop_per_example', 'achieved_gflops', 'fraction_of_peak',
           'peak_memory_gib')
OUTPUT_KEYS = ('implausibility_heatmap', 'misalignment_heatmap', 'scores')


def heads_fn(model: model_lib.RAHFModel):
  """(params, image, tokens) -> heatmaps and scores."""
  def fn(params, image, tokens):
    out = model.module.apply({'params': params}, image, tokens)
    return {k: out[k] for k in OUTPUT_KEYS}
  return fn


def run_case(name: str, variant: str, batch: int, args: argparse.Namespace,
             peak_gflops: float) -> dict:
  """Compiles and times the heads-and-scores forward pass of one case."""
  config = common.model_config(name, variant, args.dtype, False,
                               args.heatmap_head,
                               wiring=args.wiring)
  input_length, target_length = common.lengths(args, name)
  model = model_lib.RAHFModel(config)
  t0 = time.perf_counter()
  params = common.init_params(model, input_length, target_length)
  init_sec = time.perf_counter() - t0
  data = common.fake_batch(config, batch, input_length, target_length)
  inputs = (params, data['image'], data['encoder_input_tokens'])
  options = common.model_compiler_options(args)
  compiled, compile_sec, flops = common.compile_ahead(
      heads_fn(model), *inputs, compiler_options=options)
  times = common.time_calls(lambda: compiled(*inputs), args.steps,
                            args.warmup)
  row = dict(benchmark='inference', config=name, variant=variant,
             batch=batch, dtype=args.dtype,
             heatmap_head=args.heatmap_head if name != 'tiny' else 'tiny',
             input_length=input_length,
             heatmap_size=list(config.heatmap_size),
             compiler_options=options,
             init_sec=round(init_sec, 2), compile_sec=round(compile_sec, 2),
             matmul_peak_gflops=round(peak_gflops, 1))
  row.update(common.summarize(times, batch, flops,
                              peak_gflops))
  row.update(common.machine_info())
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  common.add_model_flags(parser)
  return common.run_benchmark(parser, argv, 'inference', run_case, COLUMNS)


if __name__ == '__main__':
  sys.exit(main())
