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
"""Shared pytest setup: a persistent JAX compilation cache and quiet TF logs."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# The suite's time is mostly XLA:CPU compiling tiny models: without LLVM's
# optimizations they compile ~30% faster and still run fast enough. Set
# before JAX starts; subprocesses (multi-process and resume tests) inherit
# it. An explicit level in XLA_FLAGS wins.
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()

import jax  # pylint: disable=g-import-not-at-top

_CACHE_DIR = os.environ.get(
    'RICHHF_JAX_TEST_CACHE',
    str(pathlib.Path(__file__).resolve().parent.parent / '.cache' / 'jax'))
jax.config.update('jax_compilation_cache_dir', _CACHE_DIR)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
