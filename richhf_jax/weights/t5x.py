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
"""T5X legacy checkpoints -> RAHF's `token_embedder`, `encoder`, `decoder`.

A T5X checkpoint is a directory `checkpoint_<step>/` holding

- `checkpoint`: a msgpack file (flax.serialization) with
  `{'version': 3, 'optimizer': {'target': params, 'state': ...}}` (version 0
  files have the optimizer dict at the top level, no wrapper);
- one zarr array directory per partitioned parameter, e.g.
  `target.encoder.layers_0.attention.query.kernel/` (`.zarray` + chunks).
  In the msgpack such a parameter is replaced by its TensorStore spec, a dict
  `{'driver': 'zarr', 'dtype': ..., 'kvstore': {'driver': 'file', 'path':
  <path relative to the checkpoint dir>}, 'metadata': {...}}`. Checkpoints
  written to GCS use `'driver': 'gcs'` with a dummy bucket, and older
  TensorStore versions put `path` next to `kvstore` rather than inside it;
  both are read from the local directory here. Small parameters are stored
  inline as arrays.
- Version < 3 stored bfloat16 arrays as uint16; they are reinterpreted.

orbax cannot read this format as arrays, so it is read with msgpack (via
flax.serialization) and tensorstore directly. Only `target` (the parameters)
is read; optimizer slots are skipped.

T5X's parameter names are ours, so the tree maps unchanged. T5X's scanned
layout (a 'layers' axis at position 1) is not converted.
"""

import dataclasses
import logging
import os
import re
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import tensorstore as ts

from richhf_jax.models import config as config_lib
from richhf_jax.models import t5
from richhf_jax.weights import common

# The RAHF subtrees a T5X T5 checkpoint provides.
SUBTREES = ('token_embedder', 'encoder', 'decoder')

_MSGPACK = 'checkpoint'


def find_checkpoint_file(path: str, step: int | None = None) -> str:
  """Locates the msgpack `checkpoint` file.

  Args:
    path: the msgpack file, a `checkpoint_<step>` directory (the file may
      also be at `state/checkpoint`), or a model directory holding
      `checkpoint_<step>` directories.
    step: with a model directory, the step to load (default: the latest).

  Returns:
    The path of the msgpack file.

  Raises:
    FileNotFoundError: if no checkpoint is found.
  """
  if os.path.isfile(path):
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f'T5X checkpoint path {path!r} does not exist')
  for candidate in (os.path.join(path, _MSGPACK),
                    os.path.join(path, 'state', _MSGPACK)):
    if os.path.isfile(candidate) and step is None:
      return candidate
  steps = sorted(int(m.group(1)) for name in os.listdir(path)
                 if (m := re.fullmatch(r'checkpoint_(\d+)', name)))
  if step is None and steps:
    step = steps[-1]
  if step is not None:
    return find_checkpoint_file(os.path.join(path, f'checkpoint_{step}'))
  raise FileNotFoundError(
      f'no T5X checkpoint in {path!r}: expected a `{_MSGPACK}` file or '
      '`checkpoint_<step>` directories')


def _is_spec(x: Any) -> bool:
  return isinstance(x, dict) and 'driver' in x and (
      'kvstore' in x or 'path' in x)


def _restore_lists(x: Any) -> Any:
  """{'0': a, '1': b} -> [a, b] (flax state dicts turn lists into dicts)."""
  if isinstance(x, dict):
    x = {k: _restore_lists(v) for k, v in x.items()}
    if x and all(isinstance(k, str) and k.isdigit() for k in x) and (
        sorted(int(k) for k in x) == list(range(len(x)))):
      return [x[str(i)] for i in range(len(x))]
    return x
  if isinstance(x, (list, tuple)):
    return [_restore_lists(v) for v in x]
  if isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype.kind in 'iu':
    return [int(v) for v in x]  # e.g. chunk shapes written as arrays
  return x


def _read_spec(spec: dict[str, Any], ckpt_dir: str, version: int,
               name: str) -> np.ndarray:
  """Reads one zarr array referenced by a TensorStore spec dict."""
  spec = _restore_lists(spec)
  kvstore = dict(spec.get('kvstore') or {})
  rel = kvstore.get('path', spec.get('path'))
  if not isinstance(rel, str) or not rel:
    raise ValueError(f'T5X checkpoint entry {name}: TensorStore spec has no '
                     f'path: {spec}')
  root = os.path.realpath(ckpt_dir)
  full = os.path.realpath(os.path.join(root, rel))
  if os.path.commonpath([root, full]) != root:
    raise ValueError(f'T5X checkpoint entry {name}: array path {rel!r} '
                     f'points outside the checkpoint directory {ckpt_dir!r}')
  if not os.path.isdir(full):
    raise FileNotFoundError(f'T5X checkpoint entry {name}: array directory '
                            f'{full!r} is missing')
  local = {k: v for k, v in spec.items() if k not in ('kvstore', 'path')}
  local['kvstore'] = {'driver': 'file', 'path': full}
  arr = ts.open(local, open=True).result().read().result()
  arr = np.asarray(arr)
  if version < 3 and arr.dtype == np.uint16:
    arr = arr.view(ml_dtypes.bfloat16)  # pre-v3 stored bfloat16 as uint16
  return arr


def read_target(path: str, step: int | None = None) -> dict[str, Any]:
  """Reads the parameter tree (`target`) of a T5X checkpoint.

  Args:
    path: see `find_checkpoint_file`.
    step: see `find_checkpoint_file`.

  Returns:
    Nested dict of numpy arrays in the checkpoint's dtypes.

  Raises:
    FileNotFoundError, ValueError: for a missing or malformed checkpoint.
  """
  file = find_checkpoint_file(path, step)
  with open(file, 'rb') as f:
    contents = flax.serialization.msgpack_restore(f.read())
  if not isinstance(contents, dict):
    raise ValueError(f'{file!r} is not a T5X checkpoint (msgpack top level is '
                     f'{type(contents).__name__}, expected a dict)')
  version = int(contents.get('version', 0))
  state = contents.get('optimizer') if version >= 1 else contents
  if not isinstance(state, dict) or 'target' not in state:
    raise ValueError(
        f'{file!r} has no parameter tree: expected '
        f'{"optimizer/target" if version >= 1 else "target"}, found keys '
        f'{sorted(contents)}')
  ckpt_dir = os.path.dirname(file)
  out = {}
  for key, value in _spec_leaves(state['target']).items():
    if _is_spec(value):
      out[key] = _read_spec(value, ckpt_dir, version, key)
    else:
      out[key] = np.asarray(value)
  return common.unflatten(out)


def _spec_leaves(tree: Any, prefix: str = '') -> dict[str, Any]:
  """Flattens a checkpoint tree, treating TensorStore specs as leaves."""
  if isinstance(tree, dict) and not _is_spec(tree):
    out = {}
    for k, v in tree.items():
      out.update(_spec_leaves(v, f'{prefix}/{k}' if prefix else str(k)))
    return out
  return {prefix: tree}


def load(path: str, config: config_lib.T5Config | None = None, *,
         step: int | None = None) -> dict[str, Any]:
  """Loads a T5X T5 checkpoint as `{token_embedder, encoder, decoder}`.

  Args:
    path: see `find_checkpoint_file`.
    config: when given, the tree is checked against `T5Transformer(config)`
      (names and shapes; e.g. `mlp_activations` decides `wi` vs `wi_0/wi_1`
      and `logits_via_embedding` whether `decoder/logits_dense` exists).
    step: see `find_checkpoint_file`.

  Returns:
    Nested dict of float32 numpy arrays (unscanned layout). Put it into a
    RAHF tree with `common.merge_each(params, tree)`.

  Raises:
    WeightsMismatchError: if the tree does not match `config`.
  """
  target = read_target(path, step)
  ignored = sorted(set(target) - set(SUBTREES))
  if ignored:
    logging.info('T5X checkpoint: ignoring top-level entries %s', ignored)
  tree = {k: jax.tree.map(lambda x: np.asarray(x, np.float32), target[k])
          for k in SUBTREES if k in target}
  if config is not None:
    common.check_tree(tree, abstract_t5_params(config),
                      f'T5X checkpoint {path!r}')
  return tree


def abstract_t5_params(config: config_lib.T5Config) -> Any:
  """The unscanned T5Transformer tree as ShapeDtypeStructs."""
  flat_cfg = dataclasses.replace(config, scan=False)
  tokens = jnp.ones((1, 4), jnp.int32)
  return common.abstract_module_params(t5.T5Transformer(flat_cfg), tokens,
                                       tokens)
