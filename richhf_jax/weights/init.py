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
"""Initial weights for a new training run: `KIND:PATH` specs.

The trainer's resume order (`richhf_jax.train`): the latest checkpoint in
MODEL_DIR, else these init checkpoints over a fresh initialisation, else
from scratch. Specs are applied in order, each replacing the subtree it
covers (parameters no spec covers keep their fresh values):

  vit_npz:PATH   big_vision / vit_jax ViT `.npz` -> `img`
  t5x:PATH       T5X `checkpoint_<step>/` -> `token_embedder`, `encoder`,
                 `decoder`
  port:PATH      the PyTorch port's `.safetensors` / `.pt` -> the whole model
  richhf:PATH    one of ours: a training run dir (latest step), one of its
                 `checkpoints/<step>` dirs, or an export -> the whole model

e.g. gin `richhf_jax.train.init_from = ['vit_npz:/ckpt/ViT-B_16.npz',
't5x:/ckpt/t5_1_1_base/checkpoint_1000000']`.
"""

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from richhf_jax.weights import common

PyTree = Any
KINDS = ('vit_npz', 't5x', 'port', 'richhf')


def parse_spec(spec: str) -> tuple[str, str]:
  """'KIND:PATH' -> (kind, path), with a clear error for anything else."""
  kind, sep, path = spec.partition(':')
  if not sep or kind not in KINDS or not path:
    raise ValueError(f'init checkpoint {spec!r}: expected KIND:PATH with '
                     f'KIND one of {KINDS}')
  if not os.path.exists(path):
    raise FileNotFoundError(f'init checkpoint {spec!r}: {path} does not '
                            'exist')
  return kind, path


def _load_richhf(path: str) -> PyTree:
  """Params of our training run / step dir / export at `path`."""
  from richhf_jax import export  # pylint: disable=g-import-not-at-top
  if os.path.isfile(os.path.join(path, 'config.json')):
    _, params = export.load_export(path)
    return params
  step = None
  parent, name = os.path.split(os.path.normpath(path))
  if name.isdigit():  # <run>/checkpoints/<step>
    step, path = int(name), os.path.dirname(parent)
    subdir = os.path.basename(parent)
    return export.load_training_checkpoint(path, step, subdir=subdir)[1]
  return export.load_training_checkpoint(path, step)[1]


def load_spec(params: PyTree, spec: str, config: Any) -> PyTree:
  """`params` (host numpy tree) with the subtree of one spec replaced."""
  from richhf_jax.weights import port  # pylint: disable=g-import-not-at-top
  from richhf_jax.weights import t5x  # pylint: disable=g-import-not-at-top
  from richhf_jax.weights import vit_npz  # pylint: disable=g-import-not-at-top
  kind, path = parse_spec(spec)
  if kind == 'vit_npz':
    return common.merge_into(params, vit_npz.load(path, config.vit), 'img',
                             what=path)
  if kind == 't5x':
    return common.merge_each(params, t5x.load(path, config.t5), what=path)
  if kind == 'port':
    return common.merge_into(params, port.load(path, config), what=path)
  loaded = jax.tree.map(np.asarray, _load_richhf(path))
  return common.merge_into(params, loaded, what=path)


def apply_init_checkpoints(params: PyTree, specs: Sequence[str], config: Any,
                           log_fn: Callable[[str], None] = print) -> PyTree:
  """Applies `specs` in order to a (host) copy of `params`.

  Args:
    params: the freshly initialised, unboxed parameters.
    specs: 'KIND:PATH' strings (see the module docstring).
    config: the run's RAHFConfig.
    log_fn: progress output.

  Returns:
    A numpy tree with the structure and dtypes of `params`.
  """
  for spec in specs:  # Fail on a bad spec before reading anything.
    parse_spec(spec)
  tree = jax.tree.map(np.asarray, jax.device_get(params))
  for spec in specs:
    tree = load_spec(tree, spec, config)
    log_fn(f'initialised from {spec}')
  return tree
