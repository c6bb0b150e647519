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
initialisation from scratch. SIGTERM (preemption) saves a checkpoint at the
current step before exiting.
"""

import json
import os
import signal
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import gin
import jax

from richhf_jax import checkpoints
from richhf_jax import gin_configurables  # pylint: disable=unused-import
from richhf_jax import gin_utils
from richhf_jax import model as model_lib
from richhf_jax import trainer as trainer_lib
from richhf_jax.data import pipeline
# pylint: enable=g-import-not-at-top


class _Preempted(Exception):
  pass


@gin.configurable(module='richhf_jax')
def train(model_dir: str = gin.REQUIRED,
          model_config=gin.REQUIRED,
          data: pipeline.DataConfig = gin.REQUIRED,
          train_config: trainer_lib.TrainConfig = gin.REQUIRED,
          log_fn=trainer_lib.console) -> dict[str, float]:
  """Trains a model in `model_dir`; returns the last logged metrics."""
  main = jax.process_index() == 0
  pipeline.check_vocab(data, model_config)
  os.makedirs(model_dir, exist_ok=True)
  if main:
    gin_utils.save_operative_config(model_dir)
  model = model_lib.RAHFModel(model_config)
  trainer = trainer_lib.Trainer(model, train_config, data.input_length,
                                data.target_length)
  ckpt = checkpoints.Checkpointer(model_dir, train_config.keep_checkpoints)
  meta = {'model_config': model_config, 'data': data,
          'train_config': train_config}
  if ckpt.latest_step() is not None:
    saved = trainer.restore_state(ckpt)
    checkpoints.check_model_config(saved, model_config, ckpt.directory)
    log_fn(f'resumed from {ckpt.directory} step {int(trainer.state.step)}')
  else:
    trainer.init_state()
    log_fn(f'initialised from scratch: {trainer.num_params():,} parameters')
  if main:
    trainer.write_model_info(trainer_lib.model_info_path(model_dir))
  start = int(trainer.state.step)
  ds = pipeline.get_dataset(data, model_config, 'train',
                            train_config.batch_size, shuffle=True,
                            repeat=True)
  batches = pipeline.numpy_batches(ds, start_step=start)

  writer = None
  if main:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    writer = metric_writers.create_default_writer(
        os.path.join(model_dir, 'train'), asynchronous=False)

  def on_sigterm(signum, frame):
    del signum, frame
    raise _Preempted()

  previous = signal.signal(signal.SIGTERM, on_sigterm)
  try:
    metrics = trainer.train(batches, ckpt, meta, writer, log_fn)
  except _Preempted:
    step = int(trainer.state.step)
    log_fn(f'SIGTERM: saving a checkpoint at step {step} and exiting')
    ckpt.save(step, trainer.state, dict(meta, step=step))
    ckpt.close()
    sys.exit(143)
  finally:
    signal.signal(signal.SIGTERM, previous)
    if writer is not None:
      writer.close()
  ckpt.close()
  if main:
    with open(os.path.join(model_dir, 'train_metrics.json'), 'w') as f:
      json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


if __name__ == '__main__':
  gin_utils.run(train)
