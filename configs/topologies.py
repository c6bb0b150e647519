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
r"""Hardware topologies: where a run executes (mesh shape, hosts, accelerator).

Read by the launchers in launch/; gin files own everything a run does.

  from configs import topologies
  cfg = topologies.get_config('v4-32')      # or 'cpu', 'v5e-64', '8xh100'
"""

import ml_collections

# name -> (accelerator, hosts, devices per host, model-parallel size)
_TOPOLOGIES = {
    'cpu': ('cpu', 1, 1, 1),
    'v4-32': ('tpu-v4', 4, 4, 1),
    'v5e-64': ('tpu-v5e', 16, 4, 1),
    '8xh100': ('gpu-h100', 1, 8, 1),
    '2x8xh100': ('gpu-h100', 2, 8, 1),
}


def get_config(arg: str = 'cpu') -> ml_collections.ConfigDict:
  """Returns the locked topology config named `arg`.

  Raises:
    ValueError: unknown topology name (the message lists the valid ones).
  """
  if arg not in _TOPOLOGIES:
    raise ValueError(f'unknown topology {arg!r}; valid names: '
                     f'{sorted(_TOPOLOGIES)}')
  accelerator, hosts, per_host, model_parallel = _TOPOLOGIES[arg]
  cfg = ml_collections.ConfigDict()
  cfg.name = arg
  cfg.accelerator = accelerator
  cfg.num_hosts = hosts
  cfg.devices_per_host = per_host
  cfg.num_devices = hosts * per_host
  cfg.model_parallel = model_parallel
  cfg.data_parallel = cfg.num_devices // model_parallel
  cfg.lock()
  return cfg
