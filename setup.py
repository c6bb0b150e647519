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
"""Installs richhf_jax."""

import setuptools

# Lower bounds are the versions the test suite was run with.
_INSTALL_REQUIRES = [
    'jax>=0.10.2',
    'flax>=0.12.8',
    'optax>=0.2.8',
    'orbax-checkpoint>=0.12.8',
    'seqio>=0.0.20',
    # tensorflow-text pins the full tensorflow wheel; it runs CPU-only fine,
    # so tensorflow-cpu is deliberately not listed beside it.
    'tensorflow>=2.21.0',
    'tensorflow-text>=2.21.1',
    'tensorflow-datasets>=4.9.10',
    'ml-collections>=1.1.0',
    'clu>=0.0.12',
    # clu.metric_writers imports tensorboard, which nothing else installs.
    'tensorboard>=2.21.0',
    'gin-config>=0.5.0',
    'numpy>=2.0',
    'pillow>=11.0',
    'pyarrow>=18.0',
    'scipy>=1.13',
    'sentencepiece>=0.2.0',
]

setuptools.setup(
    name='richhf_jax',
    version='0.1.0',
    description=('JAX/Flax implementation of RAHF, the rich human feedback '
                 'model for text-to-image generation (CVPR 2024).'),
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['richhf_jax', 'richhf_jax.*']),
    package_data={'richhf_jax': ['py.typed']},
    install_requires=_INSTALL_REQUIRES,
    extras_require={
        'test': ['pytest>=8.0', 'pytest-xdist>=3.5'],
        'gpu': ['jax[cuda12]>=0.10.2'],
        'tpu': ['jax[tpu]>=0.10.2'],
    },
)
