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
"""Gin at the edge: flag rewriting, parsing, and the saved operative config.

Library code never imports gin. Entry points call `parse_gin_flags` after
importing `richhf_jax.gin_configurables`, which registers what gin files may
name. As in t5x, `--gin.NAME=VALUE` on the command line is rewritten to the
binding `NAME = VALUE`.
"""

import os
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

GIN_FILE = flags.DEFINE_multi_string(
    'gin_file', [], 'gin files, applied in order.')
GIN_BINDINGS = flags.DEFINE_multi_string(
    'gin_bindings', [], 'extra gin bindings, applied after the files.')
GIN_SEARCH_PATHS = flags.DEFINE_list(
    'gin_search_paths', ['.'],
    'directories searched for gin files and their includes.')

_PREFIX = '--gin.'


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """Rewrites `--gin.NAME=VALUE` (or `--gin.NAME VALUE`) to gin bindings."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(_PREFIX):
      body = arg[len(_PREFIX):]
      if '=' in body:
        name, value = body.split('=', 1)
      elif i + 1 < len(argv):
        name, value = body, argv[i + 1]
        i += 1
      else:
        raise ValueError(f'{arg} has no value; write {arg}=VALUE')
      out.append(f'--gin_bindings={name} = {value}')
    else:
      out.append(arg)
    i += 1
  return out


def _default_search_paths() -> list[str]:
  here = os.path.dirname(os.path.abspath(__file__))
  return [os.path.dirname(here)]  # the repository root (holds gin/).


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str],
              search_paths: Sequence[str] = ()) -> None:
  """Parses and finalizes gin files and bindings.

  Raises:
    ValueError: no gin file given.
  """
  if not gin_files:
    raise ValueError('give at least one --gin_file (see gin/runs/)')
  for path in list(search_paths) + _default_search_paths():
    gin.add_config_file_search_path(os.path.abspath(path))
  gin.parse_config_files_and_bindings(
      list(gin_files), list(bindings), finalize_config=True)


def parse_gin_flags() -> None:
  parse_gin(GIN_FILE.value, GIN_BINDINGS.value, GIN_SEARCH_PATHS.value)


def save_operative_config(directory: str, name: str = 'config.gin') -> str:
  """Writes gin's operative config (every value the run used)."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  with open(path, 'w') as f:
    f.write(gin.operative_config_str())
  return path


def run(fn: Callable[[], object],
        on_exit: Callable[[int], None] | None = None) -> None:
  """Runs a gin-configured entry point `fn` as a program (t5x style).

  Parses the flags (with `--gin.NAME=VALUE` rewritten to bindings), then the
  gin files and bindings, then calls `fn()`. If given, `on_exit(status)`
  runs when `fn` returns (status 0) or calls `sys.exit` with an integer
  status; the program then exits with that status as usual unless
  `on_exit` ends it first. Exceptions bypass it.
  """
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    parse_gin_flags()
    logging.set_verbosity(logging.WARNING)
    try:
      fn()
    except SystemExit as e:
      if on_exit is not None and isinstance(e.code, int):
        on_exit(e.code)
      raise
    if on_exit is not None:
      on_exit(0)

  app.run(main, flags_parser=lambda argv: app.parse_flags_with_usage(
      rewrite_gin_args(argv)))
