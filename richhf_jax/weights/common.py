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
"""Shared pieces of the weight importers: tree helpers, checks, merging.

Every importer returns a plain nested dict of float32 numpy arrays with our
parameter names. `check_tree` compares such a tree with the model's abstract
tree and raises `WeightsMismatchError`, which lists every missing, unexpected
and mis-shaped parameter at once. `merge_into` puts a loaded subtree into a
full parameter tree (e.g. a ViT checkpoint under `img`), checking it first.

The importers always produce the unscanned layout (`layers_{i}`,
`encoderblock_{i}`); `merge_into` stacks them along a new leading axis when
the target model uses `nn.scan` (`layers`, `encoderblock`), and unstacks in
the other direction.
"""

import re
from typing import Any, Iterable, Mapping

import flax
import flax.linen as nn
import jax
import numpy as np

from richhf_jax import model as model_lib

PyTree = Any

# Submodule names that `nn.scan` uses for a stack of numbered layers, in
# richhf_jax's T5 (`layers`) and ViT (`encoderblock`).
SCAN_NAMES = ('layers', 'encoderblock')

_MAX_LISTED = 25


class WeightsMismatchError(ValueError):
  """A checkpoint does not match the model's parameter tree.

  Attributes:
    missing: parameters the model needs that the checkpoint lacks.
    unexpected: checkpoint entries the model has no place for.
    misshaped: entries whose shape differs from the model's.
  """

  def __init__(self, what: str, missing: Iterable[str] = (),
               unexpected: Iterable[str] = (),
               misshaped: Iterable[str] = ()):
    self.missing = sorted(missing)
    self.unexpected = sorted(unexpected)
    self.misshaped = sorted(misshaped)
    lines = [f'{what} does not match the model: {len(self.missing)} missing, '
             f'{len(self.unexpected)} unexpected, {len(self.misshaped)} '
             'mis-shaped parameters']
    for label, items in (('missing', self.missing),
                         ('unexpected', self.unexpected),
                         ('mis-shaped', self.misshaped)):
      for item in items[:_MAX_LISTED]:
        lines.append(f'  {label}: {item}')
      if len(items) > _MAX_LISTED:
        lines.append(f'  ... and {len(items) - _MAX_LISTED} more {label}')
    super().__init__('\n'.join(lines))


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}. Non-dict values are leaves."""
  tree = flax.core.unfreeze(tree) if isinstance(
      tree, flax.core.FrozenDict) else tree
  return {'/'.join(k): v
          for k, v in flax.traverse_util.flatten_dict(tree).items()}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dict."""
  return flax.traverse_util.unflatten_dict(
      {tuple(k.split('/')): v for k, v in flat.items()})


def shape_of(x: Any) -> tuple[int, ...]:
  """The shape of an array, ShapeDtypeStruct or boxed (partitioned) leaf."""
  if isinstance(x, nn.meta.AxisMetadata):
    x = x.unbox()
  return tuple(int(d) for d in np.shape(x))


def check_tree(loaded: Mapping[str, Any], expected: Mapping[str, Any],
               what: str, names: Mapping[str, str] | None = None) -> None:
  """Raises WeightsMismatchError unless both trees have the same paths/shapes.

  Args:
    loaded: the converted checkpoint (nested dict of arrays).
    expected: the model's tree (arrays, ShapeDtypeStructs or boxed leaves).
    what: names the checkpoint in the error message.
    names: optional {our path: checkpoint name}, added to the messages.

  Raises:
    WeightsMismatchError: listing every difference.
  """
  got, want = flatten(loaded), flatten(expected)
  names = names or {}

  def label(path):
    return f'{path} (from {names[path]})' if path in names else path

  missing = [f'{p} {shape_of(want[p])}' for p in want if p not in got]
  unexpected = [f'{label(p)} {shape_of(got[p])}' for p in got
                if p not in want]
  misshaped = [f'{label(p)}: checkpoint {shape_of(got[p])}, model '
               f'{shape_of(want[p])}' for p in got
               if p in want and shape_of(got[p]) != shape_of(want[p])]
  if missing or unexpected or misshaped:
    raise WeightsMismatchError(what, missing, unexpected, misshaped)


def abstract_module_params(module: nn.Module, *args, **kwargs) -> PyTree:
  """Unboxed ShapeDtypeStruct params of `module.init(key, *args, **kwargs)`."""
  variables = jax.eval_shape(
      lambda: module.init(jax.random.key(0), *args, **kwargs))
  return nn.meta.unbox(variables)['params']


def abstract_params(config: Any) -> PyTree:
  """The RAHF parameter tree as ShapeDtypeStructs (nothing materialised).

  Args:
    config: a `rahf.RAHFConfig`.

  Returns:
    Unboxed nested dict of ShapeDtypeStructs, from
    `RAHFModel(config).get_initial_variables` under `jax.eval_shape`.
  """
  model = model_lib.RAHFModel(config)
  variables = jax.eval_shape(model.get_initial_variables, jax.random.key(0))
  return nn.meta.unbox(variables)['params']


def _numbered(tree: Mapping[str, Any], name: str) -> list[int]:
  """Sorted i for which `{name}_{i}` is a key of tree."""
  pattern = re.compile(rf'{re.escape(name)}_(\d+)')
  return sorted(int(m.group(1)) for k in tree
                if (m := pattern.fullmatch(k)) is not None)


def _stack(subtrees: list[Any]) -> Any:
  structures = {jax.tree.structure(t) for t in subtrees}
  if len(structures) != 1:
    return None  # Different layers; leave them for check_tree to report.
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                      *subtrees)


def match_layer_stacking(loaded: Any, target: Any) -> Any:
  """Stacks or unstacks numbered layers of `loaded` to match `target`.

  Where `target` has a scanned stack (`layers`, `encoderblock` with a leading
  'layers' axis) and `loaded` has `layers_0..layers_{n-1}`, these are stacked
  along a new axis 0; where `target` has numbered layers and `loaded` a
  stack, the stack is split. Anything else is left as is.

  Args:
    loaded: nested dict of arrays.
    target: nested dict (arrays or ShapeDtypeStructs) of the model.

  Returns:
    `loaded` in the target's layout.
  """
  if not isinstance(loaded, Mapping) or not isinstance(target, Mapping):
    return loaded
  out = dict(loaded)
  for name in SCAN_NAMES:
    idx = _numbered(out, name)
    if name in target and name not in out and idx == list(range(len(idx))):
      stacked = _stack([out[f'{name}_{i}'] for i in idx]) if idx else None
      if stacked is not None:
        for i in idx:
          del out[f'{name}_{i}']
        out[name] = stacked
    n = len(_numbered(target, name))
    if name in out and name not in target and n:
      depths = {np.shape(x)[0] if np.ndim(x) else None
                for x in jax.tree.leaves(out[name])}
      if depths == {n}:
        stack = out.pop(name)
        for i in range(n):
          out[f'{name}_{i}'] = jax.tree.map(lambda x, i=i: np.asarray(x)[i],
                                            stack)
  return {k: match_layer_stacking(v, target.get(k)) for k, v in out.items()}


def _subtree(params: Mapping[str, Any], keys: list[str]) -> Any:
  node = params
  for i, k in enumerate(keys):
    if not isinstance(node, Mapping) or k not in node:
      have = sorted(node) if isinstance(node, Mapping) else type(node)
      raise ValueError(
          f'prefix {"/".join(keys)!r}: no {k!r} under '
          f'{"/".join(keys[:i]) or "the top level"}; found {have}')
    node = node[k]
  return node


def _with_subtree(params: Mapping[str, Any], keys: list[str],
                  value: Any) -> dict[str, Any]:
  if not keys:
    return value
  out = dict(params)
  out[keys[0]] = _with_subtree(params[keys[0]], keys[1:], value)
  return out


def _converted_leaf(old: Any, new: Any) -> Any:
  """`new` with the dtype of `old`, boxed like `old` when it is boxed."""
  if isinstance(old, nn.meta.AxisMetadata):
    return old.replace_boxed(_converted_leaf(old.unbox(), new))
  return np.asarray(new, dtype=getattr(old, 'dtype', np.float32))


def merge_into(params: Mapping[str, Any], loaded: Mapping[str, Any],
               prefix: str = '', what: str = 'checkpoint') -> dict[str, Any]:
  """Returns `params` with the subtree at `prefix` replaced by `loaded`.

  The subtree must match exactly (same paths and shapes, after matching the
  scan layout); values are cast to the dtypes of `params`. `params` may be
  concrete, abstract (`jax.eval_shape`, e.g. `abstract_params(config)`) or
  boxed with logical axis names; boxes are kept.

  Args:
    params: the full parameter tree.
    loaded: the imported subtree (e.g. `vit_npz.load(...)`).
    prefix: '/'-separated path of the subtree ('img'; '' for the root).
    what: names the checkpoint in error messages.

  Returns:
    A new tree (the other subtrees are shared with `params`).

  Raises:
    ValueError: if `prefix` is not in `params`.
    WeightsMismatchError: if `loaded` does not match the subtree.
  """
  params = flax.core.unfreeze(params) if isinstance(
      params, flax.core.FrozenDict) else params
  keys = [k for k in prefix.split('/') if k]
  target = _subtree(params, keys)
  loaded = match_layer_stacking(loaded, nn.meta.unbox(target))
  check_tree(loaded, target, f'{what} (at {prefix or "the root"})')
  flat_old, flat_new = flatten(target), flatten(loaded)
  merged = unflatten({k: _converted_leaf(flat_old[k], flat_new[k])
                      for k in flat_old})
  return _with_subtree(params, keys, merged)


def merge_each(params: Mapping[str, Any], loaded: Mapping[str, Any],
               what: str = 'checkpoint') -> dict[str, Any]:
  """`merge_into` for every top-level entry of `loaded`.

  E.g. a T5X tree `{token_embedder, encoder, decoder}` into a RAHF tree that
  also has `img` and heads, which stay as they are.

  Args:
    params: the full parameter tree.
    loaded: {top-level name: subtree}.
    what: names the checkpoint in error messages.

  Returns:
    The merged tree.
  """
  for name, subtree in loaded.items():
    params = merge_into(params, subtree, name, what)
  return params
