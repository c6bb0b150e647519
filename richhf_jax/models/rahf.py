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
"""RAHF: ViT image tokens fused with prompt tokens in a T5 encoder, with heads.

Paper Fig. 3 / Sec. 4.1. The image goes through the ViT; its patch tokens are
projected to the T5 width and concatenated in front of the embedded prompt
tokens; the T5 encoder runs self-attention over the joint sequence. The image
positions of the encoder output are reshaped to a feature map that feeds the
heatmap and score heads; the T5 decoder cross-attends to the whole encoder
output and emits the prompt with misaligned words marked.

Two variants (Sec. 4.1.2):
  * multi-head: one head per output (2 heatmap heads, 4 score heads);
  * augmented prompt: one heatmap head and one score head; the requested
    output is named in the prompt (`implausibility heatmap <prompt>`), so the
    encoder output is task specific. The ViT runs once per image and every
    task prompt goes through the encoder in one batched call.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head as heatmap_head_lib
from richhf_jax.models import score_head as score_head_lib
from richhf_jax.models import t5
from richhf_jax.models import vit

Array = jax.Array

HEATMAP_TYPES = ('implausibility', 'misalignment')
SCORE_TYPES = ('plausibility', 'alignment', 'aesthetics', 'overall')
VARIANTS = ('multihead', 'augmented')
HEATMAP_LOSSES = ('mse', 'bce')

# Augmented-prompt variant: the task prefixes, in the order the model expects
# the task axis of `encoder_input_tokens`. The keyword task last, so the
# decoder reads the last slot.
AUGMENTED_TASKS = (
    ('implausibility', 'implausibility heatmap'),
    ('misalignment', 'misalignment heatmap'),
    ('plausibility', 'plausibility score'),
    ('alignment', 'alignment score'),
    ('aesthetics', 'aesthetics score'),
    ('overall', 'overall score'),
    ('keywords', 'misaligned keywords'),
)


@dataclasses.dataclass(frozen=True)
class RAHFConfig:
  """Whole-model configuration, passed whole to every component.

  Attributes:
    vit: the image encoder.
    t5: the fusion encoder and the keyword decoder.
    heatmap_head: shared by both heatmap types (one instance per type in the
      multi-head variant).
    score_head: likewise for the four scores.
    variant: 'multihead' or 'augmented'.
    heatmap_loss: 'mse' (the paper: per-pixel MSE of the sigmoid output) or
      'bce' (per-pixel sigmoid cross entropy on the logits, against the
      soft targets). MSE through a sigmoid saturates on sparse maps (most
      pixels 0): once the logits are very negative its gradient vanishes;
      the cross entropy's gradient stays p - y.
    heatmap_loss_weight: weight of the per-pixel heatmap loss (each type).
    score_loss_weight: weight of the score MSE (each type).
    text_loss_weight: weight of the decoder's token cross entropy.
  """
  vit: config_lib.ViTConfig
  t5: config_lib.T5Config
  heatmap_head: heatmap_head_lib.HeatmapHeadConfig
  score_head: score_head_lib.ScoreHeadConfig
  variant: str = 'multihead'
  heatmap_loss: str = 'mse'
  heatmap_loss_weight: float = 1.0
  score_loss_weight: float = 1.0
  text_loss_weight: float = 1.0

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(
          f'RAHFConfig.variant={self.variant!r}; expected one of {VARIANTS}')
    if self.heatmap_loss not in HEATMAP_LOSSES:
      raise ValueError(f'RAHFConfig.heatmap_loss={self.heatmap_loss!r}; '
                       f'expected one of {HEATMAP_LOSSES}')
    for name in ('heatmap_loss_weight', 'score_loss_weight',
                 'text_loss_weight'):
      if getattr(self, name) < 0:
        raise ValueError(f'RAHFConfig.{name} must be >= 0, got '
                         f'{getattr(self, name)}')

  @property
  def grid(self) -> tuple[int, int]:
    """The ViT patch grid (rows, columns)."""
    side = self.vit.image_size // self.vit.patch_size
    return side, side

  @property
  def num_image_tokens(self) -> int:
    h, w = self.grid
    return h * w

  @property
  def heatmap_size(self) -> tuple[int, int]:
    """The heatmap heads' output resolution (rows, columns)."""
    if self.heatmap_head.output_size is not None:
      return tuple(self.heatmap_head.output_size)
    f = self.heatmap_head.upsample_factor
    return self.grid[0] * f, self.grid[1] * f

  @property
  def num_tasks(self) -> int:
    """Encoder passes per image: 1 (multi-head) or one per augmented task."""
    return 1 if self.variant == 'multihead' else len(AUGMENTED_TASKS)


class RAHF(nn.Module):
  """The RAHF model (both variants).

  Parameter tree: `img` (ViT, big_vision layout), `img_projection`,
  `token_embedder`, `encoder`, `decoder` (T5X layout), and the heads
  `heatmap_<type>` / `score_<type>` (multi-head) or `heatmap` / `score`
  (augmented prompt).

  Attributes:
    config: the whole-model configuration.
  """
  config: RAHFConfig

  def setup(self):
    cfg = self.config
    self.img = vit.ViT(cfg.vit)
    self.img_projection = nn.Dense(
        cfg.t5.emb_dim,
        dtype=cfg.t5.dtype,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), ('proj_in', 'embed')),
        bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros, ('embed',)))
    self.token_embedder = t5.Embed(
        num_embeddings=cfg.t5.vocab_size,
        features=cfg.t5.emb_dim,
        dtype=cfg.t5.dtype)
    self.encoder = t5.T5Encoder(cfg.t5)
    self.decoder = t5.T5Decoder(cfg.t5, shared_embedding=self.token_embedder)
    if cfg.variant == 'multihead':
      # flax names dict entries '<attr>_<key>': heatmap_implausibility, ...
      self.heatmap = {k: heatmap_head_lib.HeatmapHead(cfg.heatmap_head)
                      for k in HEATMAP_TYPES}
      self.score = {k: score_head_lib.ScoreHead(cfg.score_head)
                    for k in SCORE_TYPES}
    else:
      self.heatmap = heatmap_head_lib.HeatmapHead(cfg.heatmap_head)
      self.score = score_head_lib.ScoreHead(cfg.score_head)

  # --------------------------------------------------------------------------
  # Stages.
  # --------------------------------------------------------------------------

  def encode(self, images: Array, encoder_input_tokens: Array, *,
             train: bool = False) -> tuple[Array, Array]:
    """Runs the ViT and the fusion encoder.

    Args:
      images: [B, S, S, 3] in [-1, 1].
      encoder_input_tokens: [B, L] prompt tokens (multi-head), or [B, K, L]
        one prompt per augmented task (K = len(AUGMENTED_TASKS)); 0 = pad.
      train: enables dropout.

    Returns:
      (encoded, mask): [B, N + L, D] and [B, N + L] for multi-head, or
      [B, K, N + L, D] and [B, K, N + L] for augmented prompts. The first
      N = num_image_tokens positions are image tokens.
    """
    cfg = self.config
    tokens = encoder_input_tokens
    want_rank = 2 if cfg.variant == 'multihead' else 3
    if tokens.ndim != want_rank:
      raise ValueError(
          f'encoder_input_tokens has shape {tokens.shape}; the {cfg.variant} '
          f'variant expects rank {want_rank} '
          f'({"[B, L]" if want_rank == 2 else "[B, K, L]"})')
    if cfg.variant == 'augmented' and tokens.shape[1] != cfg.num_tasks:
      raise ValueError(
          f'encoder_input_tokens has {tokens.shape[1]} task prompts per image; '
          f'the augmented variant expects {cfg.num_tasks}: '
          f'{[t for t, _ in AUGMENTED_TASKS]}')
    batch = images.shape[0]
    img_tokens, _ = self.img(images, train=train)  # [B, N, W]
    img_tokens = self.img_projection(img_tokens)  # [B, N, D]
    n = img_tokens.shape[1]
    if n != cfg.num_image_tokens:
      raise ValueError(f'ViT produced {n} tokens, config expects '
                       f'{cfg.num_image_tokens} (grid {cfg.grid})')
    if cfg.variant == 'augmented':
      # One ViT pass per image, shared by all K task prompts.
      k = tokens.shape[1]
      img_tokens = jnp.repeat(img_tokens[:, None], k, axis=1)
      img_tokens = img_tokens.reshape((batch * k,) + img_tokens.shape[2:])
      tokens = tokens.reshape((batch * k, tokens.shape[-1]))
    text = self.token_embedder(tokens).astype(img_tokens.dtype)  # [B', L, D]
    embedded = jnp.concatenate([img_tokens, text], axis=1)  # [B', N+L, D]
    mask = jnp.concatenate(
        [jnp.ones(img_tokens.shape[:2], jnp.int32),
         (tokens > 0).astype(jnp.int32)], axis=1)  # [B', N+L]
    embedded = nn.with_logical_constraint(
        embedded, ('batch', 'length', 'embed'))
    encoded = self.encoder(embedded, mask, deterministic=not train)
    if cfg.variant == 'augmented':
      encoded = encoded.reshape((batch, cfg.num_tasks) + encoded.shape[1:])
      mask = mask.reshape((batch, cfg.num_tasks) + mask.shape[1:])
    return encoded, mask

  def _feature_map(self, encoded: Array) -> Array:
    """[..., N + L, D] encoder output -> [..., h, w, D] image feature map."""
    h, w = self.config.grid
    img = encoded[..., :h * w, :]
    return img.reshape(img.shape[:-2] + (h, w, img.shape[-1]))

  def predict_heads(self, encoded: Array, *,
                    train: bool = False) -> dict[str, Array]:
    """Heatmaps and scores from the encoder output.

    Returns:
      {'implausibility_heatmap': [B, H, W], 'misalignment_heatmap': [B, H, W],
       'scores': [B, 4]} (scores in SCORE_TYPES order), all float32, plus the
      heatmaps' pre-sigmoid logits under '<type>_heatmap_logits'.
    """
    cfg = self.config
    fmap = self._feature_map(encoded)
    out = {}
    if cfg.variant == 'multihead':
      for k in HEATMAP_TYPES:
        logits = self.heatmap[k](fmap, train=train, return_logits=True)
        out[f'{k}_heatmap_logits'] = logits
        out[f'{k}_heatmap'] = jax.nn.sigmoid(logits)
      scores = [self.score[k](fmap, train=train) for k in SCORE_TYPES]
      out['scores'] = jnp.stack(scores, axis=-1)
      return out
    # Augmented prompt: fmap is [B, K, h, w, D]; heads run on their slots as
    # one batched call each.
    b = fmap.shape[0]
    nh, ns = len(HEATMAP_TYPES), len(SCORE_TYPES)
    hm_in = fmap[:, :nh].reshape((b * nh,) + fmap.shape[2:])
    hm = self.heatmap(hm_in, train=train, return_logits=True)
    hm = hm.reshape((b, nh) + cfg.heatmap_size)
    for i, k in enumerate(HEATMAP_TYPES):
      out[f'{k}_heatmap_logits'] = hm[:, i]
      out[f'{k}_heatmap'] = jax.nn.sigmoid(hm[:, i])
    sc_in = fmap[:, nh:nh + ns].reshape((b * ns,) + fmap.shape[2:])
    out['scores'] = self.score(sc_in, train=train).reshape((b, ns))
    return out

  def keyword_encoding(self, encoded: Array,
                       mask: Array) -> tuple[Array, Array]:
    """The encoder output the decoder attends to ([B, N + L, D], [B, N + L])."""
    if self.config.variant == 'augmented':
      return encoded[:, -1], mask[:, -1]
    return encoded, mask

  def decode(self, encoded: Array, encoder_mask: Array,
             decoder_input_tokens: Array, *, train: bool = False,
             decode: bool = False,
             max_decode_length: int | None = None) -> Array:
    """Decoder logits [B, T, vocab] (float32); `decode` uses the KV cache."""
    return self.decoder(
        encoded, encoder_mask, decoder_input_tokens,
        deterministic=not train, decode=decode,
        max_decode_length=max_decode_length)

  def __call__(self, images: Array, encoder_input_tokens: Array,
               decoder_input_tokens: Array | None = None, *,
               train: bool = False) -> dict[str, Any]:
    """Full forward pass (teacher-forced decoder when tokens are given).

    Returns:
      dict with the heads' outputs (see `predict_heads`), `logits`
      [B, T, vocab] when `decoder_input_tokens` is given, and the keyword
      `encoded` / `encoder_mask` for decoding.
    """
    encoded, mask = self.encode(images, encoder_input_tokens, train=train)
    out = self.predict_heads(encoded, train=train)
    kw_encoded, kw_mask = self.keyword_encoding(encoded, mask)
    out['encoded'], out['encoder_mask'] = kw_encoded, kw_mask
    if decoder_input_tokens is not None:
      out['logits'] = self.decode(kw_encoded, kw_mask, decoder_input_tokens,
                                  train=train)
    return out
