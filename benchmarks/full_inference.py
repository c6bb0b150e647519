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
"""Full inference throughput: heatmaps, scores and decoded keywords.

One jitted `RAHFModel.predict_batch` call (encoder once, heads, greedy
decoding with the KV cache for --target_length tokens at most; on CPU the
steps read `RAHFModel.step_kernels`, made once beforehand as `Predictor`
does) on random parameters. XLA's cost analysis counts a while loop's
body once, so the FLOPs reported here undercount the decoding steps (they
are small next to the encoder and heads).

  python benchmarks/full_inference.py --config small --batch 1,2 \
      [--variant multihead,augmented] [--steps 3] [--dtype float32]

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
import numpy as np

from benchmarks import common
from richhf_jax import model as model_lib
# pylint: enable=g-import-not-at-top

COLUMNS = ('config', 'variant', 'heatmap_head', 'batch', 'dtype',
           'examples_per_sec', 'sec_per_call', 'decoded_tokens',
           'compile_sec', 'gflop_per_example', 'fraction_of_peak',
           'peak_memory_gib')


def decoded_steps(decoded: np.ndarray, eos_id: int = model_lib.EOS_ID
                  ) -> int:
  """Decoding loop iterations: up to the last row's first EOS (inclusive)."""
  return int(np.max(model_lib.decoded_lengths(decoded, eos_id)))


def run_case(name: str, variant: str, batch: int, args: argparse.Namespace,
             peak_gflops: float) -> dict:
  """Compiles and times `predict_batch` of one case."""
  config = common.model_config(name, variant, args.dtype, False,
                               args.heatmap_head,
                               wiring=args.wiring)
  input_length, target_length = common.lengths(args, name)
  model = model_lib.RAHFModel(config)
  t0 = time.perf_counter()
  params = common.init_params(model, input_length, target_length)
  init_sec = time.perf_counter() - t0
  data = common.fake_batch(config, batch, input_length, target_length)
  data = {k: data[k] for k in ('image', 'encoder_input_tokens')}

  # As `Predictor` does: transposed decoder kernels for the decoding steps
  # (on CPU), made once per params, outside the timed calls.
  kernels = model_lib.make_step_kernels(model, params)

  def predict(p, b, k):
    return model.predict_batch(p, b, max_decode_length=target_length,
                               step_kernels=k)

  options = common.model_compiler_options(args)
  compiled, compile_sec, flops = common.compile_ahead(
      predict, params, data, kernels, compiler_options=options)
  times = common.time_calls(lambda: compiled(params, data, kernels),
                            args.steps, args.warmup)
  decoded = np.asarray(compiled(params, data, kernels)['decoded'])
  row = dict(benchmark='full_inference', config=name, variant=variant,
             batch=batch, dtype=args.dtype,
             heatmap_head=args.heatmap_head if name != 'tiny' else 'tiny',
             input_length=input_length, max_decode_length=target_length,
             decoded_tokens=decoded_steps(decoded),
             heatmap_size=list(config.heatmap_size), compiler_options=options,
             weight_major_steps=kernels is not None,
             init_sec=round(init_sec, 2), compile_sec=round(compile_sec, 2),
             matmul_peak_gflops=round(peak_gflops, 1))
  row.update(common.summarize(times, batch, flops,
                              peak_gflops))
  row.update(common.machine_info())
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  common.add_model_flags(parser)
  return common.run_benchmark(parser, argv, 'full inference', run_case,
                              COLUMNS)


if __name__ == '__main__':
  sys.exit(main())
