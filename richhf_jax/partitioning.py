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
"""Logical axis names and the one table that maps them to mesh axes.

Every parameter in richhf_jax carries logical axis names (t5x style); this
module is the single place that turns them into mesh axes. A new name used by a
module must be added to `LOGICAL_AXES` (a test checks every parameter against
it).

Mesh axes are `('data', 'fsdp', 'model')`, any product of sizes: the batch is
split over `data` x `fsdp`; with FSDP the parameters' `embed` dimension (and
with it the optimizer state) is split over `fsdp`; `model` carries tensor
parallelism. The same code runs on TPU, GPU and CPU (fake devices in tests).
"""

import logging
import os
from typing import Any, Sequence

import jax

# The mesh axes, in mesh order, and the ones the batch is split over.
MESH_AXES = ('data', 'fsdp', 'model')
BATCH_AXES = ('data', 'fsdp')

# Every logical axis name the models may use, with what it means.
LOGICAL_AXES = {
    # Activations.
    'batch': 'examples in a batch',
    'length': 'sequence positions (tokens, patches)',
    'height': 'feature-map rows',
    'width': 'feature-map columns',
    # Transformer parameters (T5X and big_vision layouts).
    'vocab': 'vocabulary entries',
    'embed': 'model width (d_model / ViT width)',
    'mlp': 'MLP hidden units',
    'heads': 'attention heads',
    'kv': 'per-head key/value/query features',
    'joined_kv': 'heads * kv, flattened',
    'relpos_buckets': 'T5 relative-position buckets',
    'layers': 'stacked layers under nn.scan',
    # Convolutional parameters (patch embedding, heatmap and score heads).
    'conv_height': 'convolution kernel rows',
    'conv_width': 'convolution kernel columns',
    'conv_in': 'convolution input channels',
    'conv_out': 'convolution output channels',
    # Projection of ViT tokens to the T5 width.
    'proj_in': 'input features of the image-to-text projection',
    # Small dense layers of the heads.
    'head_in': 'input features of a head MLP layer',
    'head_out': 'output features of a head MLP layer',
    # Dimensions never sharded (singletons, tiny axes, norms of small layers).
    'unmodeled': 'never partitioned',
}


def standard_logical_axis_rules(
    fsdp: bool = False) -> tuple[tuple[str, str | None], ...]:
  """Returns (logical name, mesh axis) rules for a `MESH_AXES` mesh.

  Args:
    fsdp: if True, the `embed` dimension of parameters is sharded over the
      `fsdp` axis (fully sharded data parallelism). Activations keep `embed`
      whole: flax skips a rule whose mesh axis the batch already uses.
  """
  rules = [
      ('batch', BATCH_AXES),
      ('vocab', 'model'),
      ('mlp', 'model'),
      ('heads', 'model'),
      ('joined_kv', 'model'),
      ('conv_out', 'model'),
      ('head_out', None),
      ('embed', 'fsdp' if fsdp else None),
      ('kv', None),
      ('length', None),
      ('height', None),
      ('width', None),
      ('relpos_buckets', None),
      ('layers', None),
      ('conv_height', None),
      ('conv_width', None),
      ('conv_in', None),
      ('head_in', None),
      ('proj_in', None),
      ('unmodeled', None),
  ]
  unknown = sorted({name for name, _ in rules} - set(LOGICAL_AXES))
  assert not unknown, f'rules name unknown logical axes {unknown}'
  return tuple(rules)


def check_axis_names(names: Sequence[str | None], where: str = '') -> None:
  """Raises ValueError if any name is not a known logical axis."""
  bad = [n for n in names if n is not None and n not in LOGICAL_AXES]
  if bad:
    raise ValueError(
        f'unknown logical axis names {bad}{" in " + where if where else ""}; '
        f'known names: {sorted(LOGICAL_AXES)}')


def mesh_shape(num_devices: int, data: int = -1, fsdp: int = 1,
               model: int = 1) -> tuple[int, int, int]:
  """Resolves (data, fsdp, model) sizes; at most one may be -1 (the rest).

  Raises:
    ValueError: the sizes do not multiply to `num_devices`, or more than one
      is -1.
  """
  sizes = {'data': data, 'fsdp': fsdp, 'model': model}
  free = [k for k, v in sizes.items() if v == -1]
  bad = [f'{k}={v}' for k, v in sizes.items() if v == 0 or v < -1]
  if bad or len(free) > 1:
    raise ValueError(f'mesh sizes {sizes}: each must be >= 1, and at most one '
                     'may be -1 (all remaining devices)')
  fixed = 1
  for k, v in sizes.items():
    if v != -1:
      fixed *= v
  if free:
    if num_devices % fixed:
      raise ValueError(f'mesh sizes {sizes} do not divide the {num_devices} '
                       'devices')
    sizes[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ValueError(f'mesh sizes {sizes} multiply to {fixed}, but there are '
                     f'{num_devices} devices')
  return sizes['data'], sizes['fsdp'], sizes['model']


def make_mesh(data: int = -1, fsdp: int = 1, model: int = 1,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A `MESH_AXES` mesh with Auto axes (flax logical constraints need Auto).

  Args:
    data, fsdp, model: axis sizes; one may be -1 (the remaining devices).
    devices: defaults to all devices of all processes.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(len(devices), data, fsdp, model)
  return jax.make_mesh(shape, MESH_AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=devices)


# Environment variables read by `initialize_distributed` (set by launch/).
# JAX itself also reads JAX_COORDINATOR_ADDRESS.
ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


def initialize_distributed(mode: str = 'auto',
                           coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Starts multi-process JAX; must run before anything touches a backend.

  Args:
    mode: 'off' (single process), 'on' (always initialise; with no explicit
      values JAX auto-detects TPU pods, SLURM, Open MPI, ...), or 'auto'
      (initialise when a coordinator or process count is given here or in
      the environment).
    coordinator_address: `host:port` of process 0 (default: env
      JAX_COORDINATOR_ADDRESS).
    num_processes: default env JAX_NUM_PROCESSES.
    process_id: default env JAX_PROCESS_ID.

  Returns:
    Whether jax.distributed was initialised.

  Raises:
    ValueError: unknown mode, or a non-integer process count / id in the
      environment.
  """
  modes = ('auto', 'on', 'off')
  if mode not in modes:
    raise ValueError(f'distributed mode {mode!r}; expected one of {modes}')
  if mode == 'off':
    return False
  env = os.environ
  coordinator_address = coordinator_address or env.get(ENV_COORDINATOR)

  def env_int(value, name):
    if value is not None or name not in env:
      return value
    try:
      return int(env[name])
    except ValueError:
      raise ValueError(f'environment {name}={env[name]!r} is not an '
                       'integer') from None

  num_processes = env_int(num_processes, ENV_NUM_PROCESSES)
  process_id = env_int(process_id, ENV_PROCESS_ID)
  if mode == 'auto' and coordinator_address is None and not num_processes:
    return False
  if mode == 'auto' and num_processes == 1:
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  logging.info('jax.distributed: process %d of %d', jax.process_index(),
               jax.process_count())
  return True


def fit_spec(spec: jax.sharding.PartitionSpec, shape: Sequence[int],
             mesh: jax.sharding.Mesh) -> jax.sharding.PartitionSpec:
  """Drops the mesh axes of every dimension they do not divide evenly.

  A rule may map a dimension that is tiny in some layer (a head's single
  output channel on `conv_out`) to an axis larger than it; that dimension
  stays whole (replicated) instead of failing.
  """
  out = []
  for i, axes in enumerate(tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = axes if isinstance(axes, tuple) else (axes,)
    size = 1
    for a in names:
      if a is not None:
        size *= mesh.shape[a]
    out.append(axes if shape[i] % size == 0 else None)
  return jax.sharding.PartitionSpec(*out)


def is_empty_node(x: Any) -> bool:
  """An array-free subtree (e.g. optax's MaskedNode for masked-out params).

  Sharding trees derived from specs hold one sharding where the state holds
  such a node; mapping over both must stop there.
  """
  return x is not None and not hasattr(x, 'shape') and not jax.tree.leaves(x)


def fit_shardings(abstract: Any, shardings: Any) -> Any:
  """`fit_spec` over a tree of ShapeDtypeStructs and NamedShardings."""
  def fit(x, s):
    if is_empty_node(x):
      return x
    return jax.sharding.NamedSharding(s.mesh,
                                      fit_spec(s.spec, x.shape, s.mesh))
  return jax.tree.map(fit, abstract, shardings, is_leaf=is_empty_node)
