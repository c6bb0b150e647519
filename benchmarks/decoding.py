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
"""Keyword decoding speed: milliseconds per generated token.

The encoder runs once (not timed); the timed call is the model's own greedy
decoding (`RAHFModel._decode`: KV-cache initialisation plus one
`lax.while_loop` of cached decoder steps, all in one jitted program, no host
round-trip per token) over the encoder output, at most --target_length
tokens. ms/token = seconds per call / decoding steps, where the steps run
until every sequence has emitted EOS (random parameters rarely do).

  python benchmarks/decoding.py --config paper --batch 1 [--steps 3]
      [--target_length 64] [--dtype float32]

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
import jax
import numpy as np

from benchmarks import common
from benchmarks import full_inference
from richhf_jax import model as model_lib
from richhf_jax.models import rahf
# pylint: enable=g-import-not-at-top

COLUMNS = ('config', 'variant', 'batch', 'dtype', 'ms_per_token',
           'decoded_tokens', 'sec_per_call', 'compile_sec', 'encoded_length',
           'peak_memory_gib')


def run_case(name: str, variant: str, batch: int, args: argparse.Namespace,
             peak_gflops: float) -> dict:
  """Encodes once, then compiles and times greedy decoding of one case."""
  config = common.model_config(name, variant, args.dtype, False,
                               args.heatmap_head)
  input_length, target_length = common.lengths(args, name)
  model = model_lib.RAHFModel(config)
  t0 = time.perf_counter()
  params = common.init_params(model, input_length, target_length)
  init_sec = time.perf_counter() - t0
  data = common.fake_batch(config, batch, input_length, target_length)

  def encode(p, image, tokens):
    variables = {'params': p}
    encoded, mask = model.module.apply(variables, image, tokens,
                                       method=rahf.RAHF.encode)
    return model.module.apply(variables, encoded, mask,
                              method=rahf.RAHF.keyword_encoding)

  encoded, mask = jax.block_until_ready(jax.jit(encode)(
      params, data['image'], data['encoder_input_tokens']))

  def decode(p, enc, m):
    # pylint: disable-next=protected-access
    return model._decode(p, enc, m, target_length, 1)

  compiled, compile_sec, _ = common.compile_ahead(decode, params, encoded, mask)
  times = common.time_calls(lambda: compiled(params, encoded, mask),
                            args.steps, args.warmup)
  steps = full_inference.decoded_steps(
      np.asarray(compiled(params, encoded, mask)))
  row = dict(benchmark='decoding', config=name, variant=variant,
             batch=batch, dtype=args.dtype, max_decode_length=target_length,
             decoded_tokens=steps, encoded_length=int(encoded.shape[1]),
             init_sec=round(init_sec, 2), compile_sec=round(compile_sec, 2),
             matmul_peak_gflops=round(peak_gflops, 1))
  row.update(common.summarize(times, batch, None, peak_gflops))
  row['ms_per_token'] = round(1e3 * row['sec_per_call'] / steps, 3)
  row['best_ms_per_token'] = round(1e3 * row['best_sec'] / steps, 3)
  row.update(common.machine_info())
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  common.add_model_flags(parser, default_steps=5)
  return common.run_benchmark(parser, argv, 'decoding', run_case, COLUMNS)


if __name__ == '__main__':
  sys.exit(main())
