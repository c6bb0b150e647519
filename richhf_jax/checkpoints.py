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
step, the model config, the data position). The best checkpoint by a
validation metric is kept apart under `<model_dir>/best/<step>/`. Orbax writes
each step under a temporary name (`<step>.orbax-checkpoint-tmp`) and renames
it when complete, so a write killed half way never touches the previous good
checkpoint; restore only sees complete steps and leftovers are deleted when a
manager opens the directory.
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


def _dict_diff(a: Any, b: Any, prefix: str = '',
               ignore: frozenset[str] = frozenset()) -> list[str]:
  """'path: a vs b' for each differing leaf, skipping the paths in ignore."""
  if prefix[:-1] in ignore:
    return []
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _dict_diff(a.get(k), b.get(k), f'{prefix}{k}.', ignore)
    return out
  return [] if a == b else [f'{prefix[:-1]}: {a!r} vs {b!r}']


# Model config fields that change how the model computes (memory, speed) but
# not its parameters or outputs: a run may resume, or a checkpoint be
# evaluated, with other values (or with a checkpoint saved before the field
# existed).
EXECUTION_ONLY_FIELDS = frozenset({
    'vit.remat', 't5.remat', 'heatmap_head.remat',
    'heatmap_head.batch_chunks', 'heatmap_head.deconv_method'})


def check_model_config(meta: dict[str, Any], model_config: Any,
                       where: str) -> None:
  """Refuses a checkpoint whose saved model config differs from ours.

  Fields in `EXECUTION_ONLY_FIELDS` may differ.

  Raises:
    ValueError: listing the differing fields (checkpoint vs requested).
  """
  have = meta.get('model_config')
  if have is None:
    return
  diffs = _dict_diff(have, _to_json(model_config),
                     ignore=EXECUTION_ONLY_FIELDS)
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
               async_save: bool = True, subdir: str = 'checkpoints',
               best_metric: str | None = None, best_mode: str = 'min'):
    """Opens (or creates) the checkpoint directory.

    Args:
      model_dir: the run directory.
      max_to_keep: checkpoints kept (the newest, or the best ones when
        `best_metric` is given).
      async_save: write in the background.
      subdir: directory under `model_dir`.
      best_metric: keep the `max_to_keep` best by this metric (passed to
        `save(metrics=...)`) instead of the newest.
      best_mode: 'min' or 'max'.
    """
    self.directory = os.path.abspath(os.path.join(model_dir, subdir))
    self.best_metric = best_metric
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
        best_fn=(lambda m: m[best_metric]) if best_metric else None,
        best_mode=best_mode)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: PyTree, meta: dict[str, Any],
           force: bool = True,
           metrics: dict[str, float] | None = None) -> None:
    """Starts an (async) save of `state` and `meta` at `step`."""
    if step in self.manager.all_steps():
      return  # Already saved (e.g. a stop request right after a save).
    self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(_to_json(meta))),
        force=force, metrics=metrics)

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON meta of `step` (default latest) without the arrays."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint under {self.directory}')
    return self.manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def best_value(self) -> float | None:
    """The `best_value` recorded in the newest kept checkpoint, if any."""
    steps = self.manager.all_steps()
    if not steps:
      return None
    return self.restore_meta(max(steps)).get('best_value')

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
  """ShapeDtypeStructs of `tree` placed on `shardings` (restore targets).

  Array-free subtrees of `tree` (optax's MaskedNode) are kept as they are.
  """
  def empty(x):
    return x is not None and not hasattr(x, 'shape') and not jax.tree.leaves(x)

  return jax.tree.map(
      lambda x, s: x if empty(x) else jax.ShapeDtypeStruct(
          x.shape, x.dtype, sharding=s), tree, shardings, is_leaf=empty)
