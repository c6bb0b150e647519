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
r"""Exports a training checkpoint as a self-contained inference checkpoint.

  python -m richhf_jax.export --checkpoint /tmp/rahf --out /tmp/rahf_export \
    [--step 1500 | --best] [--vocab /data/spm.model]

`--checkpoint` is a training run's MODEL_DIR (the one holding
`checkpoints/<step>/`; `--best` reads the kept-best `best/<step>/`). No gin is involved: the model config is rebuilt from
the JSON the trainer saved next to each checkpoint (`config_from_json`), and
only the parameters are read (the optimizer state stays on disk).

The export directory:

  OUT/config.json   {"format": "richhf_jax.export", "version": 1,
                     "model_config": {...}, "input_length": L,
                     "target_length": T, "vocab": "spm.model",
                     "step": N, "source": "<model dir>"}
  OUT/params/       the parameters, an orbax StandardCheckpointer directory
  OUT/spm.model     the SentencePiece model (and spm.vocab when present)

`load_export(OUT)` reads it back; `richhf_jax.inference.Predictor` uses it.
The directory is written under a temporary name and renamed when complete.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import types
import typing
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from richhf_jax import checkpoints
from richhf_jax import model as model_lib
from richhf_jax.models import rahf

PyTree = Any

FORMAT = 'richhf_jax.export'
VERSION = 1
CONFIG_FILE = 'config.json'
PARAMS_DIR = 'params'
VOCAB_FILE = 'spm.model'
# DataConfig's defaults, used when the training meta has no data section.
DEFAULT_INPUT_LENGTH = 32
DEFAULT_TARGET_LENGTH = 48


@dataclasses.dataclass(frozen=True)
class ExportInfo:
  """What an export holds besides the parameters.

  Attributes:
    config: the model configuration.
    vocab_path: absolute path of the SentencePiece model.
    input_length: prompt token length the model was trained with.
    target_length: decoded token length the model was trained with.
    step: the training step the parameters come from.
    source: the training directory they were exported from.
  """
  config: rahf.RAHFConfig
  vocab_path: str
  input_length: int
  target_length: int
  step: Optional[int] = None
  source: Optional[str] = None


# ----------------------------------------------------------------------------
# Config JSON -> dataclasses.
# ----------------------------------------------------------------------------


def _from_json(tp: Any, value: Any, where: str, default: Any = None) -> Any:
  """Rebuilds a value of type `tp` from its `checkpoints._to_json` form."""
  if dataclasses.is_dataclass(tp):
    return _dataclass_from_json(tp, value, where)
  origin = typing.get_origin(tp)
  if origin in (Union, types.UnionType):
    if value is None:
      return None
    options = [a for a in typing.get_args(tp) if a is not type(None)]
    return _from_json(options[0], value, where) if len(options) == 1 else (
        value)
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise ValueError(f'{where}: expected a list, got {value!r}')
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
      args = (args[0],) * len(value)
    elif len(args) != len(value):
      raise ValueError(f'{where}: expected {len(args)} values, got {value!r}')
    return tuple(_from_json(a, v, f'{where}[{i}]')
                 for i, (a, v) in enumerate(zip(args, value)))
  if tp is Any and isinstance(value, str) and not isinstance(default, str):
    # A dtype given as a jnp scalar type by default, saved as its name.
    try:
      return getattr(jnp, np.dtype(value).name)
    except (TypeError, AttributeError):
      return value
  return value


def _dataclass_from_json(cls: type, value: Any, where: str) -> Any:
  if not isinstance(value, dict):
    raise ValueError(f'{where}: expected a JSON object for {cls.__name__}, '
                     f'got {type(value).__name__} {value!r:.80}')
  fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
  unknown = sorted(set(value) - set(fields))
  if unknown:
    raise ValueError(f'{where}: unknown {cls.__name__} fields {unknown}; '
                     f'valid fields: {sorted(fields)}')
  hints = typing.get_type_hints(cls)
  kwargs = {k: _from_json(hints[k], v, f'{where}.{k}', fields[k].default)
            for k, v in value.items()}
  try:
    return cls(**kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: invalid {cls.__name__}: {e}') from e


def config_to_json(config: rahf.RAHFConfig) -> dict[str, Any]:
  """The JSON form the training checkpoints store (`checkpoints._to_json`)."""
  return checkpoints._to_json(config)  # pylint: disable=protected-access


def config_from_json(data: Any, where: str = 'model_config'
                     ) -> rahf.RAHFConfig:
  """Rebuilds a `RAHFConfig` from the JSON the checkpoints store.

  The inverse of `checkpoints._to_json` on a `RAHFConfig`: nested configs
  become their dataclasses again, lists become tuples, dtype names become jnp
  dtypes. Missing fields take their defaults.

  Args:
    data: a dict, or a JSON string of one.
    where: names the input in error messages.

  Returns:
    The validated config.

  Raises:
    ValueError: the JSON is malformed, has unknown fields, or describes an
      invalid config (the message names the field).
  """
  if isinstance(data, (str, bytes)):
    try:
      data = json.loads(data)
    except json.JSONDecodeError as e:
      raise ValueError(f'{where}: not valid JSON: {e}') from e
  return _dataclass_from_json(rahf.RAHFConfig, data, where)


# ----------------------------------------------------------------------------
# Training checkpoints.
# ----------------------------------------------------------------------------


def abstract_params(config: rahf.RAHFConfig,
                    sharding: Optional[jax.sharding.Sharding] = None
                    ) -> PyTree:
  """ShapeDtypeStructs of the model's parameters (no memory allocated)."""
  model = model_lib.RAHFModel(config)
  shapes = jax.eval_shape(
      lambda: model_lib.unbox(model.get_initial_variables(
          jax.random.key(0)))['params'])
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      shapes)


def _read_meta(manager: ocp.CheckpointManager, step: int,
               where: str) -> dict[str, Any]:
  meta = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore())).meta
  if not isinstance(meta, dict) or 'model_config' not in meta:
    raise ValueError(f'{where}: the checkpoint meta has no model_config; '
                     'expected a checkpoint written by richhf_jax.train')
  return meta


def load_training_checkpoint(model_dir: str, step: Optional[int] = None,
                             subdir: str = 'checkpoints'
                             ) -> tuple[rahf.RAHFConfig, PyTree,
                                        dict[str, Any], int]:
  """Reads the params of a training checkpoint, without gin.

  Args:
    model_dir: a training run's directory (holding `checkpoints/`).
    step: the step to read; default the latest.
    subdir: 'checkpoints', or 'best' for the run's best checkpoint.

  Returns:
    (config, params, meta, step); params are on the default device.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) under `model_dir`.
    ValueError: the saved model config is missing or invalid, or the saved
      parameters do not match it.
  """
  directory = os.path.abspath(os.path.join(model_dir, subdir))
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f'--checkpoint {model_dir}: no {subdir}/ directory; expected a '
        'training run directory (MODEL_DIR of richhf_jax.train)')
  manager = ocp.CheckpointManager(directory)
  try:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f'no checkpoint under {directory}')
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise FileNotFoundError(
          f'no checkpoint for step {step} under {directory}; available '
          f'steps: {sorted(steps)}')
    where = f'{directory}/{step}'
    meta = _read_meta(manager, step, where)
    config = config_from_json(meta['model_config'],
                              f'{where} meta model_config')
    target = {'params': abstract_params(config)}
    restore_args = jax.tree.map(
        lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), target)
    try:
      state = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(item=target,
                                       restore_args=restore_args,
                                       partial_restore=True))).state
    except (ValueError, KeyError) as e:
      raise ValueError(f'{where}: the saved parameters do not match the '
                       f'saved model config: {e}') from e
  finally:
    manager.close()
  return config, state['params'], meta, int(step)


# ----------------------------------------------------------------------------
# Exports.
# ----------------------------------------------------------------------------


def save_export(out_dir: str, config: rahf.RAHFConfig, params: PyTree,
                vocab_path: str, *, input_length: int, target_length: int,
                step: Optional[int] = None, source: Optional[str] = None,
                overwrite: bool = False) -> str:
  """Writes an export directory (see the module docstring).

  Args:
    out_dir: the directory to create.
    config: the model config.
    params: the (unboxed) parameters.
    vocab_path: SentencePiece model to copy in.
    input_length: prompt token length for inference.
    target_length: decoded token length for inference.
    step: recorded in config.json.
    source: recorded in config.json.
    overwrite: replace an existing `out_dir`.

  Returns:
    The absolute path of the export.

  Raises:
    FileExistsError: `out_dir` exists and is not empty (without overwrite).
    FileNotFoundError: `vocab_path` does not exist.
    ValueError: the vocabulary has more ids than the model's embedding.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
    raise FileExistsError(f'--out {out_dir} exists and is not empty; pass '
                          '--overwrite to replace it')
  if not vocab_path or not os.path.isfile(vocab_path):
    raise FileNotFoundError(
        f'vocabulary {vocab_path!r} not found; pass --vocab with the '
        'SentencePiece model the checkpoint was trained with')
  _check_vocab_size(vocab_path, config)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + '.tmp-',
                         dir=parent)
  try:
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(os.path.join(tmp, PARAMS_DIR), params)
      ckpt.wait_until_finished()
    shutil.copyfile(vocab_path, os.path.join(tmp, VOCAB_FILE))
    side = os.path.splitext(vocab_path)[0] + '.vocab'
    if os.path.isfile(side):
      shutil.copyfile(side, os.path.join(tmp, 'spm.vocab'))
    info = {
        'format': FORMAT, 'version': VERSION,
        'model_config': config_to_json(config),
        'input_length': int(input_length),
        'target_length': int(target_length),
        'vocab': VOCAB_FILE, 'step': step, 'source': source,
    }
    with open(os.path.join(tmp, CONFIG_FILE), 'w') as f:
      json.dump(info, f, indent=1, sort_keys=True)
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def _check_vocab_size(vocab_path: str, config: rahf.RAHFConfig) -> None:
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  size = spm.SentencePieceProcessor(model_file=vocab_path).get_piece_size()
  if size > config.t5.vocab_size:
    raise ValueError(
        f'the vocabulary {vocab_path} has {size} ids but the model\'s '
        f't5.vocab_size is {config.t5.vocab_size}; it is not the vocabulary '
        'this model was trained with')


def read_export_info(export_dir: str) -> ExportInfo:
  """Reads and checks `config.json` of an export.

  Raises:
    FileNotFoundError: the directory is not an export.
    ValueError: config.json is malformed.
  """
  path = os.path.join(export_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{export_dir} has no {CONFIG_FILE}; expected the output of '
        '`python -m richhf_jax.export`')
  try:
    with open(path) as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON: {e}') from e
  found = data.get('format') if isinstance(data, dict) else data
  if found != FORMAT:
    raise ValueError(f'{path}: expected "format": "{FORMAT}", got {found!r}')
  if data.get('version') != VERSION:
    raise ValueError(f'{path}: export version {data.get("version")!r}; this '
                     f'code reads version {VERSION}')
  for key in ('model_config', 'input_length', 'target_length', 'vocab'):
    if key not in data:
      raise ValueError(f'{path}: missing key {key!r}')
  return ExportInfo(
      config=config_from_json(data['model_config'], f'{path} model_config'),
      vocab_path=os.path.join(os.path.abspath(export_dir), data['vocab']),
      input_length=int(data['input_length']),
      target_length=int(data['target_length']),
      step=data.get('step'), source=data.get('source'))


def load_export(export_dir: str,
                sharding: Optional[jax.sharding.Sharding] = None
                ) -> tuple[ExportInfo, PyTree]:
  """Reads an export: (info, params placed on `sharding`).

  Raises:
    FileNotFoundError: not an export directory.
    ValueError: config.json is malformed or the params do not match it.
  """
  info = read_export_info(export_dir)
  target = abstract_params(info.config, sharding)
  path = os.path.join(os.path.abspath(export_dir), PARAMS_DIR)
  try:
    with ocp.StandardCheckpointer() as ckpt:
      params = ckpt.restore(path, target)
  except (ValueError, KeyError) as e:
    raise ValueError(f'{path}: the parameters do not match the model config '
                     f'in {CONFIG_FILE}: {e}') from e
  return info, params


def export(model_dir: str, out_dir: str, *, step: Optional[int] = None,
           vocab_path: Optional[str] = None,
           input_length: Optional[int] = None,
           target_length: Optional[int] = None,
           overwrite: bool = False, subdir: str = 'checkpoints') -> str:
  """Exports a training checkpoint; returns the export path.

  Token lengths and the vocabulary default to those the run trained with
  (the `data` section of the checkpoint meta).
  """
  config, params, meta, step = load_training_checkpoint(model_dir, step,
                                                        subdir)
  data = meta.get('data') or {}
  vocab_path = vocab_path or data.get('vocab_path')
  return save_export(
      out_dir, config, params, vocab_path,
      input_length=input_length or int(data.get('input_length',
                                                DEFAULT_INPUT_LENGTH)),
      target_length=target_length or int(data.get('target_length',
                                                  DEFAULT_TARGET_LENGTH)),
      step=step, source=os.path.abspath(model_dir), overwrite=overwrite)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkpoint', required=True,
                      help='training run directory (holds checkpoints/)')
  parser.add_argument('--out', required=True, help='export directory')
  parser.add_argument('--step', type=int, default=None,
                      help='checkpoint step (default: the latest)')
  parser.add_argument('--vocab', default=None,
                      help='SentencePiece model (default: the one the run '
                      'trained with, from the checkpoint meta)')
  parser.add_argument('--input_length', type=int, default=None)
  parser.add_argument('--target_length', type=int, default=None)
  parser.add_argument('--best', action='store_true',
                      help='export the best checkpoint (MODEL_DIR/best/) '
                      'instead of the latest one')
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args(argv)
  try:
    out = export(args.checkpoint, args.out, step=args.step,
                 vocab_path=args.vocab, input_length=args.input_length,
                 target_length=args.target_length, overwrite=args.overwrite,
                 subdir='best' if args.best else 'checkpoints')
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  info = read_export_info(out)
  print(f'exported step {info.step} of {args.checkpoint} to {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
