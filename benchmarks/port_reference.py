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
"""The public PyTorch port's model, timed on this machine (reference only).

Issue 7's CPU targets compare this project with the PyTorch port
(github.com/youweiliang/RichHF) on the same machine. This script builds a
model of the port's shape and cost in PyTorch, with random weights: a
`transformers` ViT and T5 built from their configs (nothing is downloaded),
the visual-token projection, and heatmap and score heads with the port's
layers (`richhf_jax.models.heatmap_head` and `score_head` document them op by
op; the `port` presets are the same networks in JAX). Like the port, the
decoder cross-attends to the prompt part of the fusion encoder's output, and
the heads read the image part without the ViT's class token.

Modes, per configuration and batch size:
  train      forward (heads, scores, teacher-forced decoder loss), backward
             and an AdamW update, as `benchmarks/train_step.py` times ours;
  inference  forward of the heads and scores under `torch.no_grad`, as
             `benchmarks/inference.py` times ours;
  decode     greedy keyword decoding of the target length (64 tokens at
             both configurations; EOS suppressed so every call decodes
             them all) with transformers' `generate` over the prompt part
             of the encoder output, which is computed once beforehand, as
             `benchmarks/decoding.py --wiring port` times ours
             (`ms_per_token`).

It prints a table and one JSON line per case with seconds per call, the peak
RSS, and the float32 matrix-multiply rate of torch measured in the same run.
PyTorch and transformers are not dependencies of richhf_jax: install them in
a separate environment,

  python -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.13.0 transformers
  /tmp/torchenv/bin/python benchmarks/port_reference.py --config small \
      --batch 1 --mode train,inference
"""

import argparse
import json
import os
import platform
import resource
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F
import transformers

# name -> (ViT config, T5 config, prompt tokens, keyword tokens); the same
# shapes as `benchmarks.common.model_config` and its SEQUENCE_LENGTHS.
CONFIGS = {
    'small': (dict(hidden_size=768, num_hidden_layers=12,
                   num_attention_heads=12, intermediate_size=3072,
                   image_size=224, patch_size=16),
              dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                   num_decoder_layers=6, num_heads=8), 64, 64),
    'paper': (dict(hidden_size=1024, num_hidden_layers=24,
                   num_attention_heads=16, intermediate_size=4096,
                   image_size=384, patch_size=16),
              dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12,
                   num_decoder_layers=12, num_heads=12), 64, 64),
}
HEATMAPS = ('implausibility', 'misalignment')
SCORES = ('plausibility', 'alignment', 'aesthetics', 'overall')
MODES = ('train', 'inference', 'decode')


class ChannelRMSNorm(nn.Module):
  """x * rsqrt(mean over channels of x^2 + 1e-8) * scale, NCHW."""

  def __init__(self, channels):
    super().__init__()
    self.scale = nn.Parameter(torch.ones(channels, 1, 1))

  def forward(self, x):
    return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8) * self.scale


def conv3x3(c_in, c_out):
  return nn.Conv2d(c_in, c_out, 3, padding=1)


class Block(nn.Module):
  """2x transposed conv, norm, ReLU, then a normed residual conv pair."""

  def __init__(self, c_in, c_out):
    super().__init__()
    self.up = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1,
                                 output_padding=1)
    self.up_norm = ChannelRMSNorm(c_out)
    self.conv_a, self.norm_a = conv3x3(c_out, c_out), ChannelRMSNorm(c_out)
    self.conv_b, self.norm_b = conv3x3(c_out, c_out), ChannelRMSNorm(c_out)

  def forward(self, x):
    x = F.relu(self.up_norm(self.up(x)))
    y = self.norm_b(self.conv_b(F.relu(self.norm_a(self.conv_a(x)))))
    return F.relu(x + y)


class PortHeatmapHead(nn.Module):
  """The `port` heatmap head: [B, D, g, g] -> [B, 16g, 16g] in (0, 1)."""

  def __init__(self, d):
    super().__init__()
    self.conv0, self.norm0 = conv3x3(d, 768), ChannelRMSNorm(768)
    self.conv1, self.norm1 = conv3x3(768, 384), ChannelRMSNorm(384)
    widths = (384, 768, 384, 384, 192)
    self.blocks = nn.ModuleList(
        Block(a, b) for a, b in zip(widths[:-1], widths[1:]))
    self.final = conv3x3(192, 192)
    self.out = conv3x3(192, 1)

  def forward(self, x):
    x = self.norm0(F.relu(self.conv0(x)))
    x = self.norm1(F.relu(self.conv1(x)))
    for block in self.blocks:
      x = block(x)
    return torch.sigmoid(self.out(F.relu(self.final(x)))).squeeze(1)


class PortScoreHead(nn.Module):
  """The `port` score head: six normed convs (D -> D/64), then an MLP."""

  def __init__(self, d, grid):
    super().__init__()
    widths = (d, d, d // 2, d // 4, d // 8, d // 16, d // 64)
    self.convs = nn.ModuleList(
        conv3x3(a, b) for a, b in zip(widths[:-1], widths[1:]))
    self.norms = nn.ModuleList(ChannelRMSNorm(b) for b in widths[1:])
    self.mlp = nn.Sequential(
        nn.Linear(widths[-1] * grid * grid, 512), nn.ReLU(),
        nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 1), nn.Sigmoid())

  def forward(self, x):
    for conv, norm in zip(self.convs, self.norms):
      x = F.relu(norm(conv(x)))
    return self.mlp(x.flatten(1)).squeeze(1)


class PortRAHF(nn.Module):
  """ViT -> projection -> T5 encoder over [image; prompt] -> heads."""

  def __init__(self, vit_kw, t5_kw):
    super().__init__()
    self.vit = transformers.ViTModel(transformers.ViTConfig(**vit_kw))
    self.t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=32128, feed_forward_proj='relu', decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1, **t5_kw))
    d = self.t5.config.d_model
    self.proj = nn.Linear(vit_kw['hidden_size'], d)
    self.grid = vit_kw['image_size'] // vit_kw['patch_size']
    self.heatmaps = nn.ModuleDict({k: PortHeatmapHead(d) for k in HEATMAPS})
    self.scores = nn.ModuleDict(
        {k: PortScoreHead(d, self.grid) for k in SCORES})

  def forward(self, image, prompt_ids, labels=None):
    visual = self.proj(self.vit(pixel_values=image).last_hidden_state)
    text = self.t5.encoder.embed_tokens(prompt_ids)
    fused = self.t5.encoder(
        inputs_embeds=torch.cat([visual, text], 1)).last_hidden_state
    n = visual.shape[1]
    fmap = fused[:, 1:n].transpose(1, 2).reshape(
        image.shape[0], -1, self.grid, self.grid)
    out = {k: head(fmap) for k, head in self.heatmaps.items()}
    out.update({k: head(fmap) for k, head in self.scores.items()})
    if labels is not None:
      enc = transformers.modeling_outputs.BaseModelOutput(
          last_hidden_state=fused[:, n:])
      out['text_loss'] = self.t5(encoder_outputs=enc, labels=labels).loss
    return out


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
  a = torch.randn(size, size)
  torch.mm(a, a)
  best = min(_timed(lambda: torch.mm(a, a)) for _ in range(repeats))
  return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def run_case(name: str, batch: int, mode: str, args) -> dict:
  vit_kw, t5_kw, prompt_len, target_len = CONFIGS[name]
  torch.manual_seed(0)
  model = PortRAHF(vit_kw, t5_kw)
  size = vit_kw['image_size']
  image = torch.randn(batch, 3, size, size)
  prompt = torch.randint(2, 32128, (batch, prompt_len))
  labels = torch.randint(2, 32128, (batch, target_len))
  grid = model.grid
  maps = {k: torch.rand(batch, 16 * grid, 16 * grid) for k in HEATMAPS}
  scores = {k: torch.rand(batch) for k in SCORES}
  if mode == 'train':
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def call():
      out = model(image, prompt, labels)
      loss = out['text_loss']
      for k in HEATMAPS:
        loss = loss + F.mse_loss(out[k], maps[k])
      for k in SCORES:
        loss = loss + F.mse_loss(out[k], scores[k])
      loss.backward()
      opt.step()
      opt.zero_grad(set_to_none=True)
  elif mode == 'decode':
    model.eval()
    with torch.no_grad():
      visual = model.proj(model.vit(pixel_values=image).last_hidden_state)
      text = model.t5.encoder.embed_tokens(prompt)
      fused = model.t5.encoder(
          inputs_embeds=torch.cat([visual, text], 1)).last_hidden_state
    enc = transformers.modeling_outputs.BaseModelOutput(
        last_hidden_state=fused[:, visual.shape[1]:])

    def call():
      with torch.no_grad():
        out = model.t5.generate(encoder_outputs=enc, do_sample=False,
                                num_beams=1, max_new_tokens=target_len,
                                min_new_tokens=target_len)
      if out.shape[1] - 1 != target_len:  # The start token comes first.
        raise RuntimeError(f'generate returned {out.shape[1] - 1} tokens; '
                           f'expected {target_len}')
  else:
    model.eval()

    def call():
      with torch.no_grad():
        model(image, prompt)
  for _ in range(args.warmup):
    call()
  times = [_timed(call) for _ in range(args.steps)]
  sec = sum(times) / len(times)
  extra = {}
  if mode == 'decode':
    extra = dict(decoded_tokens=target_len,
                 ms_per_token=round(1e3 * sec / target_len, 3))
  return dict(benchmark='port_reference', config=name, batch=batch, **extra,
              mode=mode, sec_per_call=round(sec, 4),
              best_sec=round(min(times), 4),
              examples_per_sec=round(batch / sec, 4),
              params_m=round(sum(p.numel() for p in model.parameters())
                             / 1e6, 1),
              peak_rss_gib=round(peak_rss_gib(), 3), steps=args.steps,
              warmup=args.warmup)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='small',
                      help=f'comma list of {tuple(CONFIGS)}')
  parser.add_argument('--batch', default='1', help='comma list of sizes')
  parser.add_argument('--mode', default='train,inference',
                      help=f'comma list of {MODES}')
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--warmup', type=int, default=1)
  args = parser.parse_args(argv)
  configs = args.config.split(',')
  modes = args.mode.split(',')
  for c in configs:
    if c not in CONFIGS:
      parser.error(f'--config {c!r}: expected some of {list(CONFIGS)}')
  for m in modes:
    if m not in MODES:
      parser.error(f'--mode {m!r}: expected some of {list(MODES)}')
  batches = [int(b) for b in args.batch.split(',')]
  if args.steps < 1 or args.warmup < 0 or min(batches) < 1:
    parser.error('--steps and --batch must be >= 1, --warmup >= 0')
  peak = matmul_gflops()
  machine = dict(torch=torch.__version__,
                 transformers=transformers.__version__,
                 threads=torch.get_num_threads(), cpu=platform.processor(),
                 load_avg=[round(x, 2) for x in os.getloadavg()],
                 torch_matmul_gflops=round(peak, 1))
  print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
        f'float32 2048^3 matmul {peak:.1f} GFLOP/s', flush=True)
  rows = []
  for c in configs:
    for m in modes:
      for b in batches:
        row = run_case(c, b, m, args)
        row.update(machine)
        rows.append(row)
        print(f"{c:>6} {m:>9} batch {b}: {row['sec_per_call']:.2f} s per "
              f"call (best {row['best_sec']:.2f}), peak RSS "
              f"{row['peak_rss_gib']:.2f} GiB", flush=True)
  for row in rows:
    print(json.dumps(row, sort_keys=True))
  return 0


if __name__ == '__main__':
  sys.exit(main())
