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
"""seqio preprocessors for RichHF-18K and captioning (small pure functions).

Input: a joined shard example (docs/architecture.md) parsed to tensors, or the
same fields from the `richhf18k` TFDS dataset (there `image` and the heatmaps
arrive decoded as uint8; both forms are accepted).

Output of `rahf_features` (the model features, before tokenization):
`inputs` (clean prompt), `targets` (marked target), `image` float32
[S, S, 3] in [-1, 1], `implausibility_heatmap` and `misalignment_heatmap`
float32 [H, H] in [0, 1], `scores` float32 [4] (plausibility, alignment,
aesthetics, overall), and the per-example loss weights `heatmap_weight`,
`score_weight` (float32 [1]: 1 for RichHF-18K, 0 for captioning; shape [1]
rather than a scalar because seqio's evaluator reads every feature's first
dimension).

Bad input fails with an error naming the example's uid (missing field, an
undecodable image, a heatmap that is not 512x512, a score that is not finite
in [0, 1], an empty prompt); prompts or targets longer than the sequence
length are truncated and counted (`truncation_counts`).

`augment` (train-time flip / crop of the image and both heatmaps alike, with
randomness fixed by the example's stream position) is not a task step:
`pipeline.get_dataset` applies it to the training stream only.
"""

import collections
import os
import threading

from absl import logging

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from richhf_jax.data import release  # pylint: disable=g-import-not-at-top

# Leading bytes of the formats tf.io.decode_image reads.
IMAGE_MAGIC = (b'\xff\xd8\xff', b'\x89PNG', b'GIF8', b'BM')

IMAGE = 'image'
IMPLAUSIBILITY_HEATMAP = 'implausibility_heatmap'
MISALIGNMENT_HEATMAP = 'misalignment_heatmap'
SCORES = 'scores'
HEATMAP_WEIGHT = 'heatmap_weight'
SCORE_WEIGHT = 'score_weight'
# Augmented-prompt variant: int32 [K, L], one tokenized task prompt per
# output (`<prefix> <clean prompt>`, EOS, 0-padded), K in the order of
# `release.AUGMENTED_PREFIXES` (= `models.rahf.AUGMENTED_TASKS`).
AUGMENTED_INPUTS = 'augmented_inputs'
AUGMENTED_OUTPUTS = tuple(release.AUGMENTED_PREFIXES)
NUM_AUGMENTED = len(AUGMENTED_OUTPUTS)

# Encoder text of captioning examples (fixed; see docs/architecture.md).
CAPTION_PROMPT = 'caption'

EOS_ID = 1
_MISSING_SCORE = float('nan')


def feature_description() -> dict[str, tf.io.FixedLenFeature]:
  """The `tf.io.parse_single_example` spec of the joined-shard fields used.

  Missing fields parse to a sentinel (empty bytes, NaN) that
  `rahf_features` rejects with an error naming the uid and the field, instead
  of TensorFlow's parse error that names neither.
  """
  desc = {name: tf.io.FixedLenFeature([], tf.string, default_value=b'')
          for name in (release.IMAGE, release.UID, release.CLEAN_PROMPT,
                       release.TARGET, release.ARTIFACT_MAP,
                       release.MISALIGNMENT_MAP)}
  for name in release.SCORE_FIELDS:
    desc[name] = tf.io.FixedLenFeature([], tf.float32,
                                       default_value=_MISSING_SCORE)
  return desc


def _who(uid: tf.Tensor) -> tf.Tensor:
  """'uid <uid>' for error messages ('<missing uid>' when empty)."""
  return tf.where(tf.strings.length(uid) > 0,
                  tf.strings.join(['uid ', uid]), '<missing uid>')


def _assert(cond: tf.Tensor, uid: tf.Tensor, message: str, *data):
  """An assertion whose message starts with the example's uid."""
  return tf.debugging.Assert(
      cond, [tf.strings.join([_who(uid), ': ', message])] + list(data))


def decode_image(data: tf.Tensor, uid: tf.Tensor,
                 image_size: int) -> tf.Tensor:
  """Decodes an image to float32 [S, S, 3] in [-1, 1].

  Grayscale is replicated to RGB; alpha is dropped; CMYK JPEGs and 16-bit
  PNGs are converted by the decoder.

  Args:
    data: scalar string tensor (JPEG/PNG/GIF/BMP bytes) or a decoded uint8
      [h, w, 3] tensor (TFDS source).
    uid: scalar string tensor, named in the error message.
    image_size: output side S.

  Returns:
    The resized image (bilinear, antialiased), scaled to [-1, 1].

  Raises:
    tf.errors.InvalidArgumentError (when run): the bytes are not an image of
      a known format; the message names the uid.
  """
  if data.dtype == tf.string:
    head = tf.strings.substr(data, 0, 4)
    known = tf.reduce_any(tf.stack(
        [tf.strings.substr(head, 0, len(m)) == m for m in IMAGE_MAGIC]))
    check = _assert(known, uid, 'missing or undecodable image: expected '
                    'JPEG, PNG, GIF or BMP bytes')
    with tf.control_dependencies([check]):
      img = tf.io.decode_image(data, channels=3, expand_animations=False)
  else:
    img = data
  img.set_shape([None, None, 3])
  img = tf.image.resize(tf.cast(img, tf.float32), [image_size, image_size],
                        method='bilinear', antialias=True)
  return tf.clip_by_value(img / 127.5 - 1.0, -1.0, 1.0)


def decode_heatmap(data: tf.Tensor, heatmap_size: int,
                   uid: tf.Tensor | None = None,
                   name: str = 'heatmap') -> tf.Tensor:
  """Decodes a release heatmap to float32 [H, H] in [0, 1] (area resize).

  Args:
    data: the encoded single-channel PNG (scalar string) or a decoded uint8
      [512, 512, 1] tensor (TFDS source).
    heatmap_size: output side H.
    uid: the example's uid, for the error message.
    name: the field name, for the error message.

  Returns:
    The heatmap, area-resized from 512x512.

  Raises:
    tf.errors.InvalidArgumentError (when run): not a decodable image, or
      not 512x512; the message names the uid and the field.
  """
  uid = tf.constant(b'') if uid is None else uid
  size = release.HEATMAP_SIZE
  if data.dtype == tf.string:
    check = _assert(tf.strings.length(data) > 0, uid, f'missing {name}')
    with tf.control_dependencies([check]):
      hm = tf.io.decode_image(data, channels=1, expand_animations=False)
  else:
    hm = data
  hm.set_shape([None, None, 1])
  shape = tf.shape(hm)
  check = _assert(tf.reduce_all(shape[:2] == [size, size]), uid,
                  f'{name} must be {size}x{size} single-channel, got shape',
                  shape)
  with tf.control_dependencies([check]):
    hm = tf.cast(hm, tf.float32) / 255.0
  hm = tf.image.resize(hm, [heatmap_size, heatmap_size], method='area')
  return tf.clip_by_value(hm[:, :, 0], 0.0, 1.0)


def stack_scores(ex: dict[str, tf.Tensor],
                 uid: tf.Tensor | None = None) -> tf.Tensor:
  """float32 [4]: plausibility, alignment, aesthetics, overall.

  Raises:
    tf.errors.InvalidArgumentError (when run): a score is missing, not
      finite or outside [0, 1]; the message names the uid.
  """
  uid = tf.constant(b'') if uid is None else uid
  scores = tf.stack([tf.cast(ex[n], tf.float32) for n in release.SCORE_FIELDS])
  ok = tf.reduce_all(tf.math.is_finite(scores) & (scores >= -1e-5) &
                     (scores <= 1 + 1e-5))
  check = _assert(ok, uid, 'missing score or score not finite in [0, 1] ('
                  + ', '.join(release.SCORE_FIELDS) + ')')
  with tf.control_dependencies([check]):
    return tf.clip_by_value(scores, 0.0, 1.0)


def _nonempty(text: tf.Tensor, uid: tf.Tensor, name: str) -> tf.Tensor:
  check = _assert(tf.strings.length(tf.strings.strip(text)) > 0, uid,
                  f'missing or empty {name}')
  with tf.control_dependencies([check]):
    return tf.identity(text)


def rahf_features(dataset: tf.data.Dataset, image_size: int,
                  heatmap_size: int) -> tf.data.Dataset:
  """Maps joined (or TFDS) examples to the multi-head model features.

  Args:
    dataset: examples parsed with `feature_description()`, or `richhf18k`
      TFDS examples.
    image_size: side of the output image.
    heatmap_size: side of the output heatmaps.

  Returns:
    The dataset of model features (see the module docstring).
  """

  def fn(ex):
    uid = ex[release.UID]
    check = _assert(tf.strings.length(uid) > 0, uid, 'missing uid field')
    with tf.control_dependencies([check]):
      uid = tf.identity(uid)
    return {
        'inputs': _nonempty(ex[release.CLEAN_PROMPT], uid,
                            release.CLEAN_PROMPT),
        'targets': _nonempty(ex[release.TARGET], uid, release.TARGET),
        IMAGE: decode_image(ex[release.IMAGE], uid, image_size),
        IMPLAUSIBILITY_HEATMAP: decode_heatmap(
            ex[release.ARTIFACT_MAP], heatmap_size, uid,
            release.ARTIFACT_MAP),
        MISALIGNMENT_HEATMAP: decode_heatmap(
            ex[release.MISALIGNMENT_MAP], heatmap_size, uid,
            release.MISALIGNMENT_MAP),
        SCORES: stack_scores(ex, uid),
        HEATMAP_WEIGHT: tf.constant([1.0]),
        SCORE_WEIGHT: tf.constant([1.0]),
    }

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


def caption_features(dataset: tf.data.Dataset, image_size: int,
                     heatmap_size: int, image_key: str = 'image',
                     caption_key: str = 'caption',
                     prompt: str = CAPTION_PROMPT) -> tf.data.Dataset:
  """Maps image-caption examples to the same model features as RichHF-18K.

  `inputs` = the fixed `prompt`, `targets` = the caption; heatmaps and
  scores are zeros with `heatmap_weight` = `score_weight` = 0, so a model
  that weights its head losses by them learns only the caption.

  Args:
    dataset: examples with an encoded (or decoded uint8) image under
      `image_key` and a caption string under `caption_key`.
    image_size: side of the output image.
    heatmap_size: side of the (zero) heatmaps.
    image_key: the image field.
    caption_key: the caption field.
    prompt: the encoder text of every example.

  Returns:
    The dataset of model features.
  """

  def fn(ex):
    uid = tf.strings.join(['caption example (', caption_key, ' ',
                           tf.strings.substr(ex[caption_key], 0, 40), ')'])
    zeros = tf.zeros([heatmap_size, heatmap_size], tf.float32)
    return {
        'inputs': tf.constant(prompt),
        'targets': _nonempty(ex[caption_key], uid, caption_key),
        IMAGE: decode_image(ex[image_key], uid, image_size),
        IMPLAUSIBILITY_HEATMAP: zeros,
        MISALIGNMENT_HEATMAP: zeros,
        SCORES: tf.zeros([4], tf.float32),
        HEATMAP_WEIGHT: tf.constant([0.0]),
        SCORE_WEIGHT: tf.constant([0.0]),
    }

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


# ----------------------------------------------------------------------------
# Truncation of long prompts / targets: counted and logged.
# ----------------------------------------------------------------------------

_TRUNCATED = collections.Counter()
_TRUNCATED_LOCK = threading.Lock()
_LOGGED_PER_FEATURE = 5


def truncation_counts() -> dict[str, int]:
  """Examples truncated so far in this process, per feature name."""
  with _TRUNCATED_LOCK:
    return dict(_TRUNCATED)


def reset_truncation_counts() -> None:
  with _TRUNCATED_LOCK:
    _TRUNCATED.clear()


def _note_truncated(feature, length, limit, text):
  feature = feature.numpy().decode()
  with _TRUNCATED_LOCK:
    _TRUNCATED[feature] += 1
    n = _TRUNCATED[feature]
  if n <= _LOGGED_PER_FEATURE or n % 1000 == 0:
    logging.warning(
        'truncated %s: %d tokens (with EOS) > sequence length %d; %d '
        'examples truncated so far: %r', feature, int(length), int(limit), n,
        text.numpy()[:80])
  return 0


def count_truncated(dataset: tf.data.Dataset, sequence_length=None,
                    features=('inputs', 'targets')) -> tf.data.Dataset:
  """Counts (and logs) examples whose tokens exceed the sequence length.

  Place after `seqio.preprocessors.tokenize` and before
  `append_eos_after_trim`, which then truncates them. The count is per
  process (`truncation_counts()`); a python callback runs only for the
  truncated examples.

  Args:
    dataset: tokenized examples.
    sequence_length: seqio's feature lengths (None: nothing is counted).
    features: the token features to check.

  Returns:
    The dataset, unchanged.
  """
  if not sequence_length:
    return dataset
  limits = {k: sequence_length[k] for k in features
            if sequence_length.get(k)}

  def fn(ex):
    deps = []
    for key, limit in limits.items():
      n = tf.size(ex[key]) + 1  # + EOS
      text = ex.get(f'{key}_pretokenized', tf.constant(''))
      deps.append(tf.cond(
          n > limit,
          lambda key=key, n=n, limit=limit, text=text: tf.py_function(
              _note_truncated, [key, n, limit, text], tf.int32),
          lambda: tf.constant(0)))
    with tf.control_dependencies(deps):
      return {k: tf.identity(v) for k, v in ex.items()}

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


# ----------------------------------------------------------------------------
# Augmented-prompt variant (paper Sec. 4.1.2).
# ----------------------------------------------------------------------------


def augmented_inputs(dataset: tf.data.Dataset, sequence_length=None, *,
                     prefix_ids: tuple[tuple[int, ...], ...],
                     input_length: int | None = None) -> tf.data.Dataset:
  """Adds `augmented_inputs` int32 [K, L]: each task prefix + the prompt.

  Row k is `prefix_ids[k]` followed by the prompt tokens (`inputs`), cut to
  L - 1 tokens, then EOS, then 0-padding to L = the `inputs` sequence
  length. SentencePiece pieces never cross a space, so row k equals the
  tokenization of `<prefix k> <clean prompt>`.

  Args:
    dataset: tokenized examples (before EOS is appended).
    sequence_length: seqio's feature lengths (supplies L).
    prefix_ids: the token ids of each task prefix, K rows.
    input_length: L when `sequence_length` is None.

  Returns:
    The dataset with the extra feature.

  Raises:
    ValueError: if no length is known.
  """
  length = (sequence_length or {}).get('inputs') or input_length
  if not length:
    raise ValueError('augmented_inputs needs the inputs sequence length')

  def fn(ex):
    rows = []
    prompt = tf.cast(ex['inputs'], tf.int32)
    for ids in prefix_ids:
      row = tf.concat([tf.constant(ids, tf.int32, [len(ids)]), prompt], 0)
      row = tf.concat([row[:length - 1], [EOS_ID]], 0)
      rows.append(tf.pad(row, [[0, length - tf.size(row)]]))
    out = dict(ex)
    out[AUGMENTED_INPUTS] = tf.ensure_shape(tf.stack(rows),
                                            [len(prefix_ids), length])
    return out

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


# ----------------------------------------------------------------------------
# Train-time augmentation (off by default; see pipeline.DataConfig.augment).
# ----------------------------------------------------------------------------

# 'flip': horizontal flip with probability 1/2. 'crop': a square crop of
# CROP_FRACTION of the side at a random place, resized back. 'flip_crop':
# both (crop, then flip).
AUGMENTATIONS = ('none', 'flip', 'crop', 'flip_crop')
CROP_FRACTION = (0.8, 1.0)
# The features that move together: the image and both heatmaps.
SPATIAL_FEATURES = (IMAGE, IMPLAUSIBILITY_HEATMAP, MISALIGNMENT_HEATMAP)


def check_augment(mode: str, name: str = 'augment') -> str:
  if mode not in AUGMENTATIONS:
    raise ValueError(f'{name}={mode!r}; expected one of {AUGMENTATIONS}')
  return mode


def _resample_axis(x: tf.Tensor, axis: int, start: tf.Tensor,
                   extent: tf.Tensor) -> tf.Tensor:
  """Bilinear resampling of [start, start + extent] of one axis to its size.

  The window is in fractions of the side, and output pixel j samples the
  input at `(start + (j + 0.5) / n * extent) * n - 0.5` (half-pixel centres,
  as `tf.image.resize`), clamped to the edge pixels. Fractions, not pixels,
  so the same window lands on the same content at any resolution: an image
  at S x S and a heatmap at H x H stay aligned.

  Args:
    x: a tensor of static rank.
    axis: the axis to resample.
    start: float32 scalar in [0, 1].
    extent: float32 scalar in (0, 1 - start].

  Returns:
    `x` with that axis resampled (same shape).
  """
  n = tf.shape(x)[axis]
  nf = tf.cast(n, tf.float32)
  src = start * nf + (tf.range(nf) + 0.5) * extent - 0.5
  src = tf.clip_by_value(src, 0.0, nf - 1.0)
  lo = tf.floor(src)
  frac = tf.reshape(src - lo, [-1] + [1] * (x.shape.rank - axis - 1))
  lo = tf.cast(lo, tf.int32)
  hi = tf.minimum(lo + 1, n - 1)
  a = tf.gather(x, lo, axis=axis)
  b = tf.gather(x, hi, axis=axis)
  return a + (b - a) * tf.cast(frac, x.dtype)


def augment_example(ex: dict[str, tf.Tensor], mode: str,
                    uniforms: tf.Tensor) -> dict[str, tf.Tensor]:
  """Applies one random flip / crop to the image and both heatmaps alike.

  Args:
    ex: features with `image` [S, S, 3] and the heatmaps [H, H] (other
      features pass through unchanged).
    mode: one of `AUGMENTATIONS`.
    uniforms: float32 [4] in [0, 1): flip coin, crop side, crop top, crop
      left.

  Returns:
    The augmented features.
  """
  check_augment(mode)
  out = dict(ex)
  if mode == 'none':
    return out
  flip = uniforms[0] < 0.5
  lo, hi = CROP_FRACTION
  side = lo + (hi - lo) * uniforms[1]
  top, left = (1.0 - side) * uniforms[2], (1.0 - side) * uniforms[3]
  for key in SPATIAL_FEATURES:
    x = ex[key]
    if mode in ('crop', 'flip_crop'):
      x = _resample_axis(_resample_axis(x, 0, top, side), 1, left, side)
    if mode in ('flip', 'flip_crop'):
      x = tf.cond(flip, lambda x=x: tf.reverse(x, [1]), lambda x=x: x)
    out[key] = tf.ensure_shape(x, ex[key].shape)
  return out


def augment(dataset: tf.data.Dataset, mode: str, seed: int, *,
            start: int = 0, salt: int = 0) -> tf.data.Dataset:
  """Augments each example with randomness fixed by its stream position.

  Example k of the dataset (position `start + k`) draws its flip and crop
  from a stateless seed derived from (`seed`, `salt`, position) only, so a
  stream rebuilt from a later position (a resumed run) augments every
  example exactly as the uninterrupted stream did.

  Args:
    dataset: features with `SPATIAL_FEATURES`.
    mode: one of `AUGMENTATIONS` ('none' returns `dataset` unchanged).
    seed: the stream's seed (the training shuffle seed).
    start: the position of the dataset's first example in the stream.
    salt: folded into the seed (e.g. the host index, so hosts differ).

  Returns:
    The augmented dataset.
  """
  if check_augment(mode) == 'none':
    return dataset
  base = tf.constant([seed, salt], tf.int64)

  def fn(position, ex):
    key = tf.random.experimental.stateless_fold_in(base, position)
    return augment_example(ex, mode, tf.random.stateless_uniform([4], key))

  return dataset.enumerate(start).map(
      fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
