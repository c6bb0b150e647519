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
"""Test helpers for the data package: tiny joined datasets, crafted records.

`synthetic_joined()` generates a tiny synthetic RichHF-18K, joins it and
caches the paths for the process, so the data tests share one copy.
`joined_example(...)` builds one valid joined record whose fields a test can
break, and `encode_image(...)` writes images in the modes real data has.
"""

import functools
import io
import os
import tempfile
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from richhf_jax.data import join
from richhf_jax.data import release
from richhf_jax.data import synthetic


@functools.lru_cache(maxsize=None)
def synthetic_joined(num_train: int = 8, num_dev: int = 4, num_test: int = 4,
                     seed: int = 2, image_sizes: Sequence[int] = (64, 80)
                     ) -> dict[str, str]:
  """Generates + joins a tiny synthetic set once per process.

  Returns:
    {'root', 'synth', 'release', 'joined', 'vocab'} paths.
  """
  root = tempfile.mkdtemp(prefix='richhf_data_')
  synth = os.path.join(root, 'synth')
  synthetic.generate(synth, num_train=num_train, num_dev=num_dev,
                     num_test=num_test, seed=seed,
                     image_sizes=tuple(image_sizes))
  joined = os.path.join(root, 'joined')
  join.run_join(os.path.join(synth, 'richhf18k'),
                os.path.join(synth, 'pickapic', '*.parquet'), joined,
                num_shards=2, progress=False)
  return dict(root=root, synth=synth,
              release=os.path.join(synth, 'richhf18k'), joined=joined,
              vocab=os.path.join(synth, 'vocab', 'spm.model'))


def encode_image(mode: str = 'RGB', fmt: str = 'JPEG', side: int = 24,
                 seed: int = 0) -> bytes:
  """A random image in a PIL `mode` ('RGB', 'L', 'RGBA', 'CMYK', 'I;16')."""
  rng = np.random.default_rng(seed)
  rgb = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
  if mode == 'I;16':
    img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
  else:
    img = Image.fromarray(rgb).convert(mode)
  buf = io.BytesIO()
  img.save(buf, format=fmt)
  return buf.getvalue()


def heatmap_png(side: int = release.HEATMAP_SIZE, value: int = 0) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((side, side), value, np.uint8), mode='L').save(
      buf, format='PNG')
  return buf.getvalue()


def joined_example(uid: str = 'uid0', prompt: str = 'a red cat',
                   labels: Optional[Sequence[int]] = None,
                   image: Optional[bytes] = None,
                   scores: Optional[dict[str, float]] = None,
                   artifact_map: Optional[bytes] = None,
                   drop: Sequence[str] = (),
                   overrides: Optional[dict[str, Any]] = None):
  """A joined `tf.train.Example`, valid unless the arguments break it.

  Args:
    uid: the Pick-a-Pic uid (filename `<uid>.png`).
    prompt: the caption.
    labels: word labels (default: all aligned).
    image: encoded image bytes (default: an RGB JPEG).
    scores: the four score fields (default 0.5 each).
    artifact_map: encoded implausibility heatmap (default all zero).
    drop: fields to delete afterwards.
    overrides: bytes fields to overwrite afterwards (name -> bytes).

  Returns:
    The example.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  words = release.prompt_words(prompt)
  labels = [1] * len(words) if labels is None else list(labels)
  example = release.release_example(
      filename=f'{uid}.png',
      scores=scores or {n: 0.5 for n in release.SCORE_FIELDS},
      artifact_map_png=artifact_map or heatmap_png(),
      misalignment_map_png=heatmap_png(), labels=labels)
  feats = example.features.feature
  extra = {release.IMAGE: image if image is not None else encode_image(),
           release.UID: uid.encode(), release.PROMPT: prompt.encode(),
           release.CLEAN_PROMPT: ' '.join(words).encode(),
           release.TARGET: (release.marked_target(words, labels)
                            if len(words) == len(labels) else '').encode()}
  extra.update(overrides or {})
  for name, value in extra.items():
    feats[name].CopyFrom(tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[value])))
  for name in drop:
    del feats[name]
  return example


def write_records(path: str, examples) -> str:
  """Writes examples (or raw bytes) to a TFRecord file; returns the path."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path) as w:
    for ex in examples:
      w.write(ex if isinstance(ex, bytes) else ex.SerializeToString())
  return path
