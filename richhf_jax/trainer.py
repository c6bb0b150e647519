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
"""The training loop: born-sharded state, one compiled step, checkpoints.

Phases of `train()` (big_vision style): build the mesh and the optimizer;
create the train state (restored from the model directory when a checkpoint
is there, else initialised directly onto its shardings); compile the step
ahead of time; loop with metrics, checkpoints and a non-finite-loss stop.
"""

import dataclasses
import logging
import math
import os
import time
from typing import Any, Callable, Iterator, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from richhf_jax import checkpoints
from richhf_jax import model as model_lib
from richhf_jax import partitioning

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping of a training run.

  Attributes:
    num_steps: total optimizer steps.
    batch_size: global batch size.
    learning_rate: peak learning rate.
    warmup_steps: linear warmup from 0.
    schedule: 'cosine' (to 0 at num_steps), 'rsqrt' or 'constant' after
      warmup.
    weight_decay: AdamW decoupled weight decay (not applied to 1-D params:
      norm scales and biases).
    clip_norm: global gradient-norm clip; 0 disables.
    b1, b2: Adam moments.
    seed: parameter init and dropout RNG.
    log_every: console / TensorBoard metrics period (steps).
    checkpoint_every: checkpoint period (steps); the last step is always
      saved.
    keep_checkpoints: how many checkpoints to keep.
    fsdp: shard parameters over the data axis as well.
    model_parallel: size of the mesh's `model` axis.
  """
  num_steps: int = 1000
  batch_size: int = 32
  learning_rate: float = 1e-3
  warmup_steps: int = 100
  schedule: str = 'cosine'
  weight_decay: float = 1e-4
  clip_norm: float = 1.0
  b1: float = 0.9
  b2: float = 0.999
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  fsdp: bool = False
  model_parallel: int = 1

  def __post_init__(self):
    schedules = ('cosine', 'rsqrt', 'constant')
    if self.schedule not in schedules:
      raise ValueError(f'TrainConfig.schedule={self.schedule!r}; expected one '
                       f'of {schedules}')
    for name in ('num_steps', 'batch_size', 'log_every', 'checkpoint_every',
                 'keep_checkpoints', 'model_parallel'):
      if getattr(self, name) < 1:
        raise ValueError(f'TrainConfig.{name} must be >= 1, got '
                         f'{getattr(self, name)}')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: PyTree
  opt_state: PyTree


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
  """Linear warmup, then cosine decay / rsqrt / constant."""
  warmup = max(cfg.warmup_steps, 1)
  if cfg.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, warmup, max(cfg.num_steps, warmup + 1))
  if cfg.schedule == 'rsqrt':
    def rsqrt(step):
      step = jnp.maximum(step, 1).astype(jnp.float32)
      return cfg.learning_rate * jnp.minimum(
          step / warmup, jnp.sqrt(warmup / step))
    return rsqrt
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, warmup),
       optax.constant_schedule(cfg.learning_rate)], [warmup])


def _decay_mask(params: PyTree) -> PyTree:
  """Weight decay on matrices and conv kernels only (not norms, biases)."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  chain = []
  if cfg.clip_norm > 0:
    chain.append(optax.clip_by_global_norm(cfg.clip_norm))
  chain.append(optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2,
                           weight_decay=cfg.weight_decay, mask=_decay_mask))
  return optax.chain(*chain)


def make_mesh(model_parallel: int = 1) -> jax.sharding.Mesh:
  """A ('data', 'model') mesh over all devices (Auto axes, see notes)."""
  n = jax.device_count()
  if n % model_parallel:
    raise ValueError(f'model_parallel={model_parallel} does not divide the '
                     f'{n} devices')
  return jax.make_mesh(
      (n // model_parallel, model_parallel), ('data', 'model'),
      axis_types=(jax.sharding.AxisType.Auto,) * 2)


def console(line: str) -> None:
  """Prints a progress line at once (also when stdout is a pipe)."""
  print(line, flush=True)


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite."""


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h:d}:{m:02d}:{s:02d}'


class Trainer:
  """Owns the mesh, the compiled step and the train state of one run.

  Attributes:
    model: the model wrapper.
    config: the TrainConfig.
    mesh: the device mesh.
    rules: logical axis rules.
    state: the current TrainState (unboxed, sharded).
    state_shardings: NamedShardings of the state.
  """

  def __init__(self, model: model_lib.RAHFModel, config: TrainConfig,
               input_length: int, target_length: int):
    self.model = model
    self.config = config
    self.input_length = input_length
    self.target_length = target_length
    self.mesh = make_mesh(config.model_parallel)
    self.rules = partitioning.standard_logical_axis_rules(fsdp=config.fsdp)
    self.tx = make_optimizer(config)
    self.schedule = learning_rate_schedule(config)
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    self._compiled_step = None
    self.state = None
    self.state_shardings = None

  # ------------------------------------------------------------------------
  # State.
  # ------------------------------------------------------------------------

  def _init_fn(self, rng):
    variables = self.model.get_initial_variables(
        rng, self.input_length, self.target_length)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.tx.init(params))

  def abstract_state(self) -> tuple[PyTree, PyTree]:
    """(boxed abstract state, NamedShardings of the unboxed state)."""
    rng = jax.random.key(self.config.seed)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      abstract = jax.eval_shape(self._init_fn, rng)
    specs = nn.get_partition_spec(abstract)
    shardings = nn.logical_to_mesh_sharding(specs, self.mesh, self.rules)
    return abstract, shardings

  def init_state(self) -> TrainState:
    """Initialises the state directly onto its shardings."""
    abstract, shardings = self.abstract_state()
    self.state_shardings = shardings
    t0 = time.time()
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      init = jax.jit(lambda r: nn.meta.unbox(self._init_fn(r)),
                     out_shardings=shardings)
      self.state = init(jax.random.key(self.config.seed))
    logging.info('initialised parameters in %.1fs', time.time() - t0)
    return self.state

  def restore_state(self, ckpt: checkpoints.Checkpointer,
                    step: int | None = None) -> dict[str, Any]:
    """Restores the state from `ckpt` onto this run's shardings."""
    abstract, shardings = self.abstract_state()
    self.state_shardings = shardings
    target = checkpoints.abstract_like(nn.meta.unbox(abstract), shardings)
    self.state, meta = ckpt.restore(target, step)
    return meta

  def num_params(self) -> int:
    return sum(int(np.prod(x.shape))
               for x in jax.tree.leaves(self.state.params))

  def write_model_info(self, path: str) -> None:
    """Param path, shape, dtype and partition spec, one per line."""
    flat = flax.traverse_util.flatten_dict(self.state.params, sep='/')
    flat_sh = flax.traverse_util.flatten_dict(
        self.state_shardings.params, sep='/')
    with open(path, 'w') as f:
      for k in sorted(flat):
        v = flat[k]
        f.write(f'{k}\t{tuple(v.shape)}\t{v.dtype}\t{flat_sh[k].spec}\n')
      f.write(f'total parameters: {self.num_params():,}\n')

  # ------------------------------------------------------------------------
  # Step.
  # ------------------------------------------------------------------------

  def _train_step(self, state: TrainState, batch: Mapping[str, jax.Array],
                  rng: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
    (_, aux), grads = grad_fn(state.params, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    aux['grad_norm'] = optax.tree.norm(grads)
    aux['learning_rate'] = self.schedule(state.step)
    return TrainState(step=state.step + 1, params=params,
                      opt_state=opt_state), aux

  def compile(self, batch_spec: Mapping[str, jax.ShapeDtypeStruct]) -> float:
    """Compiles the train step ahead of time; returns compile seconds."""
    t0 = time.time()
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      batch_sh = {k: self.batch_sharding for k in batch_spec}
      step = jax.jit(
          self._train_step,
          in_shardings=(self.state_shardings, batch_sh,
                        NamedSharding(self.mesh, P())),
          out_shardings=(self.state_shardings,
                         NamedSharding(self.mesh, P())),
          donate_argnums=(0,))
      self._compiled_step = step.lower(
          self.state, dict(batch_spec),
          jax.random.key(self.config.seed)).compile()
    seconds = time.time() - t0
    logging.info('compiled the train step in %.1fs', seconds)
    return seconds

  def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays sharded over `data`."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding,
                                                      np.asarray(v))
            for k, v in batch.items()}

  def step(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    rng = jax.random.key(self.config.seed + 1)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      self.state, aux = self._compiled_step(self.state, batch, rng)
    return aux

  # ------------------------------------------------------------------------
  # Loop.
  # ------------------------------------------------------------------------

  def train(self, batches: Iterator[Mapping[str, np.ndarray]],
            ckpt: checkpoints.Checkpointer | None = None,
            meta: Mapping[str, Any] | None = None,
            writer: Any = None,
            log_fn: Callable[[str], None] = console) -> dict[str, float]:
    """Runs from the current step to `config.num_steps`.

    Args:
      batches: host-local numpy batches, positioned at the current step.
      ckpt: where to save checkpoints (None: no checkpoints).
      meta: JSON-able run description saved with every checkpoint.
      writer: a clu metric writer (None: console only).
      log_fn: console output.

    Returns:
      The last logged metrics (means over the last logging window).

    Raises:
      NonFiniteLossError: naming the step window and the non-finite terms.
    """
    cfg = self.config
    start = int(self.state.step)
    if start >= cfg.num_steps:
      log_fn(f'already at step {start} >= num_steps={cfg.num_steps}')
      return {}
    window, window_start, last = [], start, {}
    t_window = t_start = time.time()
    for step in range(start, cfg.num_steps):
      try:
        host_batch = next(batches)
      except StopIteration:
        raise ValueError(f'the training data ran out at step {step}; use a '
                         'repeating dataset') from None
      if self._compiled_step is None:
        check = {k: np.asarray(v) for k, v in host_batch.items()}
        model_lib.check_batch(check, self.model.config)
        global_batch = self.put_batch(host_batch)
        secs = self.compile({k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                             for k, v in global_batch.items()})
        log_fn(f'compiled train step in {secs:.1f}s')
      else:
        global_batch = self.put_batch(host_batch)
      window.append(self.step(global_batch))
      done = step + 1
      if done % cfg.log_every == 0 or done == cfg.num_steps:
        last = self._log_window(window, window_start, done, t_window,
                                t_start, start, writer, log_fn)
        window, window_start, t_window = [], done, time.time()
      if ckpt is not None and (done % cfg.checkpoint_every == 0 or
                               done == cfg.num_steps):
        ckpt.save(done, self.state, dict(meta or {}, step=done))
    if ckpt is not None:
      ckpt.wait()
    return last

  def _log_window(self, window, window_start, done, t_window, t_start,
                  start, writer, log_fn) -> dict[str, float]:
    metrics = jax.device_get(window)
    means = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
    bad = sorted(k for k, v in means.items()
                 if k.startswith('loss/') and not math.isfinite(v))
    if bad:
      raise NonFiniteLossError(
          f'non-finite loss between steps {window_start + 1} and {done}: '
          + ', '.join(f'{k}={means[k]}' for k in bad))
    now = time.time()
    steps_per_sec = len(window) / max(now - t_window, 1e-9)
    means['steps_per_sec'] = steps_per_sec
    means['examples_per_sec'] = steps_per_sec * self.config.batch_size
    rate = (done - start) / max(now - t_start, 1e-9)
    eta = _format_eta((self.config.num_steps - done) / max(rate, 1e-9))
    if writer is not None:
      writer.write_scalars(done, means)
      writer.flush()
    terms = ' '.join(f'{k.split("/", 1)[1]}={v:.4f}'
                     for k, v in sorted(means.items())
                     if k.startswith('loss/') and k != 'loss/total')
    log_fn(f'step {done}/{self.config.num_steps} '
           f'loss={means["loss/total"]:.4f} ({terms}) '
           f'acc={means["text/accuracy"]:.3f} '
           f'lr={means["learning_rate"]:.2e} '
           f'{steps_per_sec:.2f} steps/s eta {eta}')
    return means


def model_info_path(model_dir: str) -> str:
  return os.path.join(model_dir, 'model-info.txt')
