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
r"""Trains RAHF. Configured with gin, like t5x.

  python -m richhf_jax.train \
    --gin_file=gin/runs/finetune_richhf.gin \
    --gin.MODEL_DIR="'/tmp/rahf'" --gin.DATA_DIR="'/data/joined'" \
    --gin.VOCAB_PATH="'/data/spm.model'"

Resume order (written once, here): the latest checkpoint in MODEL_DIR, else
initialisation from scratch. The data position and the per-step RNG come from
the restored step, so a resumed run repeats the losses of an uninterrupted
one. SIGTERM (preemption) saves a checkpoint at the next step boundary and
exits with status 143.

Multi-host: every host runs the same command; `jax.distributed` starts from
`richhf_jax.train.distributed` and the environment (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID; on TPU pods nothing is needed with
`distributed='on'`). Each host reads its shard of the data; process 0 writes
logs, summaries and the config.
"""

import concurrent.futures
import dataclasses
import itertools
import json
import logging
import os
import signal
import sys
from typing import Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import gin
import jax

from richhf_jax import checkpoints
from richhf_jax import gin_configurables  # pylint: disable=unused-import
from richhf_jax import gin_utils
from richhf_jax import model as model_lib
from richhf_jax import partitioning
from richhf_jax import trainer as trainer_lib
from richhf_jax.data import pipeline
from richhf_jax.weights import init as init_lib
# pylint: enable=g-import-not-at-top

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a killed job reports.
# Set by the program (`__main__`) only: the training batch stream is kept
# here, not torn down when `train` returns, because `exit_without_teardown`
# ends the process without destroying it (see there).
_RETAINED_UNTIL_EXIT: list | None = None


def _restore_or_init(trainer, ckpt, model_config, log_fn,
                     init_from: Sequence[str] = ()) -> int:
  """Resume order: latest checkpoint in the run, else the init checkpoints
  (`weights/init.py`) over a fresh initialisation, else from scratch.

  Returns:
    The data position (global batches already consumed).
  """
  if ckpt.latest_step() is None:
    trainer.init_state()
    if init_from:
      params = init_lib.apply_init_checkpoints(
          trainer.state.params, init_from, model_config, log_fn)
      trainer.state = dataclasses.replace(
          trainer.state, params=jax.device_put(
              params, trainer.state_shardings.params))
    else:
      log_fn(f'initialised from scratch: {trainer.num_params():,} '
             'parameters')
    return 0
  saved = trainer.restore_state(ckpt)
  checkpoints.check_model_config(saved, model_config, ckpt.directory)
  step = int(trainer.state.step)
  log_fn(f'resumed from {ckpt.directory} step {step}')
  return int(saved.get('data_position', step))


def _train_batches(data, model_config, train_config, position: int):
  """The training batches from global step `position`, first one read."""
  # Resuming at `position` skips raw records of the current epoch only.
  ds = pipeline.get_dataset(data, model_config, 'train',
                            train_config.batch_size, shuffle=True,
                            repeat=True, start_step=position)
  batches = pipeline.numpy_batches(ds)
  try:
    first = next(batches)
  except StopIteration:
    return iter(())  # The trainer reports the empty stream.
  return itertools.chain([first], batches)


def _validation_batches(data, model_config, train_config):
  """A function returning the same validation batches on every call."""
  if not train_config.eval_every:
    return None
  ds = pipeline.get_dataset(
      data, model_config, 'validation',
      train_config.eval_batch_size or train_config.batch_size,
      shuffle=False, repeat=True)  # Repeat: fixed-size batches.
  return lambda: itertools.islice(pipeline.numpy_batches(ds),
                                  train_config.eval_steps)


@gin.configurable(module='richhf_jax')
def train(model_dir: str = gin.REQUIRED,
          model_config=gin.REQUIRED,
          data: pipeline.DataConfig = gin.REQUIRED,
          train_config: trainer_lib.TrainConfig = gin.REQUIRED,
          distributed: str = 'auto',
          init_from: Sequence[str] = (),
          log_fn=trainer_lib.console) -> dict[str, float]:
  """Trains a model in `model_dir`; returns the last logged metrics.

  Args:
    model_dir: checkpoints, summaries, config.gin, model-info.txt.
    model_config: the RAHFConfig.
    data: the data config.
    train_config: the TrainConfig (optimizer, mesh, periods).
    distributed: 'auto', 'on' or 'off' (see
      `partitioning.initialize_distributed`).
    init_from: 'KIND:PATH' init checkpoints for a new run (ignored when
      `model_dir` holds a checkpoint); see `richhf_jax.weights.init`.
    log_fn: console output (process 0 only).

  Raises:
    SystemExit: with PREEMPTED_EXIT_CODE after a SIGTERM checkpoint.
  """
  trainer_lib.set_process_xla_flags(train_config)  # Before JAX starts.
  partitioning.initialize_distributed(distributed)
  main = jax.process_index() == 0
  if not main:
    log_fn = lambda line: None  # pylint: disable=unnecessary-lambda-assignment
  pipeline.check_vocab(data, model_config)
  os.makedirs(model_dir, exist_ok=True)
  if main:
    gin_utils.save_operative_config(model_dir)
  model = model_lib.RAHFModel(model_config)
  trainer = trainer_lib.Trainer(model, train_config, data.input_length,
                                data.target_length)
  ckpt = checkpoints.Checkpointer(model_dir, train_config.keep_checkpoints)
  best = None
  if train_config.eval_every and train_config.best_metric:
    best = checkpoints.Checkpointer(
        model_dir, 1, subdir='best', best_metric=train_config.best_metric,
        best_mode=train_config.best_mode)
  meta = {'model_config': model_config, 'data': data,
          'train_config': train_config}
  early = None
  if ckpt.latest_step() is None:
    # A new run reads from step 0: set up the input pipeline and read its
    # first batch in a thread while the state is initialised (the init
    # program's compile overlaps tf.data's tracing and decoding).
    pool = concurrent.futures.ThreadPoolExecutor(1)
    early = pool.submit(_train_batches, data, model_config, train_config, 0)
    pool.shutdown(wait=False)  # The thread ends with its one task.
  position = _restore_or_init(trainer, ckpt, model_config, log_fn,
                              init_from)
  if main:
    trainer.write_model_info(trainer_lib.model_info_path(model_dir))
  if early is not None:  # A new run: position is 0.
    batches = early.result()
  else:
    batches = _train_batches(data, model_config, train_config, position)
  if _RETAINED_UNTIL_EXIT is not None:
    _RETAINED_UNTIL_EXIT.append(batches)

  writer = history = None
  if main:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    writer = metric_writers.create_default_writer(
        os.path.join(model_dir, 'train'), asynchronous=False)
    history = os.path.join(model_dir, 'train', 'metrics.jsonl')

  def on_sigterm(signum, frame):
    del signum, frame
    trainer.stop_requested = True  # Acted on at the next step boundary.

  previous = signal.signal(signal.SIGTERM, on_sigterm)
  try:
    metrics = trainer.train(
        batches, ckpt, meta, writer, log_fn,
        eval_batches=_validation_batches(data, model_config, train_config),
        best_ckpt=best, history_path=history)
  finally:
    signal.signal(signal.SIGTERM, previous)
    if writer is not None:
      writer.close()
    ckpt.close()
    if best is not None:
      best.close()
  if trainer.preempted:
    log_fn(f'SIGTERM: saved step {int(trainer.state.step)}; exiting')
    sys.exit(PREEMPTED_EXIT_CODE)
  if main:
    with open(os.path.join(model_dir, 'train_metrics.json'), 'w') as f:
      json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


def exit_without_teardown(status: int) -> None:
  """Ends a single-process training program at once with `status`.

  Destroying the tf.data training iterator blocked the program for 5-60 s
  after its last step (measured after the demo's 40- to 2,000-step runs:
  the main thread waits in the iterator's destructor for one of tf.data's
  threads); after a SIGTERM that wait eats into the scheduler's grace
  period. `train` returns (or exits with PREEMPTED_EXIT_CODE) only once
  every checkpoint, summary and metrics file is written and closed, so the
  program keeps the iterator alive (`_RETAINED_UNTIL_EXIT`) and ends here
  without running destructors once its output is flushed. Multi-host runs
  exit normally (`jax.distributed` shuts down at exit).
  """
  if jax.process_count() > 1:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  logging.shutdown()  # Flushes and closes the `logging` handlers.
  os._exit(status)  # pylint: disable=protected-access


if __name__ == '__main__':
  _RETAINED_UNTIL_EXIT = []
  gin_utils.run(train, on_exit=exit_without_teardown)
