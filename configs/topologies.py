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
r"""Hardware topologies: where a run executes (hosts, accelerator, mesh).

Read by the launchers in launch/ (the gcloud accelerator type, the number of
hosts, the mesh shape passed to the trainer); gin files own everything a run
does.

  from configs import topologies
  cfg = topologies.get_config('v4-32')   # or 'cpu', 'v5e-64', '8xh100', ...
  python launch/tpu_pod.py --topology=v4-32 --dry_run ...
"""

import ml_collections

# name -> (accelerator, hosts, devices per host, (data, fsdp, model)).
# -1 marks the mesh axis that takes the remaining devices. JAX sees one device
# per TPU chip (v4: 2 TensorCores as one megacore chip; v4-32 = 16 chips on 4
# hosts), one per GPU. The large RAHF (~0.5B params) fits a v5e chip's 16 GiB
# with FSDP over 4 chips.
_TOPOLOGIES = {
    'cpu': ('cpu', 1, 1, (-1, 1, 1)),
    'cpu-8': ('cpu', 1, 8, (-1, 1, 1)),          # 8 fake CPU devices.
    'v4-8': ('tpu-v4', 1, 4, (-1, 1, 1)),
    'v4-32': ('tpu-v4', 4, 4, (-1, 1, 1)),
    'v5e-64': ('tpu-v5e', 16, 4, (-1, 4, 1)),
    '8xh100': ('gpu-h100', 1, 8, (-1, 1, 1)),
    '2x8xh100': ('gpu-h100', 2, 8, (-1, 1, 2)),
}

# Cloud TPU: accelerator type prefix, TPU VM runtime image, default zone.
_TPU = {
    'tpu-v4': ('v4', 'tpu-ubuntu2204-base', 'us-central2-b'),
    'tpu-v5e': ('v5litepod', 'v2-alpha-tpuv5-lite', 'us-west4-a'),
}


def names() -> list[str]:
  return sorted(_TOPOLOGIES)


def get_config(arg: str = 'cpu') -> ml_collections.ConfigDict:
  """Returns the locked topology config named `arg`.

  Raises:
    ValueError: unknown topology name (the message lists the valid ones).
  """
  if arg not in _TOPOLOGIES:
    raise ValueError(f'unknown topology {arg!r}; valid names: {names()}')
  accelerator, hosts, per_host, (data, fsdp, model) = _TOPOLOGIES[arg]
  cfg = ml_collections.ConfigDict()
  cfg.name = arg
  cfg.accelerator = accelerator
  cfg.platform = accelerator.split('-')[0]  # cpu | tpu | gpu
  cfg.num_hosts = hosts
  cfg.devices_per_host = per_host
  cfg.num_devices = hosts * per_host
  fixed = max(data, 1) * max(fsdp, 1) * max(model, 1)
  rest = cfg.num_devices // fixed
  cfg.mesh = ml_collections.ConfigDict({
      'data': rest if data == -1 else data,
      'fsdp': rest if fsdp == -1 else fsdp,
      'model': rest if model == -1 else model})
  assert cfg.mesh.data * cfg.mesh.fsdp * cfg.mesh.model == cfg.num_devices, (
      arg, cfg.mesh)
  # Kept for readers of the earlier fields.
  cfg.model_parallel = cfg.mesh.model
  cfg.data_parallel = cfg.mesh.data * cfg.mesh.fsdp
  cfg.tpu = ml_collections.ConfigDict({
      'accelerator_type': '', 'runtime_version': '', 'zone': ''})
  if accelerator in _TPU:
    prefix, runtime, zone = _TPU[accelerator]
    # gcloud counts TensorCores for v4 (v4-32 = 16 chips), chips for v5e.
    cores = cfg.num_devices * (2 if prefix == 'v4' else 1)
    cfg.tpu.accelerator_type = f'{prefix}-{cores}'
    cfg.tpu.runtime_version = runtime
    cfg.tpu.zone = zone
  cfg.lock()
  return cfg
