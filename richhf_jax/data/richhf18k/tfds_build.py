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
"""`tfds build` without the rest of the tfds CLI.

tensorflow-datasets 4.9.10's `tfds` entry point imports its `convert_format`
command, which needs apache_beam at import time, so `tfds build` fails with
`ModuleNotFoundError: No module named 'apache_beam'` where Beam is not
installed. This runs the same `build` command (same arguments, same code)
on its own:

  python -m richhf_jax.data.richhf18k.tfds_build richhf_jax/data/richhf18k \
      --manual_dir=MANUAL --data_dir=DATA

With apache_beam installed, plain `tfds build richhf_jax/data/richhf18k
--manual_dir=MANUAL --data_dir=DATA` is equivalent.
"""

import sys

from absl import app
from tensorflow_datasets.scripts.cli import build
from tensorflow_datasets.scripts.cli import cli_utils


def main() -> None:
  parse = cli_utils.make_flags_parser(
      build.Args, description='tfds build (the build command alone)')
  app.run(lambda args: args.execute(), argv=sys.argv, flags_parser=parse)


if __name__ == '__main__':
  main()
