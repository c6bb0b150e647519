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
"""Regenerates tests/testdata/param_trees/<preset>.json.

  .venv/bin/python tests/testdata/make_param_trees.py

One file per RAHF preset (tiny, base, large; see
`richhf_jax.weights.info.RAHF_PRESETS`), each with both variants' parameter
trees: path, shape, dtype and logical axis names of every parameter, from
`jax.eval_shape` (nothing is materialised). A changed golden is a changed
checkpoint format: regenerate only for an intended model change, and say so
in the commit.
"""

import os

from richhf_jax.weights import info

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'param_trees')


def main() -> None:
  os.makedirs(OUT, exist_ok=True)
  for name in info.RAHF_PRESETS:
    path = os.path.join(OUT, f'{name}.json')
    with open(path, 'w') as f:
      f.write(info.golden_to_json(info.param_tree_golden(name)))
    print(f'wrote {path} ({os.path.getsize(path)} bytes)')


if __name__ == '__main__':
  main()
