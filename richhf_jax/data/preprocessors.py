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
"""seqio preprocessors for joined RichHF-18K examples (small pure functions).

Input: a joined shard example (docs/architecture.md) parsed to tensors.
Output of `rahf_features` (the multi-head task's model features, before
tokenization): `inputs` (clean prompt), `targets` (marked target), `image`
float32 [S, S, 3] in [-1, 1], `implausibility_heatmap` and
`misalignment_heatmap` float32 [H, H] in [0, 1], `scores` float32 [4]
(plausibility, alignment, aesthetics, overall).
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from richhf_jax.data import release  # pylint: disable=g-import-not-at-top

# Leading bytes of the formats tf.io.decode_image reads.
_MAGIC = (b'\xff\xd8\xff', b'\x89PNG', b'GIF8', b'BM')

IMAGE = 'image'
IMPLAUSIBILITY_HEATMAP = 'implausibility_heatmap'
MISALIGNMENT_HEATMAP = 'misalignment_heatmap'
SCORES = 'scores'


def feature_description() -> dict[str, tf.io.FixedLenFeature]:
  """The `tf.io.parse_single_example` spec of the joined-shard fields used."""
  desc = {name: tf.io.FixedLenFeature([], tf.string)
          for name in (release.IMAGE, release.UID, release.CLEAN_PROMPT,
                       release.TARGET, release.ARTIFACT_MAP,
                       release.MISALIGNMENT_MAP)}
  for name in release.SCORE_FIELDS:
    desc[name] = tf.io.FixedLenFeature([], tf.float32)
  return desc


def decode_image(data: tf.Tensor, uid: tf.Tensor,
                 image_size: int) -> tf.Tensor:
  """Decodes JPEG/PNG/GIF/BMP bytes to float32 [S, S, 3] in [-1, 1].

  Grayscale is replicated to RGB and an alpha channel dropped.

  Args:
    data: scalar string tensor, the encoded image.
    uid: scalar string tensor, named in the error message.
    image_size: output side S.

  Returns:
    The resized image (bilinear, antialiased), scaled to [-1, 1].

  Raises:
    tf.errors.InvalidArgumentError (when run): the bytes are not an image of
      a known format; the message names the uid.
  """
  head = tf.strings.substr(data, 0, 4)
  known = tf.reduce_any(tf.stack(
      [tf.strings.substr(head, 0, len(m)) == m for m in _MAGIC]))
  check = tf.debugging.Assert(known, [
      tf.strings.join(['undecodable image for uid ', uid,
                       ': expected JPEG, PNG, GIF or BMP bytes'])])
  with tf.control_dependencies([check]):
    img = tf.io.decode_image(data, channels=3, expand_animations=False)
  img.set_shape([None, None, 3])
  img = tf.image.resize(tf.cast(img, tf.float32), [image_size, image_size],
                        method='bilinear', antialias=True)
  return tf.clip_by_value(img / 127.5 - 1.0, -1.0, 1.0)


def decode_heatmap(data: tf.Tensor, heatmap_size: int) -> tf.Tensor:
  """Decodes a release heatmap PNG to float32 [H, H] in [0, 1] (area resize)."""
  hm = tf.io.decode_png(data, channels=1)
  hm = tf.cast(hm, tf.float32) / 255.0
  hm = tf.image.resize(hm, [heatmap_size, heatmap_size], method='area')
  return tf.clip_by_value(hm[:, :, 0], 0.0, 1.0)


def stack_scores(ex: dict[str, tf.Tensor]) -> tf.Tensor:
  """float32 [4]: plausibility, alignment, aesthetics, overall."""
  return tf.stack([tf.cast(ex[n], tf.float32) for n in release.SCORE_FIELDS])


def rahf_features(dataset: tf.data.Dataset, image_size: int,
                  heatmap_size: int) -> tf.data.Dataset:
  """Maps parsed joined examples to the multi-head model features.

  Args:
    dataset: examples parsed with `feature_description()`.
    image_size: side of the output image.
    heatmap_size: side of the output heatmaps.

  Returns:
    The dataset of model features (see the module docstring).
  """

  def fn(ex):
    return {
        'inputs': ex[release.CLEAN_PROMPT],
        'targets': ex[release.TARGET],
        IMAGE: decode_image(ex[release.IMAGE], ex[release.UID], image_size),
        IMPLAUSIBILITY_HEATMAP: decode_heatmap(ex[release.ARTIFACT_MAP],
                                               heatmap_size),
        MISALIGNMENT_HEATMAP: decode_heatmap(ex[release.MISALIGNMENT_MAP],
                                             heatmap_size),
        SCORES: stack_scores(ex),
    }

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


# Augmented-prompt variant: one example per output (paper Sec. 4.1). The
# output index order is that of `release.AUGMENTED_PREFIXES`.
AUGMENTED_OUTPUTS = tuple(release.AUGMENTED_PREFIXES)
HEATMAP = 'heatmap'
SCORE = 'score'
OUTPUT_ID = 'output_id'


def augment_prompts(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Expands each multi-head example into one example per output.

  Each output gets `inputs` = `<prefix> <clean prompt>` (prefixes in
  `release.AUGMENTED_PREFIXES`), `heatmap` [H, H] (the requested heatmap,
  zeros for other outputs), `score` [1] (the requested score, 0 otherwise),
  `output_id` int32 [1], and `targets` = the marked target (the decoder's
  text target; only the keywords output trains on it).

  Args:
    dataset: the output of `rahf_features`.

  Returns:
    A dataset 7 times as long, outputs of one example adjacent.
  """

  def fn(ex):
    zeros = tf.zeros_like(ex[IMPLAUSIBILITY_HEATMAP])
    heatmaps, scores = [], []
    for name in AUGMENTED_OUTPUTS:
      heatmaps.append({'implausibility': ex[IMPLAUSIBILITY_HEATMAP],
                       'misalignment': ex[MISALIGNMENT_HEATMAP]}.get(
                           name, zeros))
      idx = ('plausibility', 'alignment', 'aesthetics', 'overall')
      scores.append(ex[SCORES][idx.index(name)] if name in idx
                    else tf.constant(0.0))
    n = len(AUGMENTED_OUTPUTS)
    prefixes = tf.constant([release.AUGMENTED_PREFIXES[k] + ' '
                            for k in AUGMENTED_OUTPUTS])
    return tf.data.Dataset.from_tensor_slices({
        'inputs': prefixes + ex['inputs'],
        'targets': tf.repeat(ex['targets'][None], n),
        IMAGE: tf.repeat(ex[IMAGE][None], n, axis=0),
        HEATMAP: tf.stack(heatmaps),
        SCORE: tf.stack(scores)[:, None],
        OUTPUT_ID: tf.range(n, dtype=tf.int32)[:, None],
    })

  return dataset.flat_map(fn)

