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
"""Keyword decoding speed: milliseconds per generated token, and its floor.

The encoder runs once (not timed); the timed call is the model's own
decoding (`RAHFModel._decode`: KV-cache initialisation, i.e. the one-time
projection of the encoder output to every cross-attention layer's keys and
values, plus one `lax.while_loop` of cached decoder steps, all in one jitted
program, no host round-trip per token) over the encoder output, at most
--target_length tokens. ms/token = seconds per call / decoding steps, where
the steps run until every sequence has emitted EOS (random parameters rarely
do). The cache initialisation is also timed alone (`cache_init_ms`), and
`step_ms_per_token` leaves it out.

At small batches a step is bound by memory traffic: every weight it uses
(decoder weights less the cross-attention key / value kernels, plus the tied
embedding for the logits) and the caches are read once per step.
`streamed_mb_per_step` counts those bytes, `memory_gb_per_sec` is this
machine's read bandwidth (a jitted sum over a 256 MiB array, best of 5) and
`floor_ms_per_token` their ratio.

By default the steps multiply weight-major (`RAHFModel.step_kernels`,
made once by their own program before timing; `step_kernels_ms` is what
that takes, not part of ms/token, as a `Predictor` makes them once per
params); --no-weight_major_steps times steps over the params as stored.

With --draft_tokens K the case also times speculative greedy decoding
(`decoding.speculative_greedy_decode`: each decoder call verifies K draft
tokens), checks that it emits the same tokens, and reports decoder calls,
tokens per call and `draft_ms_per_token`. How many drafts a model accepts
depends on what it has learned; with random parameters the benchmark can
only bracket it: `--draft output` drafts from the greedy output itself
(every draft accepted: the best case), `--draft prompt` from the random
prompt (nothing accepted: the worst case, one token per call). In between,
`--draft marked --marks M` drafts from the greedy output less M tokens per
row, which the model then emits as its own, as a trained model emits the
keyword marks the prompt lacks: drafts are accepted up to each mark and
the mark ends its call (`marked_source`; `expected_decoder_calls` is what
that pattern takes, checked against `decoder_calls`). A trained model's
tokens per call come from `richhf_jax.eval` (its log line 'keyword
decoding ... decoder calls').

  python benchmarks/decoding.py --config paper --batch 1 [--steps 3]
      [--target_length 64] [--dtype float32] [--num_beams 1]
      [--draft_tokens 7 --draft output|prompt|marked [--marks 2]]
      [--no-weight_major_steps]

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
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import full_inference
from richhf_jax import model as model_lib
from richhf_jax.models import rahf
# pylint: enable=g-import-not-at-top

COLUMNS = ('config', 'variant', 'batch', 'num_beams', 'dtype', 'ms_per_token',
           'step_ms_per_token', 'floor_ms_per_token', 'decoded_tokens',
           'cache_init_ms', 'compile_sec', 'encoded_length',
           'draft_tokens', 'draft', 'marks', 'decoder_calls',
           'draft_ms_per_token',
           'weight_major_steps', 'step_kernels_ms', 'peak_memory_gib')


def memory_bandwidth(mib: int = 256, repeats: int = 5) -> float:
  """Best read bandwidth (GB/s) of a jitted sum over a float32 array."""
  x = jnp.ones((mib * 2 ** 18,), jnp.float32)
  total = jax.jit(jnp.sum)
  jax.block_until_ready(total(x))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(total(x))
    best = min(best, time.perf_counter() - t0)
  return x.nbytes / best / 1e9


def streamed_bytes_per_step(params, config: rahf.RAHFConfig, rows: int,
                            examples: int, encoded_length: int,
                            max_decode_length: int,
                            weight_major: bool = False) -> int:
  """Bytes one decoding step reads: used weights plus caches.

  Args:
    params: the model parameters (shapes and dtypes are read).
    config: the model configuration.
    rows: sequences decoded together (batch * beams).
    examples: distinct encoder outputs (the batch; beams share theirs).
    encoded_length: encoder positions the decoder attends to.
    max_decode_length: self-attention cache length.
    weight_major: the steps read `t5.step_kernels` copies, which hold the
      decoder's kernels in the activation dtype.
  """
  t5 = config.t5
  act = jnp.dtype(t5.dtype).itemsize
  weights = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      params['decoder'])[0]:
    keys = [str(getattr(k, 'key', k)) for k in path]
    # Cross-attention key / value kernels are used once, before the loop.
    if 'encoder_decoder_attention' in keys and keys[-2] in ('key', 'value'):
      continue
    itemsize = leaf.dtype.itemsize
    if weight_major and keys[-1] == 'kernel':
      itemsize = act
    weights += leaf.size * itemsize
  if t5.logits_via_embedding:
    weights += params['token_embedder']['embedding'].nbytes
  kv = t5.num_heads * t5.head_dim * 2 * t5.num_decoder_layers * act
  return (weights + examples * encoded_length * kv +
          rows * max_decode_length * kv)


def run_case(name: str, variant: str, batch: int, args: argparse.Namespace,
             peak_gflops: float) -> dict:
  """Encodes once, then compiles and times decoding of one case."""
  config = common.model_config(name, variant, args.dtype, False,
                               args.heatmap_head,
                               wiring=args.wiring)
  input_length, target_length = common.lengths(args, name)
  beams = args.num_beams
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

  options = common.model_compiler_options(args)
  kernels, kernels_ms = step_kernels(model, params, args, options)

  # pylint: disable=protected-access
  def decode(p, enc, m, kernels):
    return model._decode(p, enc, m, target_length, beams,
                         step_kernels=kernels)

  def init_cache(p, enc, m):
    return model._init_decode_cache(p, enc, m, target_length)
  # pylint: enable=protected-access

  compiled, compile_sec, _ = common.compile_ahead(
      decode, params, encoded, mask, kernels, compiler_options=options)
  times = common.time_calls(lambda: compiled(params, encoded, mask, kernels),
                            args.steps, args.warmup)
  greedy = np.asarray(compiled(params, encoded, mask, kernels))
  steps = full_inference.decoded_steps(greedy)
  init_compiled = common.compile_ahead(init_cache, params, encoded, mask,
                                       compiler_options=options)[0]
  init_times = common.time_calls(lambda: init_compiled(params, encoded, mask),
                                 args.steps, args.warmup)
  streamed = streamed_bytes_per_step(params, config, batch * beams, batch,
                                     int(encoded.shape[1]), target_length,
                                     args.weight_major_steps)
  bandwidth = memory_bandwidth()
  row = dict(benchmark='decoding', config=name, variant=variant,
             batch=batch, num_beams=beams, dtype=args.dtype,
             max_decode_length=target_length,
             decoded_tokens=steps, encoded_length=int(encoded.shape[1]),
             compiler_options=options,
             weight_major_steps=args.weight_major_steps,
             init_sec=round(init_sec, 2), compile_sec=round(compile_sec, 2),
             matmul_peak_gflops=round(peak_gflops, 1))
  row.update(common.summarize(times, batch, None, peak_gflops))
  init_ms = 1e3 * float(np.median(init_times))
  row['ms_per_token'] = round(1e3 * row['sec_per_call'] / steps, 3)
  row['best_ms_per_token'] = round(1e3 * row['best_sec'] / steps, 3)
  row['cache_init_ms'] = round(init_ms, 2)
  row['step_kernels_ms'] = kernels_ms
  row['step_ms_per_token'] = round(
      (1e3 * row['sec_per_call'] - init_ms) / steps, 3)
  row['streamed_mb_per_step'] = round(streamed / 1e6, 1)
  row['memory_gb_per_sec'] = round(bandwidth, 1)
  row['floor_ms_per_token'] = round(1e3 * streamed / (bandwidth * 1e9), 3)
  if args.draft_tokens:
    row.update(time_speculative(model, params, encoded, mask, data, args,
                                greedy, steps, options, kernels))
  row.update(common.machine_info())
  return row


def step_kernels(model, params, args, options):
  """The decoder's `t5.step_kernels`, made by their own program.

  Returns (kernels or None, median milliseconds to make them or None). A
  caller decoding many batches with the same params makes them once.
  """
  if not args.weight_major_steps:
    return None, None
  make = common.compile_ahead(model.step_kernels, params,
                              compiler_options=options)[0]
  kernels = jax.block_until_ready(make(params))
  ms = 1e3 * float(np.median(common.time_calls(lambda: make(params),
                                               args.steps, args.warmup)))
  return kernels, round(ms, 2)


def time_speculative(model, params, encoded, mask, data, args,
                     greedy: np.ndarray, tokens: int,
                     compiler_options: dict, kernels) -> dict:
  """Times speculative decoding; checks it emits the greedy tokens.

  Compiled with the greedy case's `compiler_options`.
  """
  k, target_length = args.draft_tokens, greedy.shape[1]
  marked = None
  if args.draft == 'output':
    source = jnp.asarray(greedy)
  elif args.draft == 'marked':
    source, marked = marked_source(greedy, args.marks)
    source = jnp.asarray(source)
  else:
    source = model.keyword_prompt(data['encoder_input_tokens'])

  # pylint: disable-next=protected-access
  def decode(p, enc, m, src, kernels):
    return model._decode(p, enc, m, target_length, 1, draft_tokens=k,
                         draft_source=src, return_steps=True,
                         step_kernels=kernels)

  compiled, compile_sec, _ = common.compile_ahead(
      decode, params, encoded, mask, source, kernels,
      compiler_options=compiler_options)
  seqs, calls = compiled(params, encoded, mask, source, kernels)
  if not np.array_equal(np.asarray(seqs), greedy):
    raise RuntimeError('speculative decoding emitted other tokens than '
                       'greedy decoding')
  times = common.time_calls(lambda: compiled(params, encoded, mask, source,
                                             kernels),
                            args.steps, args.warmup)
  med = float(np.median(times))
  extra = {}
  if marked is not None:
    extra = dict(marks=args.marks,
                 expected_decoder_calls=marked_calls(greedy, marked, k))
  return dict(draft_tokens=k, draft=args.draft, decoder_calls=int(calls),
              **extra,
              tokens_per_call=round(tokens / int(calls), 2),
              draft_compile_sec=round(compile_sec, 2),
              draft_sec_per_call=round(med, 4),
              draft_ms_per_call=round(1e3 * med / int(calls), 2),
              draft_ms_per_token=round(1e3 * med / tokens, 3))


def marked_source(greedy: np.ndarray, marks: int
                  ) -> tuple[np.ndarray, list[list[int]]]:
  """A draft source that makes `marks` tokens per row play keyword marks.

  A keyword mark is a token of the model's own that the prompt lacks: the
  draft copied from the prompt is rejected where the model emits it, and
  the copy pointer stays where it was (`decoding.advance_pointer`). So each
  row's source is its greedy output less `marks` of its tokens, chosen as
  evenly spread as possible among those that do not occur again later in
  the row (else the pointer would jump to that later copy) and before its
  first EOS.

  Args:
    greedy: int [B, T], the greedy output.
    marks: tokens removed per row.

  Returns:
    (source [B, T] int32, 0-padded; per row the removed positions).

  Raises:
    ValueError: if marks < 0 or a row has fewer than `marks` such tokens.
  """
  if marks < 0:
    raise ValueError(f'--marks {marks}: expected marks per row >= 0')
  greedy = np.asarray(greedy)
  lengths = model_lib.decoded_lengths(greedy)
  source = np.zeros_like(greedy, dtype=np.int32)
  removed = []
  for r, (row, n) in enumerate(zip(greedy, lengths)):
    row = row[:n]
    # The EOS stays: the prompt's own end is drafted as the output's end.
    candidates = [p for p in range(n) if row[p] != model_lib.EOS_ID
                  and row[p] not in row[p + 1:]]
    if len(candidates) < marks:
      raise ValueError(
          f'--marks {marks}: row {r} of the greedy output has only '
          f'{len(candidates)} tokens that do not recur later; use fewer '
          'marks or a longer --target_length')
    chosen = []
    for j in range(marks):
      target = (j + 1) * n / (marks + 1)
      p = min((c for c in candidates if c not in chosen),
              key=lambda c, t=target: abs(c - t))
      chosen.append(p)
    chosen.sort()
    kept = np.delete(row, chosen)
    source[r, :len(kept)] = kept
    removed.append(chosen)
  return source, removed


def marked_calls(greedy: np.ndarray, removed: list[list[int]],
                 draft_tokens: int) -> int:
  """Decoder calls speculative decoding needs with `marked_source` drafts.

  Drafts are accepted up to each mark, which ends its call as the call's
  own token; a row of segments of s tokens (the last ending at its EOS or
  the end) takes sum(ceil(s / (K + 1))) calls, the batch the most of its
  rows.
  """
  lengths = model_lib.decoded_lengths(np.asarray(greedy))
  most = 0
  for n, marks in zip(lengths, removed):
    ends = [p + 1 for p in marks if p + 1 < n] + [int(n)]
    starts = [0] + ends[:-1]
    most = max(most, sum(-(-(e - b) // (draft_tokens + 1))
                         for b, e in zip(starts, ends)))
  return most


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'expected an int >= 1, got {text!r}')
  return value


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  common.add_model_flags(parser, default_steps=5)
  parser.add_argument('--num_beams', type=_positive_int, default=1,
                      help='1 = greedy decoding, else beam search')
  parser.add_argument('--draft_tokens', type=int, default=0,
                      help='K > 0: also time speculative greedy decoding '
                      'with K draft tokens per decoder call')
  parser.add_argument('--weight_major_steps',
                      action=argparse.BooleanOptionalAction, default=True,
                      help='steps multiply transposed kernel copies '
                      '(RAHFModel.step_kernels, made once by their own '
                      'program); --no-weight_major_steps multiplies the '
                      'params as stored')
  parser.add_argument('--draft', choices=('output', 'prompt', 'marked'),
                      default='output',
                      help='draft source: the greedy output (all accepted), '
                      'the random prompt (none accepted), or the greedy '
                      'output less --marks tokens per row that play '
                      'keyword marks (drafts rejected there)')
  parser.add_argument('--marks', type=int, default=2,
                      help='with --draft marked: marks per row')
  return common.run_benchmark(parser, argv, 'decoding', run_case, COLUMNS)


if __name__ == '__main__':
  sys.exit(main())
