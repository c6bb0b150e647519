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
"""The `richhf18k` TFDS dataset; importing this package registers it.

Build it offline from the joined shards (or the release + Pick-a-Pic parquet):

  tfds build richhf_jax/data/richhf18k --manual_dir=MANUAL --data_dir=DATA

or from Python:

  import richhf_jax.data.richhf18k  # registers 'richhf18k'
  ds = tfds.load('richhf18k', split='train', data_dir=DATA,
                 download_and_prepare_kwargs={'download_config':
                     tfds.download.DownloadConfig(manual_dir=MANUAL)})

The relative import keeps one module name per process whichever way the
package is imported (`tfds build` imports it as `richhf18k`), so the builder
is registered once.
"""

from . import richhf18k_dataset_builder  # pylint: disable=g-importing-member

Builder = richhf18k_dataset_builder.Builder
