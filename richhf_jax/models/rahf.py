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

Wiring options (`RAHFConfig`; the defaults are the paper's, the
alternatives express the public PyTorch port, github.com/youweiliang/RichHF
`model.py`, exactly; `PORT_WIRING` sets all three):
  * `encoder_image_tokens`: 'patches' (the patch grid) or 'cls_and_patches'
    (the ViT class token too, projected and fused like the patches; the
    heads still read only the grid positions);
  * `decoder_attends_to`: 'all' encoder positions or only the 'text' ones;
  * `encoder_padding_mask`: mask padded prompt positions, or attend to them
    like real tokens (the port passes no mask to the encoder or decoder).

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
ENCODER_IMAGE_TOKENS = ('patches', 'cls_and_patches')
DECODER_ATTENDS_TO = ('all', 'text')

# The public PyTorch port's wiring (`RAHFConfig` fields): the projected ViT
# class token precedes the patches in the encoder, the decoder sees only the
# text positions, and no padding mask is used anywhere.
PORT_WIRING = {
    'encoder_image_tokens': 'cls_and_patches',
    'decoder_attends_to': 'text',
    'encoder_padding_mask': False,
}

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

# The port's augmented-prompt strings, in the same task order: the output is
# named as `<output> HEATMAP: <type> </output> <caption>` or
# `<output> SCORE: <type> </output> <caption>`, and its decoder reads an
# encoding of the bare caption (empty prefix). The port tokenizes the raw
# caption with the `t5-base` SentencePiece vocabulary.
PORT_AUGMENTED_TASKS = (
    ('implausibility', '<output> HEATMAP: implausibility </output>'),
    ('misalignment', '<output> HEATMAP: misalignment </output>'),
    ('plausibility', '<output> SCORE: plausibility </output>'),
    ('alignment', '<output> SCORE: alignment </output>'),
    ('aesthetics', '<output> SCORE: aesthetics </output>'),
    ('overall', '<output> SCORE: overall </output>'),
    ('keywords', ''),
)


def augmented_prompt(prefix: str, prompt: str) -> str:
  """One task's encoder text: `<prefix> <prompt>`, or the prompt alone."""
  return f'{prefix} {prompt}' if prefix else prompt


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
    encoder_image_tokens: which ViT outputs enter the fusion encoder:
      'patches' (the h * w grid; the paper) or 'cls_and_patches' (the class
      token first, then the grid, as the port; needs `vit.class_token`).
      The heads read the grid positions either way.
    decoder_attends_to: the encoder positions the decoder cross-attends to:
      'all' (image and text; the paper) or 'text' (the port).
    encoder_padding_mask: mask padded prompt positions in the encoder and in
      the decoder's cross-attention (the paper); False attends to them like
      real tokens (the port), so outputs then depend on the padding length.
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
  encoder_image_tokens: str = 'patches'
  decoder_attends_to: str = 'all'
  encoder_padding_mask: bool = True

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
    if self.encoder_image_tokens not in ENCODER_IMAGE_TOKENS:
      raise ValueError(
          f'RAHFConfig.encoder_image_tokens={self.encoder_image_tokens!r}; '
          f'expected one of {ENCODER_IMAGE_TOKENS}')
    if self.decoder_attends_to not in DECODER_ATTENDS_TO:
      raise ValueError(
          f'RAHFConfig.decoder_attends_to={self.decoder_attends_to!r}; '
          f'expected one of {DECODER_ATTENDS_TO}')
    if not isinstance(self.encoder_padding_mask, bool):
      raise ValueError('RAHFConfig.encoder_padding_mask must be a bool, got '
                       f'{self.encoder_padding_mask!r}')
    if (self.encoder_image_tokens == 'cls_and_patches'
        and not self.vit.class_token):
      raise ValueError(
          "RAHFConfig.encoder_image_tokens='cls_and_patches' needs a ViT "
          'class token; set vit.class_token=True (HF ViT semantics) or use '
          "'patches'")

  @property
  def grid(self) -> tuple[int, int]:
    """The ViT patch grid (rows, columns)."""
    side = self.vit.image_size // self.vit.patch_size
    return side, side

  @property
  def num_image_tokens(self) -> int:
    """Patch-grid tokens (what the heads read)."""
    h, w = self.grid
    return h * w

  @property
  def num_encoder_image_tokens(self) -> int:
    """Image positions at the start of the encoder sequence (text follows)."""
    extra = 1 if self.encoder_image_tokens == 'cls_and_patches' else 0
    return extra + self.num_image_tokens

  @property
  def patch_positions(self) -> tuple[int, int]:
    """[start, stop) of the patch-grid tokens in the encoder sequence."""
    stop = self.num_encoder_image_tokens
    return stop - self.num_image_tokens, stop

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
      N = config.num_encoder_image_tokens positions are image tokens (the
      patch grid at `config.patch_positions`); the mask is all ones without
      `encoder_padding_mask`.
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
    img_tokens, aux = self.img(images, train=train)  # [B, h * w, W]
    n = img_tokens.shape[1]
    if n != cfg.num_image_tokens:
      raise ValueError(f'ViT produced {n} tokens, config expects '
                       f'{cfg.num_image_tokens} (grid {cfg.grid})')
    if cfg.encoder_image_tokens == 'cls_and_patches':
      img_tokens = aux['encoded']  # [B, 1 + h * w, W], class token first
    img_tokens = self.img_projection(img_tokens)  # [B, N, D]
    if cfg.variant == 'augmented':
      # One ViT pass per image, shared by all K task prompts.
      k = tokens.shape[1]
      img_tokens = jnp.repeat(img_tokens[:, None], k, axis=1)
      img_tokens = img_tokens.reshape((batch * k,) + img_tokens.shape[2:])
      tokens = tokens.reshape((batch * k, tokens.shape[-1]))
    text = self.token_embedder(tokens).astype(img_tokens.dtype)  # [B', L, D]
    embedded = jnp.concatenate([img_tokens, text], axis=1)  # [B', N+L, D]
    if cfg.encoder_padding_mask:
      text_mask = (tokens > 0).astype(jnp.int32)
    else:
      text_mask = jnp.ones(tokens.shape, jnp.int32)
    mask = jnp.concatenate(
        [jnp.ones(img_tokens.shape[:2], jnp.int32), text_mask],
        axis=1)  # [B', N+L]
    embedded = nn.with_logical_constraint(
        embedded, ('batch', 'length', 'embed'))
    encoded = self.encoder(embedded, mask, deterministic=not train)
    if cfg.variant == 'augmented':
      encoded = encoded.reshape((batch, cfg.num_tasks) + encoded.shape[1:])
      mask = mask.reshape((batch, cfg.num_tasks) + mask.shape[1:])
    return encoded, mask

  def feature_map(self, encoded: Array) -> Array:
    """[..., N + L, D] encoder output -> [..., h, w, D] image feature map.

    The heads' input: the encoder outputs at the patch positions, on the
    patch grid.
    """
    h, w = self.config.grid
    start, stop = self.config.patch_positions
    img = encoded[..., start:stop, :]
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
    fmap = self.feature_map(encoded)
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
    """The encoder output the decoder attends to, and its mask.

    Args:
      encoded: `encode`'s output ([B, N + L, D], or [B, K, N + L, D]).
      mask: `encode`'s mask ([B, N + L], or [B, K, N + L]).

    Returns:
      The keyword task's slot (augmented prompts: the last one), all
      positions ([B, N + L, D], [B, N + L]) or, with
      `decoder_attends_to='text'`, only the text ones ([B, L, D], [B, L]).
    """
    cfg = self.config
    if cfg.variant == 'augmented':
      encoded, mask = encoded[:, -1], mask[:, -1]
    if cfg.decoder_attends_to == 'text':
      n = cfg.num_encoder_image_tokens
      encoded, mask = encoded[:, n:], mask[:, n:]
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
