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
"""The public PyTorch port's state dict (HF naming) -> the RAHF param tree.

The port (github.com/youweiliang/RichHF, `model.py`; its code and weights
carry a non-commercial licence, so users bring the files themselves) wraps an
HF transformers `ViTModel` (`vit.`), a `T5ForConditionalGeneration` (`t5.`),
a `visual_token_projection` linear layer and the heads
`heatmap_predictor[.<type>]`, `score_predictor[.<type>]`. All name mapping
lives in the `*_table` functions below, one row per parameter:
(our path, HF name, conversion).

Conversions (PyTorch layout -> ours):
  linear      nn.Linear weight [out, in] -> kernel [in, out], reshaped to our
              N-d layouts: ViT q/k/v [width, heads, head_dim], ViT out
              [heads, head_dim, width]; T5 kernels stay flat 2-D (T5X).
  linear2     the same with two input axes (the ViT attention output).
  bias        reshaped (ViT q/k/v biases [heads, head_dim]).
  conv        Conv2d weight OIHW -> HWIO.
  deconv      ConvTranspose2d weight [in, out, kh, kw] -> [kh, kw, in, out]
              (unflipped: `conv_layers.ConvTranspose2D` is PyTorch-exact).
  scale       the port's channel-norm scale [C, 1, 1] -> [C].
  transpose   T5 relative attention bias [buckets, heads] -> [heads, buckets].
  copy        unchanged (layer norms, embeddings).

ViT specifics: HF adds `position_embeddings` [1, 1 + h * w, width] after
prepending the class token; ours adds the grid part before, so row 0 is
folded into `cls` (exact). With `class_token=False` both are dropped.
For HF semantics set `class_token=True`, `gelu_approximate=False` and
`layernorm_epsilon=1e-12` (`hf_vit_config`). The unused `pooler` is dropped.
transformers >= 5 names (`layers.{i}.attention.q_proj`, `mlp.fc1`, ...)
are renamed to the 4.x names the port was released with.

T5 specifics: `shared.weight` is the embedding (`encoder.embed_tokens`,
`decoder.embed_tokens` and, when tied, `lm_head` are aliases and must equal
it); the relative attention bias lives in block 0 of each stack.

Forward pass: the weights alone do not reproduce the port; the model must
also be wired as the port (`rahf.PORT_WIRING`, set by `port_rahf_config`):
the projected class token is fused too, the decoder attends to the text
positions only, and padding is not masked.

Files: `.safetensors` is read by a small reader here (the format is an
8-byte header length, a JSON header and raw little-endian buffers; nothing
is executed). `.pt` / `.pth` / `.bin` need torch and are read with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""

import dataclasses
import json
import logging
import os
import re
import struct
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import ml_dtypes
import numpy as np

from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head as heatmap_head_lib
from richhf_jax.models import rahf
from richhf_jax.models import score_head as score_head_lib
from richhf_jax.models import t5
from richhf_jax.models import vit
from richhf_jax.weights import common

StateDict = dict[str, np.ndarray]
# (our '/'-path, HF name, conversion name).
Row = tuple[str, str, str]

# ---------------------------------------------------------------------------
# Reading files.
# ---------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
    'BF16': ml_dtypes.bfloat16, 'I64': np.int64, 'I32': np.int32,
    'I16': np.int16, 'I8': np.int8, 'U64': np.uint64, 'U32': np.uint32,
    'U16': np.uint16, 'U8': np.uint8, 'BOOL': np.bool_,
}
_MAX_HEADER_BYTES = 100 * 2**20


def read_safetensors(path: str) -> StateDict:
  """Reads every tensor of a `.safetensors` file into numpy.

  Args:
    path: the file.

  Returns:
    {name: array} (memory-mapped file, copied per tensor).

  Raises:
    ValueError: for a malformed file or an unsupported dtype.
  """
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    raw = f.read(8)
    if len(raw) != 8:
      raise ValueError(f'{path!r} is not a safetensors file (too short)')
    (n,) = struct.unpack('<Q', raw)
    if n > min(_MAX_HEADER_BYTES, size - 8):
      raise ValueError(f'{path!r}: safetensors header length {n} is invalid')
    header = json.loads(f.read(n))
  data = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    if info['dtype'] not in _SAFETENSORS_DTYPES:
      raise ValueError(f'{path!r}: tensor {name} has unsupported dtype '
                       f'{info["dtype"]}; supported: '
                       f'{sorted(_SAFETENSORS_DTYPES)}')
    dtype = np.dtype(_SAFETENSORS_DTYPES[info['dtype']]).newbyteorder('<')
    shape = tuple(info['shape'])
    begin, end = info['data_offsets']
    if end - begin != int(np.prod(shape)) * dtype.itemsize or (
        end > data.size):
      raise ValueError(f'{path!r}: tensor {name} has inconsistent offsets '
                       f'{begin}..{end} for shape {shape} {info["dtype"]}')
    out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(
        shape).copy()
  return out


def _read_torch(path: str) -> StateDict:
  """Reads a torch file with `weights_only=True` (no arbitrary pickles)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'reading {path!r} needs torch (only via torch.load(weights_only='
        'True)); install torch or convert the file to .safetensors') from e
  obj = torch.load(path, map_location='cpu', weights_only=True)
  for key in ('state_dict', 'model'):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
  if not isinstance(obj, dict):
    raise ValueError(f'{path!r} does not hold a state dict (got '
                     f'{type(obj).__name__})')
  out = {}
  for name, value in obj.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(f'{path!r}: entry {name!r} is a '
                       f'{type(value).__name__}, expected a tensor')
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    out[name] = value.numpy()
  return out


def read_state_dict(path: str) -> StateDict:
  """Reads a state dict from `.safetensors`, or `.pt`/`.pth`/`.bin` (torch).

  Raises:
    ValueError: for an unknown file extension.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext == '.safetensors':
    return read_safetensors(path)
  if ext in ('.pt', '.pth', '.bin'):
    return _read_torch(path)
  raise ValueError(f'unknown state dict format {path!r}: expected '
                   '.safetensors, .pt, .pth or .bin')


# ---------------------------------------------------------------------------
# Name normalisation.
# ---------------------------------------------------------------------------

# transformers >= 5 ViT names -> the 4.x names (the port's release).
_HF5_VIT_RENAMES = (
    (r'(^|\.)layers\.(\d+)\.attention\.q_proj\.',
     r'\1encoder.layer.\2.attention.attention.query.'),
    (r'(^|\.)layers\.(\d+)\.attention\.k_proj\.',
     r'\1encoder.layer.\2.attention.attention.key.'),
    (r'(^|\.)layers\.(\d+)\.attention\.v_proj\.',
     r'\1encoder.layer.\2.attention.attention.value.'),
    (r'(^|\.)layers\.(\d+)\.attention\.o_proj\.',
     r'\1encoder.layer.\2.attention.output.dense.'),
    (r'(^|\.)layers\.(\d+)\.mlp\.fc1\.',
     r'\1encoder.layer.\2.intermediate.dense.'),
    (r'(^|\.)layers\.(\d+)\.mlp\.fc2\.', r'\1encoder.layer.\2.output.dense.'),
    (r'(^|\.)layers\.(\d+)\.(layernorm_before|layernorm_after)\.',
     r'\1encoder.layer.\2.\3.'),
)


def normalize_names(state_dict: Mapping[str, Any]) -> StateDict:
  """Strips a DataParallel `module.` prefix and renames transformers-5 ViT keys.

  Args:
    state_dict: {name: array}.

  Returns:
    A new dict with canonical (transformers 4.x) names.
  """
  out = {}
  for name, value in state_dict.items():
    if name.startswith('module.'):
      name = name[len('module.'):]
    for pattern, repl in _HF5_VIT_RENAMES:
      name = re.sub(pattern, repl, name)
    out[name] = np.asarray(value)
  return out


# ---------------------------------------------------------------------------
# Conversions. Each maps our expected shape to the HF shape it needs, and
# converts an HF array of that shape.
# ---------------------------------------------------------------------------


def _hf_shape(kind: str, ours: tuple[int, ...]) -> tuple[int, ...]:
  n = int(np.prod(ours))
  if kind == 'copy':
    return ours
  if kind == 'linear':
    return (n // ours[0], ours[0])
  if kind == 'linear2':
    return (ours[-1], n // ours[-1])
  if kind == 'bias':
    return (n,)
  if kind == 'conv':
    return (ours[3], ours[2], ours[0], ours[1])
  if kind == 'deconv':
    return (ours[2], ours[3], ours[0], ours[1])
  if kind == 'scale':
    return (ours[0], 1, 1)
  if kind == 'transpose':
    return (ours[1], ours[0])
  raise ValueError(f'unknown conversion {kind!r}')


_CONVERT: dict[str, Callable[[np.ndarray, tuple[int, ...]], np.ndarray]] = {
    'copy': lambda w, s: w,
    'linear': lambda w, s: w.T.reshape(s),
    'linear2': lambda w, s: w.T.reshape(s),
    'bias': lambda w, s: w.reshape(s),
    'conv': lambda w, s: w.transpose(2, 3, 1, 0),
    'deconv': lambda w, s: w.transpose(2, 3, 0, 1),
    'scale': lambda w, s: w.reshape(s),
    'transpose': lambda w, s: w.T,
}

# ---------------------------------------------------------------------------
# Name tables.
# ---------------------------------------------------------------------------


def vit_table(config: config_lib.ViTConfig) -> list[Row]:
  """Rows for HF `ViTModel` (`cls`, `pos_embedding`: `_vit_embeddings`)."""
  rows = [('embedding/kernel', 'embeddings.patch_embeddings.projection.weight',
           'conv'),
          ('embedding/bias', 'embeddings.patch_embeddings.projection.bias',
           'copy'),
          ('Transformer/encoder_norm/scale', 'layernorm.weight', 'copy'),
          ('Transformer/encoder_norm/bias', 'layernorm.bias', 'copy')]
  for i in range(config.depth):
    ours, hf = f'Transformer/encoderblock_{i}', f'encoder.layer.{i}'
    attn = f'{ours}/MultiHeadDotProductAttention_0'
    for name in ('query', 'key', 'value'):
      rows += [(f'{attn}/{name}/kernel',
                f'{hf}.attention.attention.{name}.weight', 'linear'),
               (f'{attn}/{name}/bias',
                f'{hf}.attention.attention.{name}.bias', 'bias')]
    rows += [
        (f'{attn}/out/kernel', f'{hf}.attention.output.dense.weight',
         'linear2'),
        (f'{attn}/out/bias', f'{hf}.attention.output.dense.bias', 'copy'),
        (f'{ours}/LayerNorm_0/scale', f'{hf}.layernorm_before.weight', 'copy'),
        (f'{ours}/LayerNorm_0/bias', f'{hf}.layernorm_before.bias', 'copy'),
        (f'{ours}/LayerNorm_1/scale', f'{hf}.layernorm_after.weight', 'copy'),
        (f'{ours}/LayerNorm_1/bias', f'{hf}.layernorm_after.bias', 'copy'),
        (f'{ours}/MlpBlock_0/Dense_0/kernel',
         f'{hf}.intermediate.dense.weight', 'linear'),
        (f'{ours}/MlpBlock_0/Dense_0/bias', f'{hf}.intermediate.dense.bias',
         'copy'),
        (f'{ours}/MlpBlock_0/Dense_1/kernel', f'{hf}.output.dense.weight',
         'linear'),
        (f'{ours}/MlpBlock_0/Dense_1/bias', f'{hf}.output.dense.bias',
         'copy'),
    ]
  return rows


def _t5_layer_rows(config: config_lib.T5Config, ours: str, hf: str,
                   decoder: bool) -> list[Row]:
  """One T5 block: attention(s), MLP, their layer norms."""
  rows = []
  attns = [('self_attention' if decoder else 'attention', 'layer.0',
            'SelfAttention')]
  if decoder:
    attns.append(('encoder_decoder_attention', 'layer.1', 'EncDecAttention'))
  norms = (('pre_self_attention_layer_norm', 'pre_cross_attention_layer_norm',
            'pre_mlp_layer_norm') if decoder else
           ('pre_attention_layer_norm', 'pre_mlp_layer_norm'))
  for name, sub, module in attns:
    for ours_p, hf_p in (('query', 'q'), ('key', 'k'), ('value', 'v'),
                         ('out', 'o')):
      rows.append((f'{ours}/{name}/{ours_p}/kernel',
                   f'{hf}.{sub}.{module}.{hf_p}.weight', 'linear'))
  for j, norm in enumerate(norms):
    rows.append((f'{ours}/{norm}/scale', f'{hf}.layer.{j}.layer_norm.weight',
                 'copy'))
  mlp = f'{hf}.layer.{len(norms) - 1}.DenseReluDense'
  acts = config.mlp_activations
  wis = ['wi'] if len(acts) == 1 else [f'wi_{k}' for k in range(len(acts))]
  for wi in wis + ['wo']:
    rows.append((f'{ours}/mlp/{wi}/kernel', f'{mlp}.{wi}.weight', 'linear'))
  return rows


def t5_table(config: config_lib.T5Config) -> list[Row]:
  """Rows for HF `T5ForConditionalGeneration`."""
  rows = [('token_embedder/embedding', 'shared.weight', 'copy')]
  for stack, n in (('encoder', config.num_encoder_layers),
                   ('decoder', config.num_decoder_layers)):
    rows.append((f'{stack}/relpos_bias/rel_embedding',
                 f'{stack}.block.0.layer.0.SelfAttention.'
                 'relative_attention_bias.weight', 'transpose'))
    for i in range(n):
      rows += _t5_layer_rows(config, f'{stack}/layers_{i}',
                             f'{stack}.block.{i}', stack == 'decoder')
    rows.append((f'{stack}/{stack}_norm/scale',
                 f'{stack}.final_layer_norm.weight', 'copy'))
  if not config.logits_via_embedding:
    rows.append(('decoder/logits_dense/kernel', 'lm_head.weight', 'linear'))
  return rows


def _check_port_heatmap(cfg: heatmap_head_lib.HeatmapHeadConfig) -> None:
  want = dict(conv_order='act_norm', upsample_order='norm_act',
              final_order='act', norm_type='channel_rms', residual=True,
              use_bias=True)
  bad = {k: getattr(cfg, k) for k, v in want.items() if getattr(cfg, k) != v}
  if len(cfg.final_channels) != 1:
    bad['final_channels'] = cfg.final_channels
  if cfg.refine_channels:
    bad['refine_channels'] = cfg.refine_channels
  if bad:
    raise ValueError(f'the port\'s heatmap head layout needs {want} and one '
                     f'final conv, no refine convs; the config has {bad}')


def heatmap_table(cfg: heatmap_head_lib.HeatmapHeadConfig, ours: str,
                  hf: str) -> list[Row]:
  """Rows for the port's `HeatmapPredictor` at `hf` (see heatmap_head.py)."""
  _check_port_heatmap(cfg)

  def conv(our_name, hf_name, kind='conv'):
    return [(f'{ours}/{our_name}/kernel', f'{hf}.{hf_name}.weight', kind),
            (f'{ours}/{our_name}/bias', f'{hf}.{hf_name}.bias', 'copy')]

  def norm(our_name, hf_name):
    return [(f'{ours}/{our_name}/scale', f'{hf}.{hf_name}.scale', 'scale')]

  rows = []
  # Sequential(conv, relu, norm) per conv layer.
  for j in range(len(cfg.conv_channels)):
    rows += conv(f'conv_{j}', f'conv_layers.{3 * j}')
    rows += norm(f'norm_{j}', f'conv_layers.{3 * j + 2}')
  for i in range(len(cfg.upsample_channels)):
    up = f'upsample_{i}'
    rows += conv(f'{up}/deconv', f'deconv_layers.{i}.0', 'deconv')
    rows += norm(f'{up}/deconv_norm', f'deconv_layers.{i}.1')
    # Sequential(conv, norm, relu, conv, norm).
    rows += conv(f'{up}/res_conv_0', f'conv_layers2.{i}.0')
    rows += norm(f'{up}/res_norm_0', f'conv_layers2.{i}.1')
    rows += conv(f'{up}/res_conv_1', f'conv_layers2.{i}.3')
    rows += norm(f'{up}/res_norm_1', f'conv_layers2.{i}.4')
  rows += conv('final_conv_0', 'last_conv1')
  rows += conv('out_conv', 'last_conv2')
  return rows


def score_table(cfg: score_head_lib.ScoreHeadConfig, ours: str,
                hf: str) -> list[Row]:
  """Rows for the port's `ScorePredictor` at `hf` (see score_head.py)."""
  want = dict(conv_order='norm_act', norm_type='channel_rms',
              flatten_order='channels_first', use_bias=True)
  bad = {k: getattr(cfg, k) for k, v in want.items() if getattr(cfg, k) != v}
  if bad:
    raise ValueError(f'the port\'s score head layout needs {want}; the config '
                     f'has {bad}')
  rows = []
  # Sequential(conv, norm, relu) per conv layer.
  for i in range(len(cfg.conv_channels)):
    rows += [(f'{ours}/conv_{i}/kernel', f'{hf}.conv_layers.{3 * i}.weight',
              'conv'),
             (f'{ours}/conv_{i}/bias', f'{hf}.conv_layers.{3 * i}.bias',
              'copy'),
             (f'{ours}/norm_{i}/scale', f'{hf}.conv_layers.{3 * i + 1}.scale',
              'scale')]
  # Sequential(linear, relu, ..., linear, sigmoid).
  names = [f'dense_{k}' for k in range(len(cfg.mlp_dims))] + ['out_dense']
  for k, name in enumerate(names):
    rows += [(f'{ours}/{name}/kernel', f'{hf}.linear_layers.{2 * k}.weight',
              'linear'),
             (f'{ours}/{name}/bias', f'{hf}.linear_layers.{2 * k}.bias',
              'copy')]
  return rows


def rahf_table(config: rahf.RAHFConfig) -> list[Row]:
  """Rows for the whole port (ViT embeddings handled separately)."""
  rows = [(f'img/{o}', f'vit.{h}', k) for o, h, k in vit_table(config.vit)]
  rows += [(o, f't5.{h}', k) for o, h, k in t5_table(config.t5)]
  rows += [('img_projection/kernel', 'visual_token_projection.weight',
            'linear'),
           ('img_projection/bias', 'visual_token_projection.bias', 'copy')]
  if config.variant == 'multihead':
    for k in rahf.HEATMAP_TYPES:
      rows += heatmap_table(config.heatmap_head, f'heatmap_{k}',
                            f'heatmap_predictor.{k}')
    for k in rahf.SCORE_TYPES:
      rows += score_table(config.score_head, f'score_{k}',
                          f'score_predictor.{k}')
  else:
    rows += heatmap_table(config.heatmap_head, 'heatmap', 'heatmap_predictor')
    rows += score_table(config.score_head, 'score', 'score_predictor')
  return rows


# ---------------------------------------------------------------------------
# Conversion.
# ---------------------------------------------------------------------------


class _Converter:
  """Applies rows to a state dict, collecting every mismatch."""

  def __init__(self, state_dict: StateDict, expected: Mapping[str, Any]):
    self.sd = state_dict
    self.expected = common.flatten(expected)
    self.out: dict[str, np.ndarray] = {}
    self.used: set[str] = set()
    self.missing: list[str] = []
    self.misshaped: list[str] = []
    self.unexpected: list[str] = []

  def take(self, hf: str) -> np.ndarray | None:
    if hf not in self.sd:
      return None
    self.used.add(hf)
    return np.asarray(self.sd[hf], np.float32)

  def put(self, ours: str, hf: str, value: np.ndarray) -> None:
    want = common.shape_of(self.expected[ours]) if ours in self.expected \
        else None
    if want is not None and value.shape != want:
      self.misshaped.append(f'{hf} -> {ours}: converted {value.shape}, model '
                            f'{want}')
    else:
      self.out[ours] = value

  def apply(self, rows: list[Row]) -> None:
    for ours, hf, kind in rows:
      if ours not in self.expected:
        raise AssertionError(f'name table row {ours} is not a model param')
      want = common.shape_of(self.expected[ours])
      value = self.take(hf)
      if value is None:
        self.missing.append(f'{hf} (for {ours} {want})')
        continue
      need = _hf_shape(kind, want)
      if value.shape != need:
        self.misshaped.append(f'{hf}: file {value.shape}, model needs {need} '
                              f'(for {ours} {want})')
        continue
      self.out[ours] = _CONVERT[kind](value, want)

  def alias(self, hf: str, of: str) -> None:
    """Accepts `hf` if it equals `of` (a tied copy), else reports it."""
    if hf not in self.sd or of not in self.sd:
      return
    self.used.add(hf)
    a, b = self.sd[hf], self.sd[of]
    if a.shape != b.shape or not np.array_equal(a, b):
      self.unexpected.append(f'{hf} (differs from {of}, which it should be '
                             'tied to under this config)')

  def finish(self, prefixes: tuple[str, ...], ignore: tuple[str, ...],
             what: str) -> dict[str, Any]:
    for name in self.sd:
      if (name.startswith(prefixes) and name not in self.used
          and not name.startswith(ignore)):
        self.unexpected.append(f'{name} {tuple(self.sd[name].shape)}')
    if self.missing or self.misshaped or self.unexpected:
      raise common.WeightsMismatchError(what, self.missing, self.unexpected,
                                        self.misshaped)
    tree = common.unflatten(self.out)
    common.check_tree(tree, common.unflatten(self.expected), what)
    return tree


def _vit_embeddings(conv: _Converter, config: config_lib.ViTConfig,
                    hf: str, ours: str) -> None:
  """HF class token + position embeddings -> our `cls` / `pos_embedding`."""
  pos = conv.take(f'{hf}embeddings.position_embeddings')
  cls = conv.take(f'{hf}embeddings.cls_token')
  for name, value in (('position_embeddings', pos), ('cls_token', cls)):
    if value is None:
      conv.missing.append(f'{hf}embeddings.{name}')
  if pos is None or cls is None:
    return
  if pos.ndim != 3 or pos.shape[0] != 1 or cls.shape != (1, 1, pos.shape[2]):
    conv.misshaped.append(f'{hf}embeddings.position_embeddings {pos.shape} / '
                          f'cls_token {cls.shape}: expected [1, 1 + h*w, D] '
                          'and [1, 1, D]')
    return
  grid = pos[:, 1:]
  if grid.shape[1] != config.num_patches:
    logging.info('resampling the HF ViT position embedding from %d to %s '
                 'positions', grid.shape[1], config.grid)
    grid = vit.resample_posemb(grid, config.grid)
  if config.posemb == 'learn':
    conv.put(f'{ours}pos_embedding', f'{hf}embeddings.position_embeddings',
             grid)
  if config.class_token:
    # HF adds position row 0 to the class token; we add none to it.
    conv.put(f'{ours}cls', f'{hf}embeddings.cls_token', cls + pos[:, :1])


def _abstract_vit(config: config_lib.ViTConfig) -> Any:
  s = config.image_size
  return common.abstract_module_params(
      vit.ViT(dataclasses.replace(config, scan=False)),
      jnp.zeros((1, s, s, 3), jnp.float32))


def _abstract_t5(config: config_lib.T5Config) -> Any:
  tokens = jnp.ones((1, 4), jnp.int32)
  return common.abstract_module_params(
      t5.T5Transformer(dataclasses.replace(config, scan=False)), tokens,
      tokens)


def _t5_aliases(conv: _Converter, config: config_lib.T5Config,
                hf: str) -> None:
  shared = f'{hf}shared.weight'
  if shared not in conv.sd:
    # safetensors files keep one name per tied tensor; accept either alias.
    for alias in (f'{hf}encoder.embed_tokens.weight',
                  f'{hf}decoder.embed_tokens.weight'):
      if alias in conv.sd:
        conv.sd = {**conv.sd, shared: conv.sd[alias]}
        break
  conv.alias(f'{hf}encoder.embed_tokens.weight', shared)
  conv.alias(f'{hf}decoder.embed_tokens.weight', shared)
  if config.logits_via_embedding:
    conv.alias(f'{hf}lm_head.weight', shared)


def vit_params(state_dict: Mapping[str, Any], config: config_lib.ViTConfig,
               prefix: str = '') -> dict[str, Any]:
  """HF `ViTModel` weights (names after `prefix`) -> our ViT tree.

  Args:
    state_dict: {name: array}; other prefixes are ignored.
    config: our ViT config (see `hf_vit_config` for HF semantics).
    prefix: e.g. 'vit.' inside the port's state dict.

  Returns:
    Nested dict of float32 arrays (unscanned layout).

  Raises:
    WeightsMismatchError: listing missing / unexpected / mis-shaped names.
  """
  conv = _Converter(normalize_names(state_dict), _abstract_vit(config))
  _vit_embeddings(conv, config, prefix, '')
  conv.apply([(o, prefix + h, k) for o, h, k in vit_table(config)])
  return conv.finish((prefix,), (f'{prefix}pooler.',),
                     'HF ViT state dict')


def t5_params(state_dict: Mapping[str, Any], config: config_lib.T5Config,
              prefix: str = '') -> dict[str, Any]:
  """HF `T5ForConditionalGeneration` weights -> token_embedder/encoder/decoder.

  Args:
    state_dict: {name: array}; other prefixes are ignored.
    config: our T5 config; v1.0 (`t5-base`) is `mlp_activations=('relu',)`,
      `logits_via_embedding=True`; v1.1 is gated GELU, untied.
    prefix: e.g. 't5.' inside the port's state dict.

  Returns:
    Nested dict of float32 arrays (unscanned layout).

  Raises:
    WeightsMismatchError: listing missing / unexpected / mis-shaped names.
  """
  conv = _Converter(normalize_names(state_dict), _abstract_t5(config))
  _t5_aliases(conv, config, prefix)
  conv.apply([(o, prefix + h, k) for o, h, k in t5_table(config)])
  return conv.finish((prefix,), (), 'HF T5 state dict')


def load(path_or_state_dict: str | Mapping[str, Any],
         config: rahf.RAHFConfig) -> dict[str, Any]:
  """Loads the port's whole state dict as a RAHF parameter tree.

  Args:
    path_or_state_dict: a `.safetensors` / `.pt` file or {name: array}.
    config: the RAHF config; its variant decides the head names
      (`heatmap_predictor.<type>` for multi-head, `heatmap_predictor` for
      one shared head). `port_rahf_config` gives the port's architecture.

  Returns:
    The full parameter tree (float32 numpy, unscanned layout), already
    checked against the model; `common.merge_into(params, tree)` casts it
    into (possibly scanned or boxed) initialised params.

  Raises:
    WeightsMismatchError: listing missing / unexpected / mis-shaped names
      (in HF naming).
  """
  sd = (read_state_dict(path_or_state_dict)
        if isinstance(path_or_state_dict, str) else path_or_state_dict)
  flat_cfg = dataclasses.replace(
      config, vit=dataclasses.replace(config.vit, scan=False),
      t5=dataclasses.replace(config.t5, scan=False))
  conv = _Converter(normalize_names(sd), common.abstract_params(flat_cfg))
  _vit_embeddings(conv, config.vit, 'vit.', 'img/')
  _t5_aliases(conv, config.t5, 't5.')
  conv.apply(rahf_table(config))
  return conv.finish(('',), ('vit.pooler.',), 'RichHF port state dict')


# `ViTConfig` fields that give a preset HF `ViTModel` semantics.
HF_VIT_SEMANTICS = {'class_token': True, 'gelu_approximate': False,
                    'layernorm_epsilon': 1e-12}


def hf_vit_config(name: str = 'L/16', **overrides: Any
                  ) -> config_lib.ViTConfig:
  """A ViT preset with HF `ViTModel` semantics (class token, exact GELU)."""
  return config_lib.vit_config(name, **{**HF_VIT_SEMANTICS, **overrides})


def port_rahf_config(variant: str = 'multihead') -> rahf.RAHFConfig:
  """The port's model: ViT-L/16 at 384 px (HF semantics) + t5-base.

  Wired as the port (`rahf.PORT_WIRING`: the class token is fused too, the
  decoder attends to the text positions, no padding mask). The augmented
  variant's prompts are `rahf.PORT_AUGMENTED_TASKS` (the data pipeline
  builds them).

  Args:
    variant: 'multihead' (the released checkpoint) or 'augmented'.

  Returns:
    The config.
  """
  return rahf.RAHFConfig(
      vit=hf_vit_config('L/16', image_size=384),
      t5=config_lib.t5_config('t5_1_0_base'),
      heatmap_head=heatmap_head_lib.get_heatmap_head_config('port'),
      score_head=score_head_lib.port_score_head_config(768),
      variant=variant, **rahf.PORT_WIRING)
