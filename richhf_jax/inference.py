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
"""Inference API: load an exported checkpoint once, predict on images.

  from richhf_jax import inference
  predictor = inference.Predictor.load('/tmp/rahf_export')
  [p] = predictor.predict(['cat.png'], ['a yellow cat on a red sofa'],
                          heatmap_size='image')
  p.scores['plausibility'], p.misaligned_words, p.implausibility_heatmap

Images may be paths, encoded bytes, PIL images or numpy arrays of any common
mode; they are converted to RGB and resized exactly as the training pipeline
does (`data/preprocessors.decode_image`: alpha dropped, grayscale replicated,
16-bit samples shifted right by 8, bilinear antialiased resize of the whole
image to S x S, then scaled to [-1, 1]). EXIF orientation is ignored, as in
training. The PIL implementation here matches TensorFlow's to ~1e-6
(tests/inference_test.py).

Batches are padded to a bucket size (a power of two, at most
`max_batch_size`); each bucket is compiled once and cached, so a stream of
ragged batches compiles at most log2(max_batch_size) + 1 programs.

Misaligned words: the decoder writes the prompt back with `_0` after each
misaligned word. `align_marked` maps that text onto the prompt's own words
(`data.release.prompt_words`) with `difflib.SequenceMatcher` on casefolded
words: matched words take the decoded label; a replaced run of the same
length as the prompt run is paired word by word (a misspelt or `<unk>` word);
prompt words the decoder dropped count as aligned, and decoded words with no
prompt counterpart are ignored.

Augmented-prompt models get one prompt per task, in the paper's style
(`rahf.AUGMENTED_TASKS`) or the PyTorch port's (`rahf.PORT_AUGMENTED_TASKS`);
`Predictor` takes the style it is given, else the one the training run
recorded (`DataConfig.augmented_prompts`), else 'port' for a model with the
port's wiring (`encoder_image_tokens='cls_and_patches'`) and 'paper'
otherwise.
"""

import dataclasses
import difflib
import io
import os
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import numpy as np
from PIL import Image

from richhf_jax import compile_options
from richhf_jax import export as export_lib
from richhf_jax import model as model_lib
from richhf_jax.data import release
from richhf_jax.models import rahf

PyTree = Any
ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]
HeatmapSize = Union[None, int, tuple[int, int], str]

_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')
AUGMENTED_PROMPTS = ('paper', 'port')


# ----------------------------------------------------------------------------
# Images.
# ----------------------------------------------------------------------------


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(gray[..., None], 3, axis=-1)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
  """PIL image of any mode -> float32 [H, W, 3] in [0, 255]."""
  mode = img.mode
  if mode in _SIXTEEN_BIT_MODES:
    # TF's decode_png(dtype=uint8) keeps the high byte of 16-bit samples.
    gray = np.asarray(img).astype(np.uint16) >> 8
    return _gray_to_rgb(gray.astype(np.float32))
  if mode == 'I':
    gray = np.asarray(img).astype(np.int64)
    if gray.max(initial=0) > 255:  # 16-bit data held as 32-bit ints.
      gray = np.clip(gray, 0, 65535) >> 8
    return _gray_to_rgb(np.clip(gray, 0, 255).astype(np.float32))
  if mode == 'F':
    gray = np.asarray(img, np.float32)
    if gray.max(initial=0.0) <= 1.0:
      gray = gray * 255.0
    return _gray_to_rgb(np.clip(gray, 0.0, 255.0))
  # RGB, RGBA (alpha dropped, not composited, as TF does), L, LA, P, CMYK,
  # YCbCr, 1, ...: Pillow's own conversion.
  return np.asarray(img.convert('RGB'), np.float32)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
  """numpy image -> float32 [H, W, 3] in [0, 255]."""
  if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
    arr = arr[..., :3] if arr.shape[-1] != 1 else arr[..., 0]
  elif arr.ndim != 2:
    raise ValueError(f'image array has shape {arr.shape}; expected [H, W], '
                     '[H, W, 1], [H, W, 3] or [H, W, 4]')
  if arr.dtype == np.uint8:
    out = arr.astype(np.float32)
  elif arr.dtype == np.uint16:
    out = (arr >> 8).astype(np.float32)
  elif arr.dtype == bool:
    out = arr.astype(np.float32) * 255.0
  elif np.issubdtype(arr.dtype, np.floating):
    if arr.size and (np.nanmin(arr) < -1e-3 or np.nanmax(arr) > 1 + 1e-3
                     or not np.isfinite(arr).all()):
      raise ValueError(
          f'float image array has values in [{np.nanmin(arr)}, '
          f'{np.nanmax(arr)}]; expected finite values in [0, 1] (pass uint8 '
          'arrays for [0, 255])')
    out = np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0
  elif np.issubdtype(arr.dtype, np.integer):
    if arr.size and (arr.min() < 0 or arr.max() > 255):
      raise ValueError(f'integer image array ({arr.dtype}) has values in '
                       f'[{arr.min()}, {arr.max()}]; expected [0, 255]')
    out = arr.astype(np.float32)
  else:
    raise ValueError(f'image array has dtype {arr.dtype}; expected uint8, '
                     'uint16, bool, an integer type in [0, 255] or float in '
                     '[0, 1]')
  return _gray_to_rgb(out) if out.ndim == 2 else out


def load_rgb(image: ImageLike) -> np.ndarray:
  """Reads an image of any supported kind as float32 RGB [H, W, 3] in [0, 255].

  Args:
    image: a path, encoded bytes, a PIL image or a numpy array (uint8 /
      uint16 / integer in [0, 255] / float in [0, 1]; [H, W] or
      [H, W, 1|3|4]).

  Returns:
    The RGB image, not yet resized.

  Raises:
    ValueError: unreadable or unsupported input (names the input).
  """
  if isinstance(image, np.ndarray):
    out = _array_to_rgb(image)
  else:
    if isinstance(image, Image.Image):
      img, what = image, 'PIL image'
    else:
      what = (f'{len(image)} bytes' if isinstance(image, (bytes, bytearray))
              else os.fspath(image))
      try:
        img = Image.open(io.BytesIO(image) if isinstance(
            image, (bytes, bytearray)) else image)
        img.load()  # Truncated data fails here, not later.
      except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f'cannot read image {what}: {e}') from e
    try:
      out = _pil_to_rgb(img)
    except (OSError, ValueError) as e:
      raise ValueError(f'cannot convert image {what} (mode {img.mode}) to '
                       f'RGB: {e}') from e
  if out.shape[0] < 1 or out.shape[1] < 1:
    raise ValueError(f'image has an empty shape {out.shape}')
  return out


def resize_channels(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear (antialiased when shrinking) float resize of [H, W, C] or [H, W].

  Pillow's float ('F') bilinear filter widens its triangle kernel by the
  scale factor when shrinking, as `tf.image.resize(..., antialias=True)`
  does, and uses half-pixel centres, so the two agree to float precision.

  Args:
    values: the array.
    size: (height, width) of the output.

  Returns:
    float32 array of shape `size` (+ the channel axis).
  """
  values = np.asarray(values, np.float32)
  h, w = size
  if values.shape[:2] == (h, w):
    return values.copy()
  if values.ndim == 2:
    return np.asarray(Image.fromarray(values, 'F').resize(
        (w, h), Image.Resampling.BILINEAR), np.float32)
  return np.stack([resize_channels(values[..., c], size)
                   for c in range(values.shape[-1])], axis=-1)


def to_model_input(rgb: np.ndarray, image_size: int) -> np.ndarray:
  """RGB [H, W, 3] in [0, 255] -> float32 [S, S, 3] in [-1, 1]."""
  resized = resize_channels(rgb, (image_size, image_size))
  return np.clip(resized / 127.5 - 1.0, -1.0, 1.0)


def preprocess(image: ImageLike, image_size: int
               ) -> tuple[np.ndarray, tuple[int, int]]:
  """Image -> (model input float32 [S, S, 3] in [-1, 1], original (h, w))."""
  rgb = load_rgb(image)
  return to_model_input(rgb, image_size), rgb.shape[:2]


# ----------------------------------------------------------------------------
# Prompts.
# ----------------------------------------------------------------------------


def augmented_tasks(style: str) -> tuple[tuple[str, str], ...]:
  """(task, prefix) pairs of an augmented prompt style ('paper' / 'port')."""
  if style == 'paper':
    return rahf.AUGMENTED_TASKS
  if style == 'port':
    return rahf.PORT_AUGMENTED_TASKS
  raise ValueError(f'augmented_prompts={style!r}; expected one of '
                   f'{AUGMENTED_PROMPTS}')


def default_augmented_prompts(config: rahf.RAHFConfig) -> str:
  """'port' for a model with the port's wiring, else 'paper'."""
  return ('port' if config.encoder_image_tokens == 'cls_and_patches'
          else 'paper')


class Tokenizer:
  """SentencePiece encoding of prompts as the seqio tasks do it.

  The clean prompt (`release.clean_prompt`) is encoded, cut to
  `length - 1` tokens, followed by EOS and padded with 0 (seqio's `tokenize`
  + `append_eos_after_trim` + the feature converter).

  Attributes:
    sp: the SentencePieceProcessor.
    length: the token length.
  """

  def __init__(self, vocab_path: str, length: int):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(vocab_path):
      raise FileNotFoundError(f'SentencePiece model {vocab_path} not found')
    self.sp = spm.SentencePieceProcessor(model_file=vocab_path)
    self.length = length

  def encode_text(self, text: str) -> np.ndarray:
    ids = list(self.sp.encode(text))[:self.length - 1] + [model_lib.EOS_ID]
    out = np.zeros((self.length,), np.int32)
    out[:len(ids)] = ids
    return out

  def encode(self, prompt: str, variant: str = 'multihead',
             augmented_prompts: str = 'paper') -> np.ndarray:
    """[L] tokens (multi-head) or [K, L] (one per augmented task).

    Args:
      prompt: the caption (cleaned here).
      variant: the model variant.
      augmented_prompts: 'paper' or 'port' task prompts (augmented only).

    Returns:
      The tokens.
    """
    clean = release.clean_prompt(prompt)
    if variant == 'multihead':
      return self.encode_text(clean)
    return np.stack([
        self.encode_text(rahf.augmented_prompt(prefix, clean))
        for _, prefix in augmented_tasks(augmented_prompts)])

  def decode(self, ids: Sequence[int]) -> str:
    """Token ids up to EOS -> text (ids past the vocabulary read as unk)."""
    ids = [int(i) for i in ids]
    if model_lib.EOS_ID in ids:
      ids = ids[:ids.index(model_lib.EOS_ID)]
    size = self.sp.get_piece_size()
    ids = [i if 0 <= i < size else self.sp.unk_id()
           for i in ids if i != model_lib.PAD_ID]
    return self.sp.decode(ids)


def align_marked(words: Sequence[str], decoded: str) -> list[bool]:
  """Per prompt word: is it marked misaligned in the decoded text?

  See the module docstring for how dropped, added and changed words are
  handled.

  Args:
    words: the prompt's words (`release.prompt_words(prompt)`).
    decoded: the decoder's text, misaligned words ending in `_0`.

  Returns:
    One flag per entry of `words`, True = misaligned.
  """
  dec_words, labels = release.parse_marked(decoded)
  matcher = difflib.SequenceMatcher(
      a=[w.casefold() for w in words], b=[w.casefold() for w in dec_words],
      autojunk=False)
  flags = [False] * len(words)
  for tag, i1, i2, j1, j2 in matcher.get_opcodes():
    if tag == 'equal' or (tag == 'replace' and i2 - i1 == j2 - j1):
      for k in range(i2 - i1):
        flags[i1 + k] = labels[j1 + k] == 0
  return flags


# ----------------------------------------------------------------------------
# Predictions.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Prediction:
  """The model's outputs for one image and prompt.

  Attributes:
    implausibility_heatmap: float32 [h, w] in [0, 1].
    misalignment_heatmap: float32 [h, w] in [0, 1].
    scores: {plausibility, alignment, aesthetics, overall} in [0, 1].
    marked_prompt: the decoded text (misaligned words end in `_0`).
    words: the prompt's words.
    misaligned: one flag per word, True = misaligned.
    misaligned_words: the flagged words, in prompt order.
    image_size: the input image's (height, width).
  """
  implausibility_heatmap: np.ndarray
  misalignment_heatmap: np.ndarray
  scores: dict[str, float]
  marked_prompt: str
  words: list[str]
  misaligned: list[bool]
  misaligned_words: list[str]
  image_size: tuple[int, int]

  def heatmap(self, name: str) -> np.ndarray:
    if name not in rahf.HEATMAP_TYPES:
      raise ValueError(f'unknown heatmap {name!r}; expected one of '
                       f'{rahf.HEATMAP_TYPES}')
    return getattr(self, f'{name}_heatmap')

  def to_json(self) -> dict[str, Any]:
    """JSON-able summary (heatmaps as mean / max, not the arrays)."""
    return {
        'scores': {k: round(float(v), 6) for k, v in self.scores.items()},
        'marked_prompt': self.marked_prompt,
        'words': self.words,
        'misaligned': [bool(f) for f in self.misaligned],
        'misaligned_words': self.misaligned_words,
        'heatmap_stats': {
            k: {'mean': round(float(self.heatmap(k).mean()), 6),
                'max': round(float(self.heatmap(k).max()), 6)}
            for k in rahf.HEATMAP_TYPES},
        'image_size': list(self.image_size),
    }


def bucket_sizes(max_batch_size: int) -> list[int]:
  """Powers of two below `max_batch_size`, then `max_batch_size` itself."""
  if max_batch_size < 1:
    raise ValueError(f'max_batch_size must be >= 1, got {max_batch_size}')
  sizes, b = [], 1
  while b < max_batch_size:
    sizes.append(b)
    b *= 2
  return sizes + [max_batch_size]


def _target_size(heatmap_size: HeatmapSize, native: tuple[int, int],
                 image_hw: tuple[int, int]) -> tuple[int, int]:
  if heatmap_size is None:
    return tuple(native)
  if heatmap_size == 'image':
    return tuple(image_hw)
  if isinstance(heatmap_size, int) and heatmap_size > 0:
    return heatmap_size, heatmap_size
  if (isinstance(heatmap_size, (tuple, list)) and len(heatmap_size) == 2
      and all(isinstance(v, int) and v > 0 for v in heatmap_size)):
    return tuple(heatmap_size)
  raise ValueError(f'heatmap_size={heatmap_size!r}; expected None (the '
                   "model's resolution), 'image', a positive int or (h, w)")


class Predictor:
  """Loads a model once and predicts on batches of (image, prompt).

  Attributes:
    config: the model config.
    params: the parameters (on the default device).
    tokenizer: prompt encoding and decoding.
    max_batch_size: the largest compiled batch.
    max_decode_length: decoded tokens per example.
    num_beams: 1 = greedy decoding.
    draft_tokens: K > 0 (greedy): speculative decoding verifying K tokens
      copied from the prompt per decoder call (same output, fewer calls).
    augmented_prompts: the task prompt style ('paper' or 'port') of an
      augmented-prompt model.
    compiler_options: XLA compile options of the forward program
      (`compile_options.resolve`: None = the backend's defaults).
    step_kernels: transposed decoder kernels the decoding steps multiply
      (`RAHFModel.step_kernels`, made once, at first use), or None.
  """

  def __init__(self, config: rahf.RAHFConfig, params: PyTree,
               vocab_path: str, *, input_length: int, target_length: int,
               max_batch_size: int = 8, num_beams: int = 1,
               augmented_prompts: Optional[str] = None,
               draft_tokens: int = 0,
               compiler_options: Optional[Mapping[str, Any]] = None,
               weight_major_steps: Optional[bool] = None):
    if draft_tokens < 0 or (draft_tokens and num_beams > 1):
      raise ValueError(f'draft_tokens={draft_tokens}: expected 0, or > 0 '
                       f'with greedy decoding (num_beams={num_beams})')
    if augmented_prompts is None:
      augmented_prompts = default_augmented_prompts(config)
    augmented_tasks(augmented_prompts)  # Checks the name.
    self.augmented_prompts = augmented_prompts
    self.config = config
    self.model = model_lib.RAHFModel(config)
    self.params = jax.device_put(params)
    self.tokenizer = Tokenizer(vocab_path, input_length)
    self.max_batch_size = max_batch_size
    self.buckets = bucket_sizes(max_batch_size)
    self.max_decode_length = target_length
    self.num_beams = num_beams
    self.draft_tokens = draft_tokens
    self.compiler_options = compile_options.resolve(compiler_options)
    self._weight_major_steps = weight_major_steps
    self._step_kernels = None
    self._compiled: dict[int, Callable[..., Any]] = {}

  @classmethod
  def load(cls, path: str, *, step: Optional[int] = None,
           vocab_path: Optional[str] = None, **kwargs) -> 'Predictor':
    """From an export directory, or a training run directory.

    Args:
      path: `richhf_jax.export` output (has config.json), or a training
        MODEL_DIR (has checkpoints/; read without gin, as the export does).
      step: training checkpoint step (training directories only).
      vocab_path: overrides the vocabulary.
      **kwargs: `Predictor` options (max_batch_size, num_beams, draft_tokens,
        compiler_options, input_length, target_length, augmented_prompts:
        default the training run's `DataConfig.augmented_prompts`, else
        from the model wiring).

    Raises:
      FileNotFoundError: neither kind of directory.
    """
    if os.path.isfile(os.path.join(path, export_lib.CONFIG_FILE)):
      info, params = export_lib.load_export(path)
      kwargs.setdefault('input_length', info.input_length)
      kwargs.setdefault('target_length', info.target_length)
      return cls(info.config, params, vocab_path or info.vocab_path, **kwargs)
    if os.path.isdir(os.path.join(path, 'checkpoints')):
      config, params, meta, _ = export_lib.load_training_checkpoint(path, step)
      data = meta.get('data') or {}
      kwargs.setdefault('input_length', int(data.get(
          'input_length', export_lib.DEFAULT_INPUT_LENGTH)))
      kwargs.setdefault('target_length', int(data.get(
          'target_length', export_lib.DEFAULT_TARGET_LENGTH)))
      if data:  # Runs from before the option used the paper's prompts.
        kwargs.setdefault('augmented_prompts',
                          data.get('augmented_prompts', 'paper'))
      vocab_path = vocab_path or data.get('vocab_path')
      if not vocab_path:
        raise FileNotFoundError(f'{path}: the checkpoint names no vocabulary; '
                                'pass vocab_path')
      return cls(config, params, vocab_path, **kwargs)
    raise FileNotFoundError(
        f'{path} is neither an export (no {export_lib.CONFIG_FILE}) nor a '
        'training directory (no checkpoints/)')

  # --------------------------------------------------------------------------
  # Inputs.
  # --------------------------------------------------------------------------

  @property
  def image_size(self) -> int:
    return self.config.vit.image_size

  def preprocess(self, image: ImageLike
                 ) -> tuple[np.ndarray, tuple[int, int]]:
    """(float32 [S, S, 3] in [-1, 1], original (h, w)); see `preprocess`."""
    return preprocess(image, self.image_size)

  def tokenize(self, prompts: Sequence[str]) -> np.ndarray:
    """[B, L] (or [B, K, L] for augmented prompts) int32 tokens."""
    return np.stack([self.tokenizer.encode(p, self.config.variant,
                                           self.augmented_prompts)
                     for p in prompts])

  # --------------------------------------------------------------------------
  # The compiled forward pass.
  # --------------------------------------------------------------------------

  @property
  def step_kernels(self) -> Optional[PyTree]:
    if self._step_kernels is None and self._weight_major_steps is not False:
      self._step_kernels = model_lib.make_step_kernels(
          self.model, self.params, self._weight_major_steps)
      if self._step_kernels is None:  # Not on this backend.
        self._weight_major_steps = False
    return self._step_kernels

  def _forward(self, params, kernels, image, tokens):
    out = self.model.predict_batch(
        params, {'image': image, 'encoder_input_tokens': tokens},
        max_decode_length=self.max_decode_length, num_beams=self.num_beams,
        draft_tokens=self.draft_tokens, step_kernels=kernels)
    return {k: out[k] for k in ('implausibility_heatmap',
                                'misalignment_heatmap', 'scores', 'decoded')}

  def compiled(self, batch_size: int) -> Callable[..., Any]:
    """The forward pass compiled for `batch_size` (cached)."""
    if batch_size not in self._compiled:
      s = self.image_size
      tok_shape = (batch_size, self.tokenizer.length)
      if self.config.variant == 'augmented':
        tok_shape = (batch_size, self.config.num_tasks, self.tokenizer.length)
      self._compiled[batch_size] = jax.jit(self._forward).lower(
          self.params, self.step_kernels,
          jax.ShapeDtypeStruct((batch_size, s, s, 3), np.float32),
          jax.ShapeDtypeStruct(tok_shape, np.int32)).compile(
              compiler_options=self.compiler_options or None)
    return self._compiled[batch_size]

  def _run_chunk(self, images: np.ndarray, tokens: np.ndarray
                 ) -> dict[str, np.ndarray]:
    n = len(images)
    size = next(b for b in self.buckets if b >= n)
    if size > n:  # Pad with copies of the first example.
      pad = size - n
      images = np.concatenate([images, np.repeat(images[:1], pad, 0)])
      tokens = np.concatenate([tokens, np.repeat(tokens[:1], pad, 0)])
    out = jax.device_get(self.compiled(size)(self.params, self.step_kernels,
                                             images, tokens))
    return {k: np.asarray(v)[:n] for k, v in out.items()}

  # --------------------------------------------------------------------------
  # Public prediction.
  # --------------------------------------------------------------------------

  def predict_arrays(self, images: np.ndarray, prompts: Sequence[str],
                     image_sizes: Optional[Sequence[tuple[int, int]]] = None,
                     heatmap_size: HeatmapSize = None) -> list[Prediction]:
    """Predicts on already preprocessed images ([N, S, S, 3] in [-1, 1]).

    Args:
      images: model inputs, e.g. from `preprocess`.
      prompts: N prompts.
      image_sizes: the original (h, w) of each image (for
        heatmap_size='image'; default S x S).
      heatmap_size: see `predict`.

    Returns:
      N predictions.
    """
    images = np.asarray(images, np.float32)
    s = self.image_size
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
      raise ValueError(f'images has shape {images.shape}; expected '
                       f'[N, {s}, {s}, 3]')
    if len(prompts) != len(images):
      raise ValueError(f'{len(images)} images but {len(prompts)} prompts')
    sizes = list(image_sizes) if image_sizes is not None else [(s, s)] * len(
        images)
    tokens = self.tokenize(prompts)
    results = []
    for start in range(0, len(images), self.max_batch_size):
      stop = start + self.max_batch_size
      out = self._run_chunk(images[start:stop], tokens[start:stop])
      for i in range(len(out['scores'])):
        results.append(self._prediction(
            {k: v[i] for k, v in out.items()}, prompts[start + i],
            sizes[start + i], heatmap_size))
    return results

  def _prediction(self, out: dict[str, np.ndarray], prompt: str,
                  image_hw: tuple[int, int],
                  heatmap_size: HeatmapSize) -> Prediction:
    native = self.config.heatmap_size
    target = _target_size(heatmap_size, native, image_hw)
    maps = {k: np.clip(resize_channels(out[f'{k}_heatmap'], target), 0.0, 1.0)
            for k in rahf.HEATMAP_TYPES}
    text = self.tokenizer.decode(out['decoded'])
    words = release.prompt_words(prompt)
    flags = align_marked(words, text)
    return Prediction(
        implausibility_heatmap=maps['implausibility'],
        misalignment_heatmap=maps['misalignment'],
        scores={k: float(out['scores'][i])
                for i, k in enumerate(rahf.SCORE_TYPES)},
        marked_prompt=text, words=words, misaligned=flags,
        misaligned_words=[w for w, f in zip(words, flags) if f],
        image_size=tuple(int(v) for v in image_hw))

  def predict(self, images: Union[ImageLike, Sequence[ImageLike]],
              prompts: Union[str, Sequence[str]],
              heatmap_size: HeatmapSize = None) -> list[Prediction]:
    """Predicts heatmaps, scores and misaligned words.

    Args:
      images: one image or a sequence (paths, bytes, PIL images, arrays).
      prompts: one prompt per image (a single string with a single image).
      heatmap_size: None = the model's heatmap resolution; 'image' = each
        input image's own size; an int n = n x n; or (h, w).

    Returns:
      One `Prediction` per image, in order.

    Raises:
      ValueError: an unreadable image (named), or mismatched lengths.
    """
    if isinstance(prompts, str):
      images, prompts = [images], [prompts]
    images = list(images)
    if len(images) != len(prompts):
      raise ValueError(f'{len(images)} images but {len(prompts)} prompts')
    arrays, sizes = [], []
    for image in images:
      arr, hw = self.preprocess(image)
      arrays.append(arr)
      sizes.append(hw)
    if not arrays:
      return []
    return self.predict_arrays(np.stack(arrays), list(prompts), sizes,
                               heatmap_size)

