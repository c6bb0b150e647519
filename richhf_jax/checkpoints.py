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
"""Orbax checkpoints of the train state, restorable onto any mesh.

Layout: `<model_dir>/checkpoints/<step>/{state, meta}`; `state` is the
unboxed train state (params, optimizer state, step), `meta` a JSON dict (the
step, the model config, the data position). Orbax writes each step under a
temporary name and renames it when complete, so a write killed half way never
touches the previous good checkpoint.
"""

import dataclasses
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


def _to_json(obj: Any) -> Any:
  """Dataclass configs -> JSON-able dicts."""
  if dataclasses.is_dataclass(obj):
    return {f.name: _to_json(getattr(obj, f.name))
            for f in dataclasses.fields(obj)}
  if isinstance(obj, (list, tuple)):
    return [_to_json(x) for x in obj]
  if isinstance(obj, dict):
    return {str(k): _to_json(v) for k, v in obj.items()}
  if obj is None or isinstance(obj, (str, bool, int, float)):
    return obj
  try:  # dtypes given as numpy/jax types.
    return str(np.dtype(obj))
  except TypeError:
    return str(obj)


def _dict_diff(a: Any, b: Any, prefix: str = '') -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _dict_diff(a.get(k), b.get(k), f'{prefix}{k}.')
    return out
  return [] if a == b else [f'{prefix[:-1]}: {a!r} vs {b!r}']


def check_model_config(meta: dict[str, Any], model_config: Any,
                       where: str) -> None:
  """Refuses a checkpoint whose saved model config differs from ours.

  Raises:
    ValueError: listing the differing fields (checkpoint vs requested).
  """
  have = meta.get('model_config')
  if have is None:
    return
  diffs = _dict_diff(have, _to_json(model_config))
  if diffs:
    raise ValueError(
        f'the checkpoint in {where} was written for another model config; '
        f'differences (checkpoint vs requested): {diffs[:10]}')


class Checkpointer:
  """Saves and restores train states under `<model_dir>/checkpoints`.

  Attributes:
    directory: where the steps live.
    manager: the orbax CheckpointManager.
  """

  def __init__(self, model_dir: str, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(model_dir, 'checkpoints'))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: PyTree, meta: dict[str, Any],
           force: bool = True) -> None:
    """Starts an (async) save of `state` and `meta` at `step`."""
    self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(_to_json(meta))),
        force=force)

  def restore(self, abstract_state: PyTree,
              step: int | None = None) -> tuple[PyTree, dict[str, Any]]:
    """Restores onto the shardings of `abstract_state` (ShapeDtypeStructs).

    Args:
      abstract_state: the target structure; each leaf a ShapeDtypeStruct with
        the sharding it should be restored onto.
      step: defaults to the latest step.

    Returns:
      (state, meta).

    Raises:
      FileNotFoundError: no checkpoint in the directory.
      ValueError: the checkpoint does not match the model (names the
        mismatched parameters).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint under {self.directory}')
    try:
      restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state),
              meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError) as e:
      raise ValueError(
          f'checkpoint {self.directory}/{step} does not match the model '
          f'being restored: {e}') from e
    return restored.state, restored.meta

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(tree: PyTree, shardings: PyTree) -> PyTree:
  """ShapeDtypeStructs of `tree` placed on `shardings` (restore targets)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)
