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
"""Parameter counts and parameter-tree listings of the model presets.

Everything is computed with `jax.eval_shape`: no parameter is materialised,
so the large presets are as cheap as the tiny one.

  python -m richhf_jax.weights.info                  # all ViT / T5 presets
  python -m richhf_jax.weights.info --preset vit:L/16 --preset t5:t5_1_1_base
  python -m richhf_jax.weights.info --rahf large --variant augmented --tree

`--tree` prints one line per parameter: path, shape, dtype, logical axes.
RAHF presets `tiny`, `base`, `large` mirror `gin/models/rahf_<name>.gin`
(a test keeps them equal).
"""

import argparse
import json
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import model as model_lib
from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.models import score_head
from richhf_jax.models import t5
from richhf_jax.models import vit
from richhf_jax.weights import common

# Published sizes of the encoders alone (no classifier head), in parameters:
# ViT (Dosovitskiy et al. 2021, Table 1, and timm's ViT-L/16 count); T5 v1.0
# base (t5-base) and T5.1.1 (google/t5-v1_1-*), embeddings included.
PUBLISHED_COUNTS: dict[str, float] = {
    'vit:B/16': 86e6,
    'vit:L/16': 303e6,
    't5:t5_1_1_small': 77e6,
    't5:t5_1_1_base': 248e6,
    't5:t5_1_1_large': 783e6,
    't5:t5_1_0_base': 223e6,
}

# Arguments of the RAHF presets, as in gin/models/rahf_<name>.gin.
RAHF_PRESETS: dict[str, dict[str, Any]] = {
    'tiny': dict(vit='tiny', vit_overrides={'image_size': 64, 'patch_size': 8},
                 t5='tiny', t5_overrides={'vocab_size': 512},
                 heatmap_head='tiny', score_head='tiny'),
    'base': dict(vit='B/16', vit_overrides={'image_size': 384},
                 t5='t5_1_1_base', heatmap_head='port', score_head='port'),
    # The public PyTorch port (`port.port_rahf_config`): HF ViT semantics
    # and the port's wiring.
    'large': dict(vit='L/16',
                  vit_overrides={'image_size': 384, 'class_token': True,
                                 'gelu_approximate': False,
                                 'layernorm_epsilon': 1e-12},
                  t5='t5_1_0_base', heatmap_head='port', score_head='port',
                  wiring=rahf.PORT_WIRING),
}


def rahf_preset_config(name: str, variant: str = 'multihead'
                       ) -> rahf.RAHFConfig:
  """The RAHF preset `name` ('tiny', 'base', 'large') in `variant`.

  Raises:
    ValueError: for an unknown preset name.
  """
  if name not in RAHF_PRESETS:
    raise ValueError(f'unknown RAHF preset {name!r}; valid names: '
                     f'{sorted(RAHF_PRESETS)}')
  p = RAHF_PRESETS[name]
  return rahf.RAHFConfig(
      vit=config_lib.vit_config(p['vit'], **p.get('vit_overrides', {})),
      t5=config_lib.t5_config(p['t5'], **p.get('t5_overrides', {})),
      heatmap_head=heatmap_head.get_heatmap_head_config(p['heatmap_head']),
      score_head=score_head.get_score_head_config(p['score_head']),
      variant=variant, **p.get('wiring', {}))


def count(tree: Any) -> int:
  """Number of scalars in a tree of arrays / ShapeDtypeStructs / boxes."""
  return sum(int(np.prod(common.shape_of(x))) for x in jax.tree.leaves(
      tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)))


def vit_params(name: str, **overrides: Any) -> Any:
  """Abstract params of the ViT preset `name`."""
  cfg = config_lib.vit_config(name, **overrides)
  s = cfg.image_size
  return common.abstract_module_params(vit.ViT(cfg),
                                       jnp.zeros((1, s, s, 3), jnp.float32))


def t5_params(name: str, **overrides: Any) -> Any:
  """Abstract params of the T5 preset `name` (embedder, encoder, decoder)."""
  cfg = config_lib.t5_config(name, **overrides)
  tokens = jnp.ones((1, 4), jnp.int32)
  return common.abstract_module_params(t5.T5Transformer(cfg), tokens, tokens)


def preset_count(key: str) -> int:
  """Parameter count of 'vit:<preset>' or 't5:<preset>'.

  Raises:
    ValueError: for a key without a known family prefix.
  """
  family, _, name = key.partition(':')
  if family == 'vit':
    return count(vit_params(name))
  if family == 't5':
    return count(t5_params(name))
  raise ValueError(f'preset key {key!r} must be "vit:<name>" or "t5:<name>"')


def abstract_variables(config: rahf.RAHFConfig) -> Any:
  """Boxed abstract variables of RAHF (with logical axis names)."""
  model = model_lib.RAHFModel(config)
  return jax.eval_shape(model.get_initial_variables, jax.random.key(0))


def param_entries(config: rahf.RAHFConfig) -> list[dict[str, Any]]:
  """One {path, shape, dtype, axes} per RAHF parameter, sorted by path."""
  params = abstract_variables(config)['params']
  flat = common.flatten(params)
  entries = []
  for path in sorted(flat):
    leaf = flat[path]
    axes = list(leaf.names) if isinstance(leaf, nn.LogicallyPartitioned) \
        else None
    value = leaf.unbox() if isinstance(leaf, nn.meta.AxisMetadata) else leaf
    entries.append({'path': path, 'shape': list(common.shape_of(value)),
                    'dtype': str(value.dtype), 'axes': axes})
  return entries


def param_tree_golden(name: str) -> dict[str, Any]:
  """The golden record of RAHF preset `name`: both variants' param trees."""
  out: dict[str, Any] = {'preset': name}
  for variant in rahf.VARIANTS:
    entries = param_entries(rahf_preset_config(name, variant))
    out[variant] = {
        'num_params': sum(int(np.prod(e['shape'])) for e in entries),
        'params': entries}
  return out


def golden_to_json(golden: dict[str, Any]) -> str:
  """JSON text with one parameter per line (readable diffs)."""
  lines = ['{', f'  "preset": {json.dumps(golden["preset"])},']
  variants = [v for v in rahf.VARIANTS if v in golden]
  for i, variant in enumerate(variants):
    record = golden[variant]
    lines.append(f'  {json.dumps(variant)}: {{')
    lines.append(f'    "num_params": {record["num_params"]},')
    lines.append('    "params": [')
    params = record['params']
    for j, e in enumerate(params):
      comma = ',' if j < len(params) - 1 else ''
      lines.append(f'      {json.dumps(e)}{comma}')
    lines.append('    ]')
    lines.append('  }' + (',' if i < len(variants) - 1 else ''))
  lines.append('}')
  return '\n'.join(lines) + '\n'


def _all_preset_keys() -> list[str]:
  return ([f'vit:{n}' for n in config_lib.VIT_PRESETS] +
          [f't5:{n}' for n in config_lib.T5_PRESETS])


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--preset', action='append', default=None,
                      help='vit:<name> or t5:<name>; repeatable (default: '
                      'all ViT and T5 presets)')
  parser.add_argument('--rahf', choices=sorted(RAHF_PRESETS),
                      help='count a whole RAHF preset instead')
  parser.add_argument('--variant', default='multihead', choices=rahf.VARIANTS)
  parser.add_argument('--tree', action='store_true',
                      help='with --rahf: list every parameter')
  args = parser.parse_args(argv)

  if args.rahf:
    cfg = rahf_preset_config(args.rahf, args.variant)
    entries = param_entries(cfg)
    if args.tree:
      for e in entries:
        print(f'{e["path"]}\t{tuple(e["shape"])}\t{e["dtype"]}\t'
              f'{tuple(e["axes"] or ())}')
    by_top: dict[str, int] = {}
    for e in entries:
      top = e['path'].split('/')[0]
      by_top[top] = by_top.get(top, 0) + int(np.prod(e['shape']))
    for top, n in by_top.items():
      print(f'{top:28s} {n:>14,}')
    print(f'{"total (" + args.rahf + ", " + args.variant + ")":28s} '
          f'{sum(by_top.values()):>14,}')
    return

  for key in args.preset or _all_preset_keys():
    n = preset_count(key)
    published = PUBLISHED_COUNTS.get(key)
    note = (f'  (published ~{published / 1e6:.0f}M, '
            f'{100 * (n / published - 1):+.2f}%)' if published else '')
    print(f'{key:20s} {n:>14,}  {n / 1e6:8.1f}M{note}')


if __name__ == '__main__':
  main()
