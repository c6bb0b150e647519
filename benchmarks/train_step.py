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
"""Train-step throughput and memory of RAHF (the trainer's real step).

Builds `richhf_jax.trainer.Trainer` (gradient clip + AdamW or Adafactor,
state donated)
with random parameters placed on the trainer's state shardings, compiles its
step ahead of time on a random batch, then times --steps steps after
--warmup.
FLOPs are XLA's count for the whole step (forward, backward, optimizer);
`xla_*_gib` are XLA's static memory plan of the step (`--compile_only`
reports those without running a step: a memory estimate for cases too slow
or too large to run here).

  python benchmarks/train_step.py --config small --batch 1,2 \
      [--variant multihead,augmented] [--steps 3] [--remat] [--dtype float32]
      [--optimizer adafactor] [--mu_dtype bfloat16]
      [--cpu_memory_scheduler false] [--grad_accum_steps 2]
      [--heatmap_batch_chunks 2]

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
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from richhf_jax import model as model_lib
from richhf_jax import trainer as trainer_lib
# pylint: enable=g-import-not-at-top

COLUMNS = ('config', 'variant', 'batch', 'remat', 'dtype', 'optimizer',
           'cpu_memory_scheduler', 'examples_per_sec',
           'sec_per_call', 'compile_sec', 'gflop_per_example',
           'achieved_gflops', 'fraction_of_peak', 'peak_memory_gib',
           'xla_total_gib')


def _random_state(trainer: trainer_lib.Trainer, model: model_lib.RAHFModel,
                  input_length: int, target_length: int
                  ) -> trainer_lib.TrainState:
  """A TrainState with random params on the trainer's shardings."""
  shardings = trainer.state_shardings
  params = jax.device_put(
      common.init_params(model, input_length, target_length),
      shardings.params)
  opt_state = jax.jit(trainer.tx.init,
                      out_shardings=shardings.opt_state)(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
  return trainer_lib.TrainState(step=step, params=params,
                                opt_state=opt_state)


def _trainer(name: str, variant: str, batch: int, args: argparse.Namespace,
             input_length: int, target_length: int, heatmap_batch_chunks: int,
             grad_accum_steps: int) -> trainer_lib.Trainer:
  """The trainer of one case (its state is not made here)."""
  config = common.model_config(name, variant, args.dtype, args.remat,
                               args.heatmap_head, heatmap_batch_chunks,
                               wiring=args.wiring)
  # --compiler_options: None = what training compiles with (TrainConfig's
  # defaults); otherwise exactly the options given.
  options = getattr(args, 'compiler_options', None)
  extra = ({} if options is None else
           dict(compiler_options=options, default_compiler_options=False))
  train_config = trainer_lib.TrainConfig(
      num_steps=args.warmup + args.steps + 1, batch_size=batch,
      warmup_steps=1, log_every=1, optimizer=args.optimizer,
      mu_dtype=args.mu_dtype or None,
      cpu_memory_scheduler=args.cpu_memory_scheduler,
      grad_accum_steps=grad_accum_steps, **extra)
  return trainer_lib.Trainer(model_lib.RAHFModel(config), train_config,
                             input_length, target_length)


def run_case(name: str, variant: str, batch: int, args: argparse.Namespace,
             peak_gflops: float) -> dict:
  """Compiles and times the train step of one case."""
  input_length, target_length = common.lengths(args, name)
  trainer = _trainer(name, variant, batch, args, input_length, target_length,
                     args.heatmap_batch_chunks, args.grad_accum_steps)
  model, config = trainer.model, trainer.model.config
  t0 = time.perf_counter()
  # The trainer's state layout and shardings, with host-drawn parameters
  # (see `common.init_params`) instead of its jitted init; compile-only runs
  # lower on the abstract state and allocate nothing.
  abstract, trainer.state_shardings = trainer.abstract_state()
  if args.compile_only:
    trainer.state = nn.meta.unbox(abstract)
  else:
    trainer.state = _random_state(trainer, model, input_length,
                                  target_length)
  jax.block_until_ready(trainer.state)
  init_sec = time.perf_counter() - t0
  host_batch = common.test_utils.fake_batch(config, batch, input_length,
                                            target_length)
  global_batch = trainer.put_batch(host_batch)
  compile_sec = trainer.compile(
      {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
       for k, v in global_batch.items()})
  # The trainer keeps the compiled step; its cost analysis is the FLOPs.
  compiled = getattr(trainer, '_compiled_step', None)
  flops = common.program_flops(getattr(trainer, '_lowered_step', None),
                               compiled)
  if args.heatmap_batch_chunks > 1 or args.grad_accum_steps > 1:
    # XLA's cost analysis counts a loop body once, whatever its trip count:
    # count the same step without the loops (lowered only, not compiled).
    flat = _trainer(name, variant, batch, args, input_length, target_length,
                    1, 1)
    flat.use_abstract_state()
    flops = common.cost_flops(flat.lower(
        {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
         for k, v in global_batch.items()})) or flops
  memory = common.memory_analysis_gib(compiled)
  if common.on_cpu():
    # Where the RSS high-water mark comes from: compiling, or the step.
    memory['peak_before_step_gib'] = round(
        common.peak_memory_bytes()[1] / 2 ** 30, 3)
    rss = common.current_rss_bytes()
    memory['rss_before_step_gib'] = (round(rss / 2 ** 30, 3)
                                     if rss is not None else None)
  if args.compile_only:
    times = []
  else:
    times = common.time_calls(
        lambda: trainer.step(global_batch)['loss/total'], args.steps,
        args.warmup)
  row = dict(benchmark='train_step', config=name, variant=variant,
             batch=batch, remat=args.remat, dtype=args.dtype,
             optimizer=args.optimizer, mu_dtype=args.mu_dtype or None,
             cpu_memory_scheduler=args.cpu_memory_scheduler,
             xla_flags=os.environ.get('XLA_FLAGS', ''),
             compiler_options=dict(trainer.compiler_options or {}),
             grad_accum_steps=args.grad_accum_steps,
             num_opt_state=sum(int(np.prod(x.shape)) for x in
                               jax.tree.leaves(trainer.state.opt_state)),
             heatmap_head=args.heatmap_head if name != 'tiny' else 'tiny',
             heatmap_batch_chunks=args.heatmap_batch_chunks,
             input_length=input_length, target_length=target_length,
             heatmap_size=list(config.heatmap_size),
             num_params=sum(int(np.prod(x.shape)) for x in
                            jax.tree.leaves(trainer.state.params)),
             init_sec=round(init_sec, 2),
             compile_sec=round(compile_sec, 2),
             matmul_peak_gflops=round(peak_gflops, 1))
  row.update(memory)
  if times:
    row.update(common.summarize(times, batch, flops, peak_gflops))
  else:
    # Compile only: the FLOPs and XLA's memory plan, nothing timed.
    kind, peak = common.peak_memory_bytes()
    row.update(gflop_per_example=round(flops / 1e9 / batch, 2)
               if flops else None, compile_only=True, memory_kind=kind,
               peak_memory_gib=round(peak / 2 ** 30, 3))
  row.update(common.machine_info())
  return row


def _bool(text: str) -> bool:
  if text.lower() in ('true', '1', 'yes'):
    return True
  if text.lower() in ('false', '0', 'no'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  common.add_model_flags(parser)
  parser.add_argument('--remat', action='store_true',
                      help='rematerialize ViT blocks, T5 layers and heatmap '
                      'upsampling blocks')
  parser.add_argument('--optimizer', default='adamw',
                      choices=trainer_lib.OPTIMIZERS,
                      help='TrainConfig.optimizer')
  parser.add_argument('--mu_dtype', default='',
                      help="AdamW first-moment dtype, e.g. 'bfloat16' "
                      '(default: the parameter dtype)')
  parser.add_argument('--cpu_memory_scheduler', type=_bool, default=True,
                      help='TrainConfig.cpu_memory_scheduler: true = XLA:CPU '
                      'memory-minimising scheduler, false = its '
                      'concurrency-optimised default')
  parser.add_argument('--grad_accum_steps', type=int, default=1,
                      help='TrainConfig.grad_accum_steps (micro-batches per '
                      'step; must divide --batch)')
  parser.add_argument('--heatmap_batch_chunks', type=int, default=1,
                      help='HeatmapHeadConfig.batch_chunks: run the heatmap '
                      'heads over this many sequential slices of the batch')
  parser.add_argument('--compile_only', action='store_true',
                      help='report FLOPs and XLA memory analysis of the '
                      'compiled step without running it')
  # A process-wide XLA flag: set before the first JAX call starts the CPU
  # backend (run_benchmark's matmul peak), while XLA_FLAGS is still read.
  known, _ = parser.parse_known_args(argv)
  flags_set = trainer_lib.set_process_xla_flags(trainer_lib.TrainConfig(
      cpu_memory_scheduler=known.cpu_memory_scheduler))
  if not flags_set:
    common.log('warning: the JAX backend is already running; '
               '--cpu_memory_scheduler takes effect only in a new process')
  return common.run_benchmark(parser, argv, 'train step', run_case, COLUMNS)


if __name__ == '__main__':
  sys.exit(main())
