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
"""big_vision / vit_jax ViT `.npz` checkpoints -> the RAHF `img` subtree.

Both projects save a flat `.npz` whose keys are '/'-joined parameter paths.
Our ViT keeps big_vision's names, so most entries map unchanged; `load` does
the remaining surgery in one place:

- Key prefix: big_vision model checkpoints may nest the tower
  (`params/img/...` for two-tower models, `params/...`); the prefix in front
  of `embedding/kernel` is found and stripped (or pass `prefix=`).
- vit_jax (pre-linen) block names: `MultiHeadDotProductAttention_1`,
  `LayerNorm_2`, `MlpBlock_3` -> `..._0`, `LayerNorm_1`, `MlpBlock_0`, and
  `Transformer/posembed_input/pos_embedding` -> `pos_embedding`.
- Scanned big_vision checkpoints (`Transformer/encoderblock/...` with a
  leading depth axis) are split into `encoderblock_{i}`.
- Classifier parts (`head`, `pre_logits`, `MAPHead_0`) are dropped.
- Class token and position embedding: vit_jax adds the position embedding
  after prepending the class token, so its `pos_embedding` has h * w + 1
  rows and row 0 belongs to the class token. Our ViT (like big_vision) adds
  it before, so row 0 is folded into `cls` (cls + pos[0], an exact
  rewrite). A class token the model does not use is dropped; one it needs
  but the checkpoint lacks is reported missing.
- Resolution: the patch-grid part of the position embedding is resized
  bilinearly (`vit.resample_posemb`) when the grid differs (e.g. 224 px
  weights in a 384 px model).

The file is read with `np.load(allow_pickle=False)`: no pickled objects.
"""

import dataclasses
import logging
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from richhf_jax.models import config as config_lib
from richhf_jax.models import vit
from richhf_jax.weights import common

# Top-level entries of classifier checkpoints that the image encoder drops.
DROPPED = ('head', 'pre_logits', 'MAPHead_0')

# vit_jax block module names -> big_vision linen names.
_OLD_BLOCK_NAMES = (
    ('MultiHeadDotProductAttention_1', 'MultiHeadDotProductAttention_0'),
    ('LayerNorm_2', 'LayerNorm_1'),
    ('MlpBlock_3', 'MlpBlock_0'),
)
_OLD_POSEMB = 'Transformer/posembed_input/pos_embedding'


def read_npz(path: str) -> dict[str, np.ndarray]:
  """Reads a flat `.npz` checkpoint without unpickling anything.

  Args:
    path: the `.npz` file.

  Returns:
    {'/'-joined key: array}.

  Raises:
    ValueError: if the file holds object arrays (pickles are refused).
  """
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def _find_prefix(flat: dict[str, np.ndarray], prefix: str | None) -> str:
  """The key prefix in front of the ViT's `embedding/kernel`."""
  if prefix is not None:
    prefix = prefix.strip('/')
    return prefix + '/' if prefix else ''
  found = sorted({k[:-len('embedding/kernel')] for k in flat
                  if k == 'embedding/kernel'
                  or k.endswith('/embedding/kernel')})
  if len(found) != 1:
    raise ValueError(
        'could not find a unique ViT patch embedding (`.../embedding/kernel`) '
        f'in the checkpoint; candidates {found}. Pass prefix= to name the '
        'image tower (e.g. "params/img")')
  return found[0]


def _rename(key: str) -> str:
  """vit_jax names -> big_vision names (identity for big_vision keys)."""
  if key == _OLD_POSEMB:
    return 'pos_embedding'
  if re.match(r'Transformer/encoderblock(_\d+)?/', key):
    for old, new in _OLD_BLOCK_NAMES:
      key = key.replace(f'/{old}/', f'/{new}/')
  return key


def _unscan(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Splits `Transformer/encoderblock/...` [depth, ...] into numbered blocks."""
  out = {}
  for k, v in flat.items():
    m = re.fullmatch(r'Transformer/encoderblock/(.*)', k)
    if m is None:
      out[k] = v
      continue
    for i in range(v.shape[0]):
      out[f'Transformer/encoderblock_{i}/{m.group(1)}'] = v[i]
  return out


def _fold_class_token(flat: dict[str, np.ndarray],
                      cfg: config_lib.ViTConfig) -> None:
  """Moves a class-token position row into `cls`; drops unused `cls`."""
  pos = flat.get('pos_embedding')
  grid_plus_cls = (pos is not None and pos.ndim == 3 and
                   int(np.sqrt(pos.shape[1]))**2 != pos.shape[1])
  if grid_plus_cls:
    if 'cls' in flat:
      flat['cls'] = flat['cls'] + pos[:, :1]
    flat['pos_embedding'] = pos[:, 1:]
  if 'cls' in flat and not cfg.class_token:
    logging.info('ViT checkpoint has a class token; the model uses none, so '
                 'it is dropped')
    del flat['cls']


def load(path_or_flat: str | dict[str, np.ndarray],
         config: config_lib.ViTConfig, *,
         prefix: str | None = None) -> dict[str, Any]:
  """Loads a big_vision / vit_jax ViT checkpoint as our `img` subtree.

  Args:
    path_or_flat: the `.npz` path, or its already-read {key: array}.
    config: the model's ViT config (grid, class token, posemb).
    prefix: key prefix of the image tower in the file (auto-detected when
      None; '' for a bare ViT).

  Returns:
    Nested dict of float32 numpy arrays in the unscanned layout; put it in
    a model with `common.merge_into(params, tree, 'img')`.

  Raises:
    WeightsMismatchError: listing missing / unexpected / mis-shaped entries.
    ValueError: if the image tower cannot be located.
  """
  flat = (read_npz(path_or_flat) if isinstance(path_or_flat, str)
          else dict(path_or_flat))
  pre = _find_prefix(flat, prefix)
  flat = {k[len(pre):]: np.asarray(v) for k, v in flat.items()
          if k.startswith(pre)}
  flat = {k: v for k, v in flat.items() if k.split('/')[0] not in DROPPED}
  flat = _unscan({_rename(k): v for k, v in flat.items()})

  _fold_class_token(flat, config)
  if config.posemb == 'learn' and 'pos_embedding' in flat:
    pos = flat['pos_embedding']
    if pos.ndim == 3 and pos.shape[1] != config.num_patches:
      logging.info('resampling the ViT position embedding from %d to %s '
                   'positions', pos.shape[1], config.grid)
      flat['pos_embedding'] = vit.resample_posemb(pos, config.grid)

  tree = common.unflatten({k: v.astype(np.float32) for k, v in flat.items()})
  flat_cfg = dataclasses.replace(config, scan=False)
  s = config.image_size
  expected = common.abstract_module_params(
      vit.ViT(flat_cfg), jnp.zeros((1, s, s, 3), jnp.float32))
  common.check_tree(tree, expected, f'ViT checkpoint {_describe(path_or_flat)}')
  return tree


def _describe(path_or_flat: Any) -> str:
  return repr(path_or_flat) if isinstance(path_or_flat, str) else '(arrays)'
