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

Mesh axes are `('data', 'model')`: `data` carries the batch (and, with FSDP,
the parameters' largest dimension), `model` carries tensor parallelism.
"""

from typing import Sequence

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
  """Returns (logical name, mesh axis) rules for a ('data', 'model') mesh.

  Args:
    fsdp: if True, the `embed` dimension of parameters is sharded over the
      `data` axis as well (fully sharded data parallelism).
  """
  rules = [
      ('batch', 'data'),
      ('vocab', 'model'),
      ('mlp', 'model'),
      ('heads', 'model'),
      ('joined_kv', 'model'),
      ('conv_out', 'model'),
      ('head_out', None),
      ('embed', 'data' if fsdp else None),
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
