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
ahead of time; loop with metrics, periodic validation, checkpoints (keep-N
plus keep-best) and a non-finite-loss stop.

Exact resume: the step's dropout RNG is `fold_in(key(seed + 1), step)` and
the data position is the step (one global batch per step), both restored
from the checkpoint, so a resumed run repeats the uninterrupted run's losses.
"""

import ctypes
import ctypes.util
import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax._src import xla_bridge  # backends_are_initialized: no public API.
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from richhf_jax import checkpoints
from richhf_jax import compile_options
from richhf_jax import model as model_lib
from richhf_jax import partitioning

PyTree = Any

OPTIMIZERS = ('adamw', 'adafactor')
# XLA:CPU's default scheduler runs independent ops concurrently and, to do
# so, starts recomputations early: rematerialised activations then live
# through the whole backward pass (measured on the paper configuration).
# jax 0.10.2's CPU client ignores this option per compile (measured: the
# memory plan does not change), so it goes into XLA_FLAGS before the
# backend starts (`set_process_xla_flags`).
CPU_SCHEDULER_FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler'
# Adafactor factors the second moment of a parameter whose two largest
# dimensions are at least this: 64 covers [embed, heads, head_dim]
# attention kernels (head_dim 64), whose T5X layout [embed, heads *
# head_dim] the usual 128 would factor.
ADAFACTOR_MIN_DIM_TO_FACTOR = 64


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping of a training run.

  Attributes:
    num_steps: total optimizer steps.
    batch_size: global batch size.
    learning_rate: peak learning rate.
    warmup_steps: linear warmup from 0 (0: none).
    schedule: 'cosine' (to 0 at num_steps), 'rsqrt' or 'constant' after
      warmup.
    weight_decay: AdamW decoupled weight decay (not applied to 1-D params:
      norm scales and biases).
    clip_norm: global gradient-norm clip; 0 disables.
    b1, b2: Adam moments.
    eps: Adam's denominator epsilon. Gradients far below it (e.g. the
      exactly-zero gradient of attention key biases, which only float
      rounding makes non-zero) then give no update instead of a full-size
      one of random sign.
    seed: parameter init and dropout RNG.
    log_every: console / TensorBoard metrics period (steps).
    checkpoint_every: checkpoint period (steps); the last step is always
      saved.
    keep_checkpoints: how many checkpoints to keep.
    fsdp: shorthand for FSDP over every non-model device (`fsdp_parallel=-1`,
      `data_parallel=1`) when `fsdp_parallel` is left at 1.
    model_parallel: size of the mesh's `model` axis (tensor parallelism).
    data_parallel: size of the `data` axis; -1 = the remaining devices.
    fsdp_parallel: size of the `fsdp` axis (batch split over it too, params
      and optimizer state sharded over it); -1 = the remaining devices.
    grad_accum_steps: micro-batches per step (`batch_size` is split into
      this many; gradients and metrics are averaged over them).
    lr_scales: learning-rate multipliers by module, e.g. `{'decoder': 0.1}`;
      keys are parameter path prefixes (`MODULE_ALIASES` names allowed).
    freeze: modules whose parameters are not trained (e.g. `('vit',)`);
      they get no optimizer state and no weight decay.
    eval_every: validation period (steps); 0 disables validation.
    eval_steps: validation batches per evaluation (the same ones each time).
    eval_batch_size: validation batch size; 0 = `batch_size`.
    best_metric: validation metric that picks the kept best checkpoint
      (a key of the validation metrics, e.g. 'loss/total'); '' disables.
    best_mode: 'min' or 'max' for `best_metric`.
    optimizer: 'adamw' (two float32 moments per parameter: 2x the
      parameters' memory) or 'adafactor' (factored second moments, no first
      moment: 16 MB for the paper configuration instead of 4.8 GiB).
      Both take the schedule, `clip_norm`, `weight_decay` (decoupled:
      `lr * weight_decay * param`, matrices only), `freeze` and `lr_scales`.
      Adafactor's learning rate is an absolute step size as in AdamW (no
      scaling by the parameter's RMS); it clips each update's RMS to 1 and
      ignores `b1`, `b2`, `eps`. A checkpoint restores only into the
      optimizer that wrote it.
    mu_dtype: dtype of AdamW's first moment, e.g. 'bfloat16' (halves its
      memory); None = the parameter dtype. AdamW only.
    cpu_memory_scheduler: schedule CPU programs with XLA's
      memory-minimising scheduler instead of its concurrency-optimised one,
      which keeps rematerialised activations alive through the backward
      pass. A process-wide XLA flag: takes effect only through
      `set_process_xla_flags` before JAX starts its backends (`train()`
      does this); no effect on GPU / TPU programs.
    compiler_options: extra XLA compile options of the train and validation
      steps, e.g. `{'xla_cpu_enable_fast_math': False}` (any backend; an
      unknown name fails at compile time). They override the defaults.
    default_compiler_options: compile the train and validation steps with
      `compile_options.defaults()` of the mesh's platform (on CPU: no
      YNNPACK fusions of convolutions, ~8% faster steps), under
      `compiler_options`.
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
  eps: float = 1e-8
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  fsdp: bool = False
  model_parallel: int = 1
  data_parallel: int = -1
  fsdp_parallel: int = 1
  grad_accum_steps: int = 1
  lr_scales: Mapping[str, float] = dataclasses.field(default_factory=dict)
  freeze: tuple[str, ...] = ()
  eval_every: int = 0
  eval_steps: int = 4
  eval_batch_size: int = 0
  best_metric: str = 'loss/total'
  best_mode: str = 'min'
  optimizer: str = 'adamw'
  mu_dtype: str | None = None
  cpu_memory_scheduler: bool = True
  compiler_options: Mapping[str, Any] = dataclasses.field(
      default_factory=dict)
  default_compiler_options: bool = True

  def __post_init__(self):
    schedules = ('cosine', 'rsqrt', 'constant')
    if self.schedule not in schedules:
      raise ValueError(f'TrainConfig.schedule={self.schedule!r}; expected one '
                       f'of {schedules}')
    for name in ('num_steps', 'batch_size', 'log_every', 'checkpoint_every',
                 'keep_checkpoints', 'model_parallel', 'grad_accum_steps',
                 'eval_steps'):
      if getattr(self, name) < 1:
        raise ValueError(f'TrainConfig.{name} must be >= 1, got '
                         f'{getattr(self, name)}')
    for name in ('eval_every', 'eval_batch_size'):
      if getattr(self, name) < 0:
        raise ValueError(f'TrainConfig.{name} must be >= 0, got '
                         f'{getattr(self, name)}')
    if self.batch_size % self.grad_accum_steps:
      raise ValueError(
          f'TrainConfig.batch_size={self.batch_size} is not divisible by '
          f'grad_accum_steps={self.grad_accum_steps}')
    if self.best_mode not in ('min', 'max'):
      raise ValueError(f"TrainConfig.best_mode={self.best_mode!r}; expected "
                       "'min' or 'max'")
    for k, v in dict(self.lr_scales).items():
      if not isinstance(v, (int, float)) or v < 0:
        raise ValueError(f'TrainConfig.lr_scales[{k!r}]={v!r}; expected a '
                         'number >= 0')
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'TrainConfig.optimizer={self.optimizer!r}; expected '
                       f'one of {OPTIMIZERS}')
    if self.mu_dtype is not None:
      if self.optimizer != 'adamw':
        raise ValueError(f'TrainConfig.mu_dtype={self.mu_dtype!r} applies to '
                         "optimizer='adamw' only (adafactor keeps no first "
                         'moment); leave it None')
      try:
        dtype = jnp.dtype(self.mu_dtype)
      except TypeError:
        dtype = None
      if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f'TrainConfig.mu_dtype={self.mu_dtype!r}; expected '
                         "a float dtype name such as 'bfloat16' or None")
    for name in ('cpu_memory_scheduler', 'default_compiler_options'):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f'TrainConfig.{name}={getattr(self, name)!r}; '
                         'expected a bool')
    options = self.compiler_options
    if not isinstance(options, Mapping) or not all(
        isinstance(k, str) for k in options):
      raise ValueError(f'TrainConfig.compiler_options={options!r}; expected '
                       'a dict from XLA option names to values')
    # Lists (from JSON or gin) become tuples so the config stays hashable.
    object.__setattr__(self, 'freeze', tuple(self.freeze))

  def mesh_sizes(self) -> dict[str, int]:
    """(data, fsdp, model) sizes with -1 for the axis that takes the rest."""
    if self.fsdp and self.fsdp_parallel == 1:
      return {'data': 1, 'fsdp': -1, 'model': self.model_parallel}
    return {'data': self.data_parallel, 'fsdp': self.fsdp_parallel,
            'model': self.model_parallel}


def xla_flags_for(cfg: TrainConfig, flags: str) -> str:
  """`flags` (an XLA_FLAGS value) with the config's process-wide flags.

  A scheduler flag already in `flags` is left as it is (the environment
  wins over the config default).
  """
  if cfg.cpu_memory_scheduler and CPU_SCHEDULER_FLAG not in flags:
    flags = f'{flags} {CPU_SCHEDULER_FLAG}=false'.strip()
  return flags


def set_process_xla_flags(cfg: TrainConfig) -> bool:
  """Puts the config's process-wide XLA flags into XLA_FLAGS.

  Call before anything starts a JAX backend (`jax.devices()`, the first
  array, `jax.distributed.initialize`): XLA reads XLA_FLAGS once.

  Returns:
    Whether XLA_FLAGS now holds them for this process (False: a backend had
    already started with other flags; XLA_FLAGS is then left as it is).
  """
  flags = os.environ.get('XLA_FLAGS', '')
  wanted = xla_flags_for(cfg, flags)
  if wanted == flags:
    return True
  if xla_bridge.backends_are_initialized():
    return False
  os.environ['XLA_FLAGS'] = wanted
  return True


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: PyTree
  opt_state: PyTree


def config_for_restore(saved: Mapping[str, Any] | None) -> TrainConfig:
  """The TrainConfig of checkpoint meta, with a mesh of whatever is here.

  The optimizer settings shape the saved optimizer state and must be kept;
  the mesh sizes describe where the checkpoint was written and are reset so
  that it restores onto this machine's devices (e.g. 8 -> 1 for evaluation).
  Fields this version does not know are dropped.
  """
  names = {f.name for f in dataclasses.fields(TrainConfig)}
  kept = {k: v for k, v in dict(saved or {}).items() if k in names}
  kept.update(fsdp=False, data_parallel=-1, fsdp_parallel=1,
              model_parallel=1)
  return TrainConfig(**kept)


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
  """Linear warmup, then cosine decay / rsqrt / constant.

  With `warmup_steps=0` the first step already has the full rate (a warmup
  of 1 step gives the first step rate 0).
  """
  warmup = max(cfg.warmup_steps, 1)
  if cfg.warmup_steps == 0 and cfg.schedule == 'constant':
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.warmup_steps == 0 and cfg.schedule == 'cosine':
    return optax.cosine_decay_schedule(cfg.learning_rate,
                                       max(cfg.num_steps, 1))
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


# On CPU, models below this many parameters compile their initialisation
# program without LLVM's optimisations: it runs once, so for them compile time
# is all that counts (demo model: 15.8 -> 8.0 s; some truncated-normal draws
# round differently in the last bit). Larger models keep them: the small
# benchmark configuration's init would compile 43 -> 28 s but run 3.2 ->
# 20.7 s (measured on the 2-core machine).
FAST_INIT_COMPILE_MAX_PARAMS = 10_000_000


def init_compiler_options(num_params: int,
                          backend: str) -> dict[str, Any] | None:
  """XLA compiler options for the state-initialisation program (or None)."""
  if backend == 'cpu' and num_params < FAST_INIT_COMPILE_MAX_PARAMS:
    return {'xla_backend_optimization_level': 0}
  return None


def _param_count(params: PyTree) -> int:
  """Elements in the leaves of `params` (arrays or shape structs)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def _decay_mask(params: PyTree) -> PyTree:
  """Weight decay on matrices and conv kernels only (not norms, biases)."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


# Friendly module names for `freeze` / `lr_scales` -> parameter path prefixes.
MODULE_ALIASES = {'vit': 'img', 'projection': 'img_projection',
                  'embedder': 'token_embedder'}
FROZEN = 'frozen'
DEFAULT_GROUP = 'default'


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k)))
                  for k in path)


def _matches(path: str, module: str) -> bool:
  prefix = MODULE_ALIASES.get(module, module)
  return path == prefix or path.startswith(prefix + '/')


def param_groups(cfg: TrainConfig, params: PyTree) -> PyTree:
  """Labels each parameter FROZEN, a `lr_scales` key, or DEFAULT_GROUP.

  Raises:
    ValueError: a `freeze` or `lr_scales` name matches no parameter (the
      message lists the top-level modules).
  """
  paths = [_path_str(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(params)[0]]
  for name in list(cfg.freeze) + list(cfg.lr_scales):
    if not any(_matches(p, name) for p in paths):
      tops = sorted({p.split('/')[0] for p in paths})
      raise ValueError(
          f'TrainConfig freeze/lr_scales name {name!r} matches no parameter; '
          f'top-level modules: {tops}, aliases: {MODULE_ALIASES}')

  def label(path, _):
    p = _path_str(path)
    if any(_matches(p, m) for m in cfg.freeze):
      return FROZEN
    for m in cfg.lr_scales:
      if _matches(p, m):
        return m
    return DEFAULT_GROUP

  return jax.tree_util.tree_map_with_path(label, params)


def _adafactor(lr: optax.ScalarOrSchedule,
               weight_decay: float) -> optax.GradientTransformation:
  """Adafactor with AdamW's learning-rate and weight-decay semantics.

  Factored second moments (a row and a column statistic for every parameter
  whose two largest dimensions are >= ADAFACTOR_MIN_DIM_TO_FACTOR), updates
  clipped to RMS 1, no momentum; then decoupled weight decay on matrices and
  the learning rate, as in AdamW:
  `update = -lr * (adafactor_direction + weight_decay * param)`.
  """
  chain = [optax.scale_by_factored_rms(
               min_dim_size_to_factor=ADAFACTOR_MIN_DIM_TO_FACTOR),
           optax.clip_by_block_rms(1.0)]
  if weight_decay:
    chain.append(optax.add_decayed_weights(weight_decay, mask=_decay_mask))
  chain.append(optax.scale_by_learning_rate(lr))
  return optax.chain(*chain)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  """Global-norm clip, then AdamW or Adafactor (per-group lr, freezing).

  Without `freeze` / `lr_scales` the state layout is a plain
  `chain(clip, optimizer)` (the layout of existing AdamW checkpoints).
  """
  schedule = learning_rate_schedule(cfg)

  def optimizer(scale: float) -> optax.GradientTransformation:
    lr = schedule if scale == 1 else (lambda step: scale * schedule(step))
    if cfg.optimizer == 'adafactor':
      return _adafactor(lr, cfg.weight_decay)
    return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                       weight_decay=cfg.weight_decay, mask=_decay_mask,
                       mu_dtype=cfg.mu_dtype)

  chain = []
  if cfg.clip_norm > 0:
    chain.append(optax.clip_by_global_norm(cfg.clip_norm))
  if not cfg.freeze and not cfg.lr_scales:
    chain.append(optimizer(1.0))
  else:
    transforms = {DEFAULT_GROUP: optimizer(1.0), FROZEN: optax.set_to_zero()}
    for name, scale in dict(cfg.lr_scales).items():
      transforms[name] = optimizer(float(scale))
    chain.append(optax.multi_transform(
        transforms, lambda params: param_groups(cfg, params)))
  return optax.chain(*chain)


def make_mesh(cfg: TrainConfig,
              devices: Iterable[jax.Device] | None = None
              ) -> jax.sharding.Mesh:
  """The run's ('data', 'fsdp', 'model') mesh from the config."""
  return partitioning.make_mesh(**cfg.mesh_sizes(), devices=devices)


# Multi-process runs agree on a stop request every this many steps.
STOP_CHECK_EVERY = 10


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


def _unbox_reshaped(opt_state: PyTree) -> PyTree:
  """Drops the axis names of optimizer statistics shaped unlike a param.

  Optimizer state made from boxed params inherits their logical axis names,
  so moments shard like their params. Adafactor's factored statistics have
  fewer dimensions than the param; their names no longer fit, and these
  small arrays are replicated instead.
  """
  def fix(x):
    if not isinstance(x, nn.Partitioned):
      return x
    ndim = getattr(x.value, 'ndim', None)  # None: optax's MaskedNode.
    return x.value if ndim is not None and ndim != len(x.names) else x

  return jax.tree.map(fix, opt_state,
                      is_leaf=lambda x: isinstance(x, nn.Partitioned))


def release_free_host_memory() -> bool:
  """Returns freed heap memory to the OS (glibc `malloc_trim`).

  Compiling a large program leaves the freed compiler memory in the C
  heap; on CPU, where the step's buffers are host memory too, that memory
  would otherwise stay in the process's resident set under the step's peak
  (paper configuration: 0.84 GiB returned after compiling, measured).

  Returns:
    Whether the call was made (False off glibc).
  """
  name = ctypes.util.find_library('c')
  try:
    trim = ctypes.CDLL(name).malloc_trim if name else None
  except (OSError, AttributeError):
    trim = None
  if trim is None:
    return False
  trim(0)
  return True


class Trainer:
  """Owns the mesh, the compiled step and the train state of one run.

  Attributes:
    model: the model wrapper.
    config: the TrainConfig.
    mesh: the device mesh.
    rules: logical axis rules.
    state: the current TrainState (unboxed, sharded).
    state_shardings: NamedShardings of the state.
    stop_requested: set (e.g. by a SIGTERM handler) to make `train` save a
      checkpoint at the next step boundary and return.
    preempted: whether the last `train` call stopped on `stop_requested`.
  """

  def __init__(self, model: model_lib.RAHFModel, config: TrainConfig,
               input_length: int, target_length: int,
               mesh: jax.sharding.Mesh | None = None):
    self.model = model
    self.config = config
    self.input_length = input_length
    self.target_length = target_length
    self.mesh = make_mesh(config) if mesh is None else mesh
    if tuple(self.mesh.axis_names) != partitioning.MESH_AXES:
      raise ValueError(f'mesh axes {self.mesh.axis_names}; expected '
                       f'{partitioning.MESH_AXES}')
    self.rules = partitioning.standard_logical_axis_rules(
        fsdp=self.mesh.shape['fsdp'] > 1)
    self.tx = make_optimizer(config)
    self.schedule = learning_rate_schedule(config)
    self.batch_sharding = NamedSharding(self.mesh,
                                        P(partitioning.BATCH_AXES))
    self._replicated = NamedSharding(self.mesh, P())
    platform = self.mesh.devices.flat[0].platform
    options = (compile_options.defaults(platform)
               if config.default_compiler_options else {})
    options.update(config.compiler_options)
    self.compiler_options = options or None
    if (config.cpu_memory_scheduler and platform == 'cpu' and
        CPU_SCHEDULER_FLAG not in os.environ.get('XLA_FLAGS', '')):
      logging.warning(
          'TrainConfig.cpu_memory_scheduler is set but XLA_FLAGS lacks %s; '
          'call trainer.set_process_xla_flags(config) before JAX starts',
          CPU_SCHEDULER_FLAG)
    self._compiled_step = None
    self._eval_step = None
    self.state = None
    self.state_shardings = None
    self.stop_requested = False
    self.preempted = False
    self.best_value = None

  @property
  def num_batch_shards(self) -> int:
    return self.mesh.shape['data'] * self.mesh.shape['fsdp']

  # ------------------------------------------------------------------------
  # State.
  # ------------------------------------------------------------------------

  def _init_params(self, rng):
    """Boxed initial params, traced on dummy inputs of the default lengths.

    No parameter shape depends on the sequence lengths, so one compiled
    init serves every train config and length of a model (the persistent
    compilation cache hits across runs and tests).
    """
    return self.model.get_initial_variables(rng)['params']

  def _init_rest(self, params):
    """(step, optimizer state) for `params`."""
    return (jnp.zeros((), jnp.int32),
            _unbox_reshaped(self.tx.init(params)))

  def _init_fn(self, rng):
    params = self._init_params(rng)
    step, opt_state = self._init_rest(params)
    return TrainState(step=step, params=params, opt_state=opt_state)

  def abstract_state(self) -> tuple[PyTree, PyTree]:
    """(boxed abstract state, NamedShardings of the unboxed state)."""
    rng = jax.random.key(self.config.seed)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      abstract = jax.eval_shape(self._init_fn, rng)
    specs = nn.get_partition_spec(abstract)
    shardings = nn.logical_to_mesh_sharding(specs, self.mesh, self.rules)
    shardings = partitioning.fit_shardings(nn.meta.unbox(abstract), shardings)
    return abstract, shardings

  def use_abstract_state(self) -> TrainState:
    """Sets the state to its ShapeDtypeStructs (on the run's shardings).

    Enough to lower or compile the train step without allocating it.
    """
    abstract, self.state_shardings = self.abstract_state()
    self.state = nn.meta.unbox(abstract)
    return self.state

  def init_state(self) -> TrainState:
    """Initialises the state directly onto its shardings."""
    abstract, shardings = self.abstract_state()
    self.state_shardings = shardings
    options = init_compiler_options(
        _param_count(nn.meta.unbox(abstract).params), jax.default_backend())
    t0 = time.time()
    rng = jax.random.key(self.config.seed)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      # Two programs: the params (the costly compile, independent of the
      # optimizer), then the step and optimizer state from them.
      init = jax.jit(lambda r: nn.meta.unbox(self._init_params(r)),
                     out_shardings=shardings.params)
      params = init.lower(rng).compile(compiler_options=options)(rng)
      rest = jax.jit(lambda p: nn.meta.unbox(self._init_rest(p)),
                     out_shardings=(shardings.step, shardings.opt_state))
      step, opt_state = rest(params)
    self.state = TrainState(step=step, params=params, opt_state=opt_state)
    logging.info('initialised parameters in %.1fs', time.time() - t0)
    return self.state

  def restore_state(self, ckpt: checkpoints.Checkpointer,
                    step: int | None = None) -> dict[str, Any]:
    """Restores the state from `ckpt` onto this run's shardings.

    Raises:
      ValueError: the checkpoint was written by another optimizer (its
        state has another layout), or does not match the model.
    """
    saved = (ckpt.restore_meta(step).get('train_config') or {})
    saved_optimizer = saved.get('optimizer', 'adamw')
    if saved and saved_optimizer != self.config.optimizer:
      raise ValueError(
          f'checkpoint {ckpt.directory} was trained with optimizer='
          f'{saved_optimizer!r} but TrainConfig.optimizer='
          f'{self.config.optimizer!r}; the optimizer states differ, so '
          'resume with the same optimizer')
    abstract, shardings = self.abstract_state()
    self.state_shardings = shardings
    target = checkpoints.abstract_like(nn.meta.unbox(abstract), shardings)
    self.state, meta = ckpt.restore(target, step)
    return meta

  def num_params(self) -> int:
    return _param_count(self.state.params)

  def param_bytes_per_device(self) -> int:
    """Bytes of parameters held by one device (its shards)."""
    total = 0
    for x in jax.tree.leaves(self.state.params):
      shard = x.addressable_shards[0].data
      total += shard.size * shard.dtype.itemsize
    return total

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
      f.write(f'mesh: {dict(self.mesh.shape)}\n')

  # ------------------------------------------------------------------------
  # Step.
  # ------------------------------------------------------------------------

  def _micro_batches(self, batch: Mapping[str, jax.Array]) -> dict:
    """[B, ...] -> [n, B / n, ...]; micro-batch i holds rows i, i + n, ...

    Taking every n-th row keeps each device's rows on that device: a device
    holding a contiguous block of the batch holds its share of every
    micro-batch, so the split needs no communication.
    """
    n = self.config.grad_accum_steps

    def split(x):
      b = x.shape[0]
      x = x.reshape((b // n, n) + x.shape[1:]).swapaxes(0, 1)
      return jax.lax.with_sharding_constraint(
          x, NamedSharding(self.mesh, P(None, partitioning.BATCH_AXES)))

    return {k: split(v) for k, v in batch.items()}

  def _grads(self, params: PyTree, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> tuple[PyTree, dict[str, jax.Array]]:
    """Mean gradients and loss terms over the step's micro-batches."""
    grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
    n = self.config.grad_accum_steps
    if n == 1:
      (_, aux), grads = grad_fn(params, batch, rng)
      return grads, aux
    micro = self._micro_batches(batch)

    def body(carry, xs):
      i, mb = xs
      (_, aux), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, carry, (grads, aux)), None

    first = jax.tree.map(lambda x: x[0], micro)
    (_, aux_shape), grad_shape = jax.eval_shape(grad_fn, params, first, rng)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         (grad_shape, aux_shape))
    (grads, aux), _ = jax.lax.scan(body, zeros, (jnp.arange(n), micro))
    return jax.tree.map(lambda x: x / n, grads), jax.tree.map(
        lambda x: x / n, aux)

  def _train_step(self, state: TrainState, batch: Mapping[str, jax.Array],
                  rng: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(rng, state.step)
    grads, aux = self._grads(state.params, batch, rng)
    if self.config.freeze:  # Frozen grads are zero: no norm, no clip share.
      groups = param_groups(self.config, grads)
      grads = jax.tree.map(lambda g, l: jnp.zeros_like(g) if l == FROZEN
                           else g, grads, groups)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    aux['grad_norm'] = optax.tree.norm(grads)
    aux['learning_rate'] = self.schedule(state.step)
    return TrainState(step=state.step + 1, params=params,
                      opt_state=opt_state), aux

  def _check_batch_size(self, global_batch: int, what: str) -> None:
    n = self.config.grad_accum_steps if what == 'train' else 1
    shards = self.num_batch_shards
    if global_batch % (n * shards):
      raise ValueError(
          f'{what} batch of {global_batch} examples does not split into '
          f'{n} micro-batch(es) over {shards} batch shards (mesh '
          f'{dict(self.mesh.shape)}); use a multiple of {n * shards}')

  def lower(self, batch_spec: Mapping[str, jax.ShapeDtypeStruct]) -> Any:
    """The train step lowered for `batch_spec` (`jax.stages.Lowered`)."""
    self._check_batch_size(next(iter(batch_spec.values())).shape[0], 'train')
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      batch_sh = {k: self.batch_sharding for k in batch_spec}
      step = jax.jit(
          self._train_step,
          in_shardings=(self.state_shardings, batch_sh, self._replicated),
          out_shardings=(self.state_shardings, self._replicated),
          donate_argnums=(0,), compiler_options=self.compiler_options)
      return step.lower(self.state, dict(batch_spec),
                        jax.random.key(self.config.seed))

  def compile(self, batch_spec: Mapping[str, jax.ShapeDtypeStruct]) -> float:
    """Compiles the train step ahead of time; returns compile seconds."""
    t0 = time.time()
    # The lowered program stays for its backend-independent cost analysis.
    self._lowered_step = self.lower(batch_spec)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      self._compiled_step = self._lowered_step.compile()
    seconds = time.time() - t0
    logging.info('compiled the train step in %.1fs', seconds)
    release_free_host_memory()
    return seconds

  def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays sharded over the batch axes."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding,
                                                      np.asarray(v))
            for k, v in batch.items()}

  def step(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """One optimizer step on a global batch (compile first)."""
    rng = jax.random.key(self.config.seed + 1)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      self.state, aux = self._compiled_step(self.state, batch, rng)
    return aux

  def evaluate(self, batches: Iterable[Mapping[str, np.ndarray]]
               ) -> dict[str, float]:
    """Mean loss terms (no dropout) over host-local validation batches."""
    if self._eval_step is None:
      with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
        self._eval_step = jax.jit(
            lambda p, b: self.model.loss_fn(p, b, None)[1],
            in_shardings=(self.state_shardings.params, self.batch_sharding),
            out_shardings=self._replicated,
            compiler_options=self.compiler_options)
    outs = []
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      for host_batch in batches:
        global_batch = self.put_batch(host_batch)
        self._check_batch_size(
            next(iter(global_batch.values())).shape[0], 'validation')
        outs.append(self._eval_step(self.state.params, global_batch))
    if not outs:
      raise ValueError('the validation data yielded no batches')
    outs = jax.device_get(outs)
    return {k: float(np.mean([o[k] for o in outs])) for k in outs[0]}

  # ------------------------------------------------------------------------
  # Loop.
  # ------------------------------------------------------------------------

  def train(self, batches: Iterator[Mapping[str, np.ndarray]],
            ckpt: checkpoints.Checkpointer | None = None,
            meta: Mapping[str, Any] | None = None,
            writer: Any = None,
            log_fn: Callable[[str], None] = console,
            eval_batches: Callable[[], Iterable[Mapping[str, np.ndarray]]]
            | None = None,
            best_ckpt: checkpoints.Checkpointer | None = None,
            history_path: str | None = None) -> dict[str, float]:
    """Runs from the current step to `config.num_steps`.

    Args:
      batches: host-local numpy batches, positioned at the current step.
      ckpt: where to save checkpoints (None: no checkpoints).
      meta: JSON-able run description saved with every checkpoint.
      writer: a clu metric writer (None: console only).
      log_fn: console output (process 0 only, as are `writer` and
        `history_path`).
      eval_batches: returns the validation batches afresh (the same ones
        each call); used every `config.eval_every` steps.
      best_ckpt: keeps the checkpoint with the best `config.best_metric`
        among the validations (None: not kept).
      history_path: appends each logged window (and validation) as one JSON
        line (None: not written).

    Returns:
      The last logged metrics (means over the last logging window).

    Raises:
      NonFiniteLossError: naming the step window and the non-finite terms.
    """
    cfg = self.config
    if jax.process_index() != 0:  # Logs and summaries from process 0 only.
      log_fn, writer, history_path = (lambda line: None), None, None
    start = int(self.state.step)
    self.preempted = False
    if start >= cfg.num_steps:
      log_fn(f'already at step {start} >= num_steps={cfg.num_steps}')
      return {}
    if best_ckpt is not None and self.best_value is None:
      self.best_value = best_ckpt.best_value()
    window, window_start, last = [], start, {}
    t_window = t_start = time.time()
    for step in range(start, cfg.num_steps):
      if self._stop_agreed(step):
        self._stop(step, ckpt, meta, log_fn)
        return last
      global_batch = self._next_global_batch(batches, step, log_fn)
      window.append(self.step(global_batch))
      done = step + 1
      if done % cfg.log_every == 0 or done == cfg.num_steps:
        last = self._log_window(window, window_start, done, t_window,
                                t_start, start, writer, log_fn)
        _append_json(history_path, dict(last, step=done))
        window, window_start, t_window = [], done, time.time()
      if eval_batches is not None and cfg.eval_every and (
          done % cfg.eval_every == 0 or done == cfg.num_steps):
        self._validate(done, eval_batches, best_ckpt, meta, writer, log_fn,
                       history_path)
      if ckpt is not None and (done % cfg.checkpoint_every == 0 or
                               done == cfg.num_steps):
        ckpt.save(done, self.state, self._meta(meta, done))
    if ckpt is not None:
      ckpt.wait()
    if best_ckpt is not None:
      best_ckpt.wait()
    return last

  def _next_global_batch(self, batches, step, log_fn):
    try:
      host_batch = next(batches)
    except StopIteration:
      raise ValueError(f'the training data ran out at step {step}; use a '
                       'repeating dataset') from None
    if self._compiled_step is not None:
      return self.put_batch(host_batch)
    check = {k: np.asarray(v) for k, v in host_batch.items()}
    model_lib.check_batch(check, self.model.config)
    global_batch = self.put_batch(host_batch)
    secs = self.compile({k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                         for k, v in global_batch.items()})
    log_fn(f'compiled train step in {secs:.1f}s')
    return global_batch

  def _stop_agreed(self, step: int) -> bool:
    """Whether any process was asked to stop (all stop at the same step).

    Hosts of a pod get SIGTERM at slightly different times; a process that
    left the loop alone would hang the others in their next collective. The
    agreement is a host round trip, so multi-process runs ask only every
    `STOP_CHECK_EVERY` steps (keeping the host ahead of the devices).
    """
    if jax.process_count() == 1:
      return self.stop_requested
    if step % STOP_CHECK_EVERY:
      return False
    flags = multihost_utils.process_allgather(
        np.int32(self.stop_requested))
    return bool(np.any(flags))

  @staticmethod
  def _meta(meta, step: int) -> dict[str, Any]:
    # One global batch per step: the data position is the step.
    return dict(meta or {}, step=step, data_position=step)

  def _stop(self, step, ckpt, meta, log_fn) -> None:
    log_fn(f'stop requested: saving a checkpoint at step {step}')
    if ckpt is not None:
      ckpt.wait()  # A save of this very step may still be in flight.
      ckpt.save(step, self.state, self._meta(meta, step))
      ckpt.wait()
    self.preempted = True

  def _validate(self, done, eval_batches, best_ckpt, meta, writer, log_fn,
                history_path) -> dict[str, float]:
    cfg = self.config
    val = self.evaluate(eval_batches())
    if writer is not None:
      writer.write_scalars(done, {f'val/{k}': v for k, v in val.items()})
      writer.flush()
    _append_json(history_path, dict({f'val/{k}': v for k, v in val.items()},
                                    step=done))
    line = ' '.join(f'{k}={v:.4f}' for k, v in sorted(val.items()))
    log_fn(f'validation at step {done}: {line}')
    if best_ckpt is None or not cfg.best_metric:
      return val
    if cfg.best_metric not in val:
      raise ValueError(f'TrainConfig.best_metric={cfg.best_metric!r} is not '
                       f'a validation metric; choose one of {sorted(val)}')
    value = val[cfg.best_metric]
    better = self.best_value is None or (
        value < self.best_value if cfg.best_mode == 'min'
        else value > self.best_value)
    if better and math.isfinite(value):
      self.best_value = value
      best_ckpt.save(done, self.state, dict(
          self._meta(meta, done), best_metric=cfg.best_metric,
          best_value=value), metrics={cfg.best_metric: value})
      log_fn(f'new best {cfg.best_metric}={value:.4f} at step {done}')
    return val

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


def _append_json(path: str | None, record: Mapping[str, Any]) -> None:
  if path is not None:
    with open(path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')


def model_info_path(model_dir: str) -> str:
  return os.path.join(model_dir, 'model-info.txt')
