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
"""Regenerates the HF-transformers parity fixtures in tests/testdata/.

Needs torch, transformers, safetensors and numpy, which richhf_jax and its
tests do not; run it in a separate environment:

  python3 -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.13.0 transformers==5.24.0 \
      safetensors==0.8.0 numpy
  /tmp/torchenv/bin/python tests/testdata/make_parity_fixtures.py

(The checked-in fixtures were made with torch 2.13.0+cpu, transformers
5.24.0, safetensors 0.8.0, numpy 2.4.6.)

Writes, for tiny configs with random weights (every norm scale and bias
perturbed so that each parameter matters):

  hf_t5_v1_0.npz  T5ForConditionalGeneration, ReLU MLP, tied embeddings.
  hf_t5_v1_1.npz  gated-GELU MLP, untied `lm_head` (transformers 5 always
                  ties it at construction, so it is replaced after).
  hf_vit.npz      ViTModel (class token, exact GELU, eps 1e-12).
  port_tiny.safetensors  a tiny model with the PyTorch port's state-dict
                  names (`vit.`, `t5.`, `visual_token_projection.`, the
                  multi-head `heatmap_predictor.<type>.` and
                  `score_predictor.<type>.` heads), written by the
                  safetensors package.
  port_tiny_heads.npz  a feature map and the port-style heads' outputs on it.
  port_tiny_forward.npz  the port's whole forward pass (`PortRAHF`, the
                  wiring of the port's `model.py` around the modules of
                  port_tiny.safetensors) on an image and token ids, for
                  both variants: heatmaps, scores and teacher-forced
                  decoder logits (the augmented variant's single heads are
                  the `implausibility` / `plausibility` ones).

Each .npz holds `config` (a JSON string), `weights/<HF name>`,
`inputs/<name>` and `outputs/<name>`; floats are float32, token ids int32.
"""

import json
import os

import numpy as np
from safetensors.numpy import save_file
import torch
from torch import nn
import transformers
from transformers import modeling_outputs

OUT = os.path.dirname(os.path.abspath(__file__))

T5_COMMON = dict(vocab_size=64, d_model=16, d_kv=4, num_heads=3, d_ff=32,
                 num_layers=2, num_decoder_layers=2,
                 relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, dropout_rate=0.0,
                 layer_norm_epsilon=1e-6)
VIT = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
           intermediate_size=48, image_size=16, patch_size=4,
           num_channels=3, hidden_act='gelu', layer_norm_eps=1e-12,
           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
           # Large enough weights for O(1) activations, where the exact and
           # tanh GELU differ visibly.
           initializer_range=0.25)
HEATMAP = dict(conv_channels=[8, 8], upsample_channels=[8, 4],
               final_channels=4)
SCORE = dict(conv_channels=[8, 4], mlp_dims=[8])
HEATMAP_TYPES = ('implausibility', 'misalignment')
SCORE_TYPES = ('plausibility', 'alignment', 'aesthetics', 'overall')
# Task slots of the augmented variant's [B, K, L] token ids (the order of
# richhf_jax.models.rahf.AUGMENTED_TASKS; the keyword slot is last).
AUGMENTED_SLOTS = HEATMAP_TYPES + SCORE_TYPES + ('keywords',)


def _perturb(model: nn.Module, gen: torch.Generator) -> None:
  """Norm weights -> 1 + noise, biases -> noise, so every param matters."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen) * 0.1
      if 'norm' in name and name.endswith(('weight', 'scale')):
        p.copy_(1.0 + noise)
      elif name.endswith('bias') and 'relative_attention_bias' not in name:
        p.copy_(noise)
      elif 'relative_attention_bias' in name:
        p.copy_(torch.randn(p.shape, generator=gen))


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
  return {f'weights/{k}': v.detach().numpy().astype(np.float32)
          for k, v in model.state_dict().items()}


def _save(name: str, config: dict, arrays: dict[str, np.ndarray]) -> None:
  path = os.path.join(OUT, name)
  np.savez_compressed(path, config=np.array(json.dumps(config)), **arrays)
  print(f'wrote {path} ({os.path.getsize(path)} bytes)')


def t5_model(version: str,
             seed: int) -> transformers.T5ForConditionalGeneration:
  """A random tiny T5 (v1.0: relu, tied; v1.1: gated-gelu, untied)."""
  gen = torch.Generator().manual_seed(seed)
  torch.manual_seed(seed)
  if version == 'v1_0':
    cfg = transformers.T5Config(feed_forward_proj='relu', **T5_COMMON)
  else:
    cfg = transformers.T5Config(feed_forward_proj='gated-gelu',
                                tie_word_embeddings=False, **T5_COMMON)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  _perturb(model, gen)
  if version == 'v1_1':
    # Untie the output layer: its own random weight, no 1/sqrt(d) scaling.
    model.lm_head.weight = nn.Parameter(
        torch.randn(model.lm_head.weight.shape, generator=gen) * 0.25)
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
    assert not model.config.scale_decoder_outputs
  else:
    assert model.config.scale_decoder_outputs
  return model


def make_t5(version: str, seed: int) -> None:
  model = t5_model(version, seed)
  rng = np.random.default_rng(seed)
  # Length 20 reaches the logarithmic relative-position buckets (>= 8).
  ids = rng.integers(2, T5_COMMON['vocab_size'], size=(2, 20))
  ids[1, 15:] = 0  # padding in the second row
  dec = rng.integers(2, T5_COMMON['vocab_size'], size=(2, 7))
  dec[:, 0] = 0  # decoder start token
  ids_t, dec_t = torch.tensor(ids), torch.tensor(dec)
  with torch.no_grad():
    out = model(input_ids=ids_t, attention_mask=(ids_t > 0).long(),
                decoder_input_ids=dec_t, use_cache=False)
  _save(f'hf_t5_{version}.npz',
        {'version': version, **T5_COMMON,
         'feed_forward_proj': model.config.feed_forward_proj},
        {**_weights(model),
         'inputs/input_ids': ids.astype(np.int32),
         'inputs/decoder_input_ids': dec.astype(np.int32),
         'outputs/encoder_output':
             out.encoder_last_hidden_state.numpy().astype(np.float32),
         'outputs/logits': out.logits.numpy().astype(np.float32)})


def vit_model(seed: int) -> transformers.ViTModel:
  gen = torch.Generator().manual_seed(seed)
  torch.manual_seed(seed)
  model = transformers.ViTModel(transformers.ViTConfig(**VIT)).eval()
  _perturb(model, gen)
  with torch.no_grad():
    model.embeddings.cls_token.copy_(
        torch.randn(model.embeddings.cls_token.shape, generator=gen))
  return model


def make_vit(seed: int) -> None:
  model = vit_model(seed)
  rng = np.random.default_rng(seed)
  s = VIT['image_size']
  pixels = rng.uniform(-1, 1, size=(2, 3, s, s)).astype(np.float32)
  with torch.no_grad():
    out = model(pixel_values=torch.tensor(pixels))
  _save('hf_vit.npz', VIT,
        {**_weights(model),
         'inputs/pixel_values_nchw': pixels,
         'outputs/last_hidden_state':
             out.last_hidden_state.numpy().astype(np.float32)})


class ChannelNorm(nn.Module):
  """Scale-only RMS norm over channels of NCHW maps, epsilon 1e-8."""

  def __init__(self, channels: int):
    super().__init__()
    self.scale = nn.Parameter(torch.ones(channels, 1, 1))

  def forward(self, x):
    ms = x.square().mean(dim=1, keepdim=True)
    return x * torch.rsqrt(ms + 1e-8) * self.scale


def _conv(cin: int, cout: int) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


class HeatmapHead(nn.Module):
  """The port's heatmap head layout (issue 3), with configurable widths."""

  def __init__(self, cin, conv_channels, upsample_channels, final_channels):
    super().__init__()
    layers = []
    for c in conv_channels:
      layers += [_conv(cin, c), nn.ReLU(), ChannelNorm(c)]
      cin = c
    self.conv_layers = nn.Sequential(*layers)
    self.deconv_layers = nn.ModuleList()
    self.conv_layers2 = nn.ModuleList()
    for c in upsample_channels:
      self.deconv_layers.append(nn.Sequential(
          nn.ConvTranspose2d(cin, c, kernel_size=3, stride=2, padding=1,
                             output_padding=1),
          ChannelNorm(c), nn.ReLU()))
      self.conv_layers2.append(nn.Sequential(
          _conv(c, c), ChannelNorm(c), nn.ReLU(), _conv(c, c),
          ChannelNorm(c)))
      cin = c
    self.last_conv1 = _conv(cin, final_channels)
    self.last_conv2 = _conv(final_channels, 1)

  def forward(self, x):
    x = self.conv_layers(x)
    for deconv, convs in zip(self.deconv_layers, self.conv_layers2):
      x = deconv(x)
      x = torch.relu(convs(x) + x)
    x = torch.relu(self.last_conv1(x))
    return torch.sigmoid(self.last_conv2(x)).squeeze(1)


class ScoreHead(nn.Module):
  """The port's score head layout (issue 3), with configurable widths."""

  def __init__(self, cin, conv_channels, mlp_dims, num_patches):
    super().__init__()
    layers = []
    for c in conv_channels:
      layers += [_conv(cin, c), ChannelNorm(c), nn.ReLU()]
      cin = c
    self.conv_layers = nn.Sequential(*layers)
    dims = [cin * num_patches] + list(mlp_dims)
    linear = []
    for a, b in zip(dims[:-1], dims[1:]):
      linear += [nn.Linear(a, b), nn.ReLU()]
    linear += [nn.Linear(dims[-1], 1), nn.Sigmoid()]
    self.linear_layers = nn.Sequential(*linear)

  def forward(self, x):
    return self.linear_layers(self.conv_layers(x).flatten(1)).flatten()


class PortRAHF(nn.Module):
  """The forward pass of the port's `RAHF` (its model.py), tiny modules.

  The ViT's whole last hidden state (class token first) is projected and
  put in front of the embedded caption; the T5 encoder runs over both with
  no attention mask; the heads read the grid positions after the class
  token; the decoder gets only the text positions, again unmasked, and
  `labels` (shifted right by HF into the decoder inputs). The augmented
  variant runs the encoder once per task on that task's prompt ids; its
  decoder reads the bare caption's encoding.
  """

  def __init__(self, vit, t5, proj, heatmaps, scores, grid):
    super().__init__()
    self.vit, self.t5, self.proj = vit, t5, proj
    self.heatmaps, self.scores, self.grid = heatmaps, scores, grid

  def _fuse(self, visual, ids):
    text = self.t5.encoder.embed_tokens(ids)
    joint = torch.cat([visual, text], dim=1)
    return self.t5.encoder(inputs_embeds=joint).last_hidden_state

  def _feature_map(self, encoded, num_visual):
    grid_tokens = encoded[:, 1:num_visual]  # skip the class token
    return grid_tokens.transpose(1, 2).reshape(
        encoded.shape[0], -1, self.grid, self.grid)

  def forward(self, pixels, ids, labels, task_ids=None):
    visual = self.proj(self.vit(pixel_values=pixels).last_hidden_state)
    n = visual.shape[1]
    encoded = self._fuse(visual, ids)
    text_only = modeling_outputs.BaseModelOutput(
        last_hidden_state=encoded[:, n:])
    out = {'logits': self.t5(encoder_outputs=text_only,
                             labels=labels).logits}
    if task_ids is None:
      fmap = self._feature_map(encoded, n)
      for k in HEATMAP_TYPES:
        out[f'heatmap_{k}'] = self.heatmaps[k](fmap)
      for k in SCORE_TYPES:
        out[f'score_{k}'] = self.scores[k](fmap)
      return out
    # Augmented: one shared head per kind, the task named in the prompt.
    for k, task_ids_k in zip(HEATMAP_TYPES + SCORE_TYPES, task_ids):
      fmap = self._feature_map(self._fuse(visual, task_ids_k), n)
      if k in HEATMAP_TYPES:
        out[f'heatmap_{k}'] = self.heatmaps['implausibility'](fmap)
      else:
        out[f'score_{k}'] = self.scores['plausibility'](fmap)
    return out


def _token_ids(rng: np.random.Generator, shape: tuple[int, ...],
               lengths: np.ndarray) -> np.ndarray:
  """Random ids >= 2, EOS (1) at length - 1, padding (0) after it."""
  ids = rng.integers(2, T5_COMMON['vocab_size'], size=shape)
  pos = np.arange(shape[-1])
  ids = np.where(pos == lengths[..., None] - 1, 1, ids)
  return np.where(pos >= lengths[..., None], 0, ids).astype(np.int64)


def make_port_forward(modules: tuple[nn.Module, ...], seed: int) -> None:
  """The port's forward pass on port_tiny.safetensors' modules (.npz)."""
  rng = np.random.default_rng(seed)
  s = VIT['image_size']
  model = PortRAHF(*modules, grid=s // VIT['patch_size']).eval()
  # `t5-base`'s config.json sets it; transformers 5's T5Config has no
  # default, and `labels` are shifted right with it.
  model.t5.config.decoder_start_token_id = 0
  batch, length, target_length = 2, 12, 7
  pixels = rng.uniform(-1, 1, size=(batch, 3, s, s)).astype(np.float32)
  # Row 1 is padded: unmasked padding changes the port's outputs.
  ids = _token_ids(rng, (batch, length), np.array([length, 8]))
  labels = _token_ids(rng, (batch, target_length),
                      np.array([target_length, 5]))
  # Augmented: per task, the rows as the port's tokenizer pads one call.
  slots = len(AUGMENTED_SLOTS)
  aug_lengths = np.stack([np.full(slots, length),
                          rng.integers(4, length, size=slots)], axis=0)
  aug_ids = _token_ids(rng, (batch, slots, length), aug_lengths)
  t = {k: torch.tensor(v) for k, v in
       (('pixels', pixels), ('ids', ids), ('labels', labels),
        ('aug_ids', aug_ids))}
  arrays = {
      'inputs/pixel_values_nchw': pixels,
      'inputs/input_ids': ids.astype(np.int32),
      'inputs/labels': labels.astype(np.int32),
      # What HF feeds the decoder for `labels` (start token 0, shifted).
      'inputs/decoder_input_ids':
          model.t5.prepare_decoder_input_ids_from_labels(
              t['labels']).numpy().astype(np.int32),
      'inputs/augmented_input_ids': aug_ids.astype(np.int32),
  }
  with torch.no_grad():
    outputs = {'multihead': model(t['pixels'], t['ids'], t['labels']),
               'augmented': model(t['pixels'], t['aug_ids'][:, -1],
                                  t['labels'],
                                  task_ids=t['aug_ids'][:, :-1].unbind(1))}
  for variant, out in outputs.items():
    for name, value in out.items():
      arrays[f'outputs/{variant}/{name}'] = value.numpy().astype(np.float32)
  _save('port_tiny_forward.npz',
        {'vit': VIT, 't5': T5_COMMON, 'heatmap': HEATMAP, 'score': SCORE,
         'augmented_slots': AUGMENTED_SLOTS}, arrays)


def make_port(seed: int) -> tuple[nn.Module, ...]:
  """Tiny port-named state dict (.safetensors) + head outputs (.npz).

  Returns:
    The modules (vit, t5, projection, heatmap heads, score heads).
  """
  gen = torch.Generator().manual_seed(seed)
  torch.manual_seed(seed)
  vit = vit_model(seed + 1)
  t5 = t5_model('v1_0', seed + 2)
  d = T5_COMMON['d_model']
  grid = VIT['image_size'] // VIT['patch_size']
  proj = nn.Linear(VIT['hidden_size'], d)
  heatmaps = nn.ModuleDict({k: HeatmapHead(d, **HEATMAP)
                            for k in HEATMAP_TYPES})
  scores = nn.ModuleDict({k: ScoreHead(d, **SCORE, num_patches=grid * grid)
                          for k in SCORE_TYPES})
  for module in (proj, heatmaps, scores):
    _perturb(module, gen)
  state = {}
  for prefix, module in (('vit.', vit), ('t5.', t5),
                         ('visual_token_projection.', proj),
                         ('heatmap_predictor.', heatmaps),
                         ('score_predictor.', scores)):
    for k, v in module.state_dict().items():
      state[prefix + k] = v.detach().numpy().astype(np.float32).copy()
  path = os.path.join(OUT, 'port_tiny.safetensors')
  save_file(state, path)
  os.chmod(path, 0o644)
  print(f'wrote {path} ({os.path.getsize(path)} bytes)')

  fmap = torch.randn((2, d, grid, grid), generator=gen)
  outputs = {}
  with torch.no_grad():
    for k in HEATMAP_TYPES:
      outputs[f'outputs/heatmap_{k}'] = heatmaps[k](fmap).numpy()
    for k in SCORE_TYPES:
      outputs[f'outputs/score_{k}'] = scores[k](fmap).numpy()
  _save('port_tiny_heads.npz',
        {'vit': VIT, 't5': T5_COMMON, 'heatmap': HEATMAP, 'score': SCORE},
        {'inputs/feature_map_nchw': fmap.numpy(), **outputs})
  return vit, t5, proj, heatmaps, scores


def main() -> None:
  print(f'torch {torch.__version__}, transformers {transformers.__version__}')
  torch.set_default_dtype(torch.float32)
  make_t5('v1_0', seed=0)
  make_t5('v1_1', seed=1)
  make_vit(seed=2)
  make_port_forward(make_port(seed=3), seed=4)


if __name__ == '__main__':
  main()
