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
"""Per-program XLA compile options the library compiles its models with.

XLA:CPU hands whole subgraphs of a program (convolutions together with the
norms, activations and residual adds around them) to the YNNPACK library as
one fusion. For the heatmap heads those fusions run at about half the rate
of the same convolutions compiled one by one: the `small` configuration's
top upsampling block (three 3x3 convs at 224x224x192 and the output conv,
100 GFLOP) took 1.7-1.9 s as one YNNPACK fusion, where each of those convs
alone takes 0.21-0.27 s. Restricting YNNPACK fusions to dot products
(`xla_cpu_experimental_ynn_fusion_type = LIBRARY_FUSION_TYPE_DOT`) leaves
the convolutions to XLA's own (Eigen) kernels and the elementwise chains to
XLA's loop fusions. Same executable with and without, alternating in one
process (docs/performance.md, 2-core CPU, medians): forward pass `small`
4.33 -> 3.92 s, `paper` 18.1 -> 15.6 s; train step `small` 16.7 -> 15.5 s,
`paper` 68.5 -> 62.6 s.

`Predictor`, the evaluation and the trainer compile with `defaults()`
(`TrainConfig.default_compiler_options`, `Predictor(compiler_options=...)`
turn it off). These are options of one executable (`Lowered.compile(
compiler_options=...)`, `jax.jit(..., compiler_options=...)`), not
process-wide XLA_FLAGS: nothing else in the process is affected. An option
this jaxlib does not know is dropped with a warning (checked once by
compiling a trivial program), never an error.
"""

import functools
import logging
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

# Compile options per backend (others get none).
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    'cpu': {
        'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT',
    },
}


@functools.lru_cache(maxsize=None)
def _supported(backend: str, name: str, value: Any) -> bool:
  """Whether this jaxlib accepts the option `name=value` on `backend`."""
  # A device of this process: in a multi-process run, jax.devices() starts
  # with another process's devices, which this one cannot compile for.
  device = jax.local_devices(backend=backend)[0]
  lowered = jax.jit(lambda x: x + 1).lower(
      jax.ShapeDtypeStruct((2,), jnp.float32,
                           sharding=jax.sharding.SingleDeviceSharding(device)))
  try:
    lowered.compile(compiler_options={name: value})
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('XLA compile option %s=%r is not supported here (%s); '
                    'compiling without it', name, value,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
    return False
  return True


def defaults(backend: Optional[str] = None) -> dict[str, Any]:
  """The supported `DEFAULT_OPTIONS` of `backend` (default: JAX's)."""
  backend = backend or jax.default_backend()
  return {name: value
          for name, value in DEFAULT_OPTIONS.get(backend, {}).items()
          if _supported(backend, name, value)}


def resolve(options: Optional[Mapping[str, Any]],
            backend: Optional[str] = None) -> dict[str, Any]:
  """`options` as given, or `defaults(backend)` when None."""
  if options is None:
    return defaults(backend)
  if not isinstance(options, Mapping):
    raise ValueError(f'compiler_options={options!r}; expected a mapping of '
                     'XLA option names to values, or None for the defaults')
  return dict(options)
