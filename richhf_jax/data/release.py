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
"""The RichHF-18K release: schema, prompt words, marked targets, parsing.

The release (google-research-datasets/richhf-18k) holds three TFRecord files of
`tf.train.Example`, each with exactly the 8 fields of `RELEASE_FIELDS`
(SPEC.md section 2). It holds no images and no prompts: those come from
Pick-a-Pic v1 and are joined in by `richhf_jax.data.join`.

Prompt words (the unit of `prompt_misalignment_label`) are the pieces of the
prompt split on any of `, . ? ! " : ;` and space, empty pieces dropped. The
marked target appends `_0` to every misaligned word (label 0):
prompt `a yellow cat.` with labels `1 0 1` -> clean prompt `a yellow cat`,
target `a yellow_0 cat`.

`parse_release_example` turns one serialized example into a typed
`ReleaseRecord`, raising `CorruptRecordError` (structural problems) or
`LabelCountMismatchError` (labels do not pair with the prompt's words; a known
property of the real data that callers count and skip) with the filename and
the problem in the message.
"""

import dataclasses
import io
import math
import re
from typing import Optional, Sequence

import numpy as np
from PIL import Image

FILENAME = 'filename'
AESTHETICS_SCORE = 'aesthetics_score'
ARTIFACT_SCORE = 'artifact_score'
MISALIGNMENT_SCORE = 'misalignment_score'
OVERALL_SCORE = 'overall_score'
ARTIFACT_MAP = 'artifact_map'
MISALIGNMENT_MAP = 'misalignment_map'
PROMPT_MISALIGNMENT_LABEL = 'prompt_misalignment_label'

# Score fields in the project-wide order: plausibility, alignment, aesthetics,
# overall (docs/architecture.md, "Output names").
SCORE_FIELDS = (ARTIFACT_SCORE, MISALIGNMENT_SCORE, AESTHETICS_SCORE,
                OVERALL_SCORE)
HEATMAP_FIELDS = (ARTIFACT_MAP, MISALIGNMENT_MAP)
BYTES_FIELDS = (FILENAME, ARTIFACT_MAP, MISALIGNMENT_MAP,
                PROMPT_MISALIGNMENT_LABEL)
FLOAT_FIELDS = SCORE_FIELDS
RELEASE_FIELDS = (FILENAME, AESTHETICS_SCORE, ARTIFACT_SCORE,
                  MISALIGNMENT_SCORE, OVERALL_SCORE, ARTIFACT_MAP,
                  MISALIGNMENT_MAP, PROMPT_MISALIGNMENT_LABEL)

# Fields the join adds to each release example (docs/architecture.md).
IMAGE = 'image'
UID = 'uid'
PROMPT = 'prompt'
CLEAN_PROMPT = 'clean_prompt'
TARGET = 'target'
JOINED_EXTRA_FIELDS = (IMAGE, UID, PROMPT, CLEAN_PROMPT, TARGET)
JOINED_FIELDS = RELEASE_FIELDS + JOINED_EXTRA_FIELDS

HEATMAP_SIZE = 512
# The augmented-prompt variant (paper Sec. 4.1) asks for one output per
# example, naming it in front of the prompt: `<prefix> <clean prompt>`.
AUGMENTED_PREFIXES = {
    'implausibility': 'implausibility heatmap',
    'misalignment': 'misalignment heatmap',
    'plausibility': 'plausibility score',
    'alignment': 'alignment score',
    'aesthetics': 'aesthetics score',
    'overall': 'overall score',
    'keywords': 'misaligned keywords',
}
MISALIGNED_SUFFIX = '_0'
_SPLIT_RE = re.compile(r'[,.?!":; ]')
# Scores are (mean Likert - 1) / 4; allow float32 rounding at the ends.
_SCORE_TOLERANCE = 1e-5


class ReleaseError(ValueError):
  """Base class of the errors raised while reading release examples."""


class CorruptRecordError(ReleaseError):
  """A structurally broken record: unreadable, missing field, bad heatmap."""


class LabelCountMismatchError(ReleaseError):
  """The number of labels differs from the number of prompt words."""


def prompt_words(prompt: str) -> list[str]:
  """Splits a prompt into the words `prompt_misalignment_label` labels.

  Args:
    prompt: the Pick-a-Pic caption.

  Returns:
    The pieces of `prompt` split on `, . ? ! " : ;` and space, empty pieces
    dropped.
  """
  return [w for w in _SPLIT_RE.split(prompt) if w]


def clean_prompt(prompt: str) -> str:
  """Returns the prompt words joined by one space."""
  return ' '.join(prompt_words(prompt))


def marked_target(words: Sequence[str], labels: Sequence[int]) -> str:
  """Writes the prompt words back with each misaligned word marked.

  Args:
    words: prompt words (see `prompt_words`).
    labels: one label per word, 1 = aligned, 0 = misaligned.

  Returns:
    The words joined by one space, `_0` appended to each misaligned word.

  Raises:
    LabelCountMismatchError: if `len(words) != len(labels)`.
    ValueError: if a label is not 0 or 1.
  """
  if len(words) != len(labels):
    raise LabelCountMismatchError(
        f'expected one label per prompt word, got {len(labels)} labels for '
        f'{len(words)} words {list(words)!r}')
  out = []
  for word, label in zip(words, labels):
    if label not in (0, 1):
      raise ValueError(f'label for word {word!r} must be 0 or 1, got {label!r}')
    out.append(word + MISALIGNED_SUFFIX if label == 0 else word)
  return ' '.join(out)


def parse_marked(text: str) -> tuple[list[str], list[int]]:
  """Inverts `marked_target`.

  A word ending in `_0` is read as misaligned; a genuine prompt word ending in
  `_0` is therefore ambiguous (none occurs in RichHF-18K's vocabulary of
  interest, and the decoder output is parsed the same way as the target).

  Args:
    text: a marked target or a decoded prediction.

  Returns:
    (words, labels) with labels 1 = aligned, 0 = misaligned.
  """
  words, labels = [], []
  for piece in text.split():
    if piece.endswith(MISALIGNED_SUFFIX) and len(piece) > len(
        MISALIGNED_SUFFIX):
      words.append(piece[:-len(MISALIGNED_SUFFIX)])
      labels.append(0)
    else:
      words.append(piece)
      labels.append(1)
  return words, labels


def uid_from_filename(filename: str) -> str:
  """The Pick-a-Pic image uid: the file name's stem (`<uid>.png` -> `<uid>`)."""
  base = filename.replace('\\', '/').rsplit('/', 1)[-1]
  return base.rsplit('.', 1)[0] if '.' in base else base


@dataclasses.dataclass(frozen=True)
class ReleaseRecord:
  """One parsed RichHF-18K release example.

  Attributes:
    filename: the Pick-a-Pic file name (`<uid>.png`).
    uid: the Pick-a-Pic image uid (stem of `filename`).
    aesthetics_score: in [0, 1].
    artifact_score: plausibility in [0, 1] (high = few artifacts).
    misalignment_score: alignment in [0, 1] (high = well aligned).
    overall_score: in [0, 1].
    labels: one 0/1 label per prompt word, 0 = misaligned.
    artifact_map_png: the encoded implausibility heatmap, as released.
    misalignment_map_png: the encoded misalignment heatmap, as released.
    artifact_map: decoded uint8 [512, 512], or None if not decoded.
    misalignment_map: decoded uint8 [512, 512], or None if not decoded.
  """
  filename: str
  uid: str
  aesthetics_score: float
  artifact_score: float
  misalignment_score: float
  overall_score: float
  labels: tuple[int, ...]
  artifact_map_png: bytes
  misalignment_map_png: bytes
  artifact_map: Optional[np.ndarray] = None
  misalignment_map: Optional[np.ndarray] = None

  @property
  def scores(self) -> tuple[float, float, float, float]:
    """(plausibility, alignment, aesthetics, overall)."""
    return (self.artifact_score, self.misalignment_score,
            self.aesthetics_score, self.overall_score)


def decode_heatmap(data: bytes, *, name: str = 'heatmap',
                   filename: str = '?') -> np.ndarray:
  """Decodes and checks one release heatmap.

  Args:
    data: the encoded image bytes.
    name: the field name, for error messages.
    filename: the record's filename, for error messages.

  Returns:
    uint8 array [512, 512].

  Raises:
    CorruptRecordError: if undecodable, not single-channel 8-bit, or not
      512x512.
  """
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      mode, size = img.mode, img.size
      arr = np.asarray(img)
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise CorruptRecordError(
        f'{filename}: {name} is not a decodable image ({len(data)} bytes): '
        f'{e}') from e
  if mode != 'L':
    raise CorruptRecordError(
        f'{filename}: {name} must be a single-channel 8-bit image (mode L), '
        f'got mode {mode!r}')
  if size != (HEATMAP_SIZE, HEATMAP_SIZE):
    raise CorruptRecordError(
        f'{filename}: {name} must be {HEATMAP_SIZE}x{HEATMAP_SIZE}, got '
        f'{size[0]}x{size[1]}')
  return arr.astype(np.uint8, copy=False)


def parse_labels(text: str, *, filename: str = '?') -> tuple[int, ...]:
  """Parses `prompt_misalignment_label` ('1 0 1') into a tuple of ints.

  Raises:
    CorruptRecordError: if a token is not `0` or `1`.
  """
  tokens = text.split()
  bad = [t for t in tokens if t not in ('0', '1')]
  if bad:
    raise CorruptRecordError(
        f'{filename}: {PROMPT_MISALIGNMENT_LABEL} must be space-separated 0/1 '
        f'tokens, got {bad[:3]!r} in {text[:80]!r}')
  return tuple(int(t) for t in tokens)


def check_label_count(record: ReleaseRecord, prompt: str) -> list[str]:
  """Checks that the record's labels pair with the prompt's words.

  Args:
    record: a parsed release record.
    prompt: its Pick-a-Pic caption.

  Returns:
    The prompt words.

  Raises:
    LabelCountMismatchError: if the counts differ.
  """
  words = prompt_words(prompt)
  if len(words) != len(record.labels):
    raise LabelCountMismatchError(
        f'{record.filename}: {len(record.labels)} labels in '
        f'{PROMPT_MISALIGNMENT_LABEL} but the prompt has {len(words)} words '
        f'(prompt {prompt[:80]!r})')
  return words


def _feature_value(features, name, filename):
  """Returns the single value of a bytes/float feature, or raises."""
  if name not in features:
    raise CorruptRecordError(f'{filename}: missing field {name!r}')
  feature = features[name]
  kind = feature.WhichOneof('kind')
  expected = 'float_list' if name in FLOAT_FIELDS else 'bytes_list'
  if kind != expected:
    raise CorruptRecordError(
        f'{filename}: field {name!r} must be a {expected}, got {kind}')
  values = getattr(feature, kind).value
  if len(values) != 1:
    raise CorruptRecordError(
        f'{filename}: field {name!r} must hold exactly one value, got '
        f'{len(values)}')
  return values[0]


def example_from_bytes(serialized: bytes):
  """Parses a serialized `tf.train.Example` (raises CorruptRecordError)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    return tf.train.Example.FromString(serialized)
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise CorruptRecordError(
        f'record of {len(serialized)} bytes is not a tf.train.Example: '
        f'{e}') from e


def parse_release_example(serialized, *, prompt: Optional[str] = None,
                          decode_heatmaps: bool = True) -> ReleaseRecord:
  """Parses and checks one release example.

  Args:
    serialized: the serialized `tf.train.Example` bytes, or an already parsed
      `tf.train.Example`. Extra fields (a joined shard's) are ignored.
    prompt: the caption, if known; then the label count is checked.
    decode_heatmaps: decode (and check size/channels of) both heatmaps.

  Returns:
    The parsed `ReleaseRecord`.

  Raises:
    CorruptRecordError: unreadable record, missing field, wrong type, bad
      heatmap, score non-finite or outside [0, 1], label not 0/1.
    LabelCountMismatchError: `prompt` given and its word count differs from
      the number of labels.
  """
  if isinstance(serialized, (bytes, bytearray)):
    example = example_from_bytes(bytes(serialized))
  else:
    example = serialized
  features = example.features.feature
  filename = '<no filename>'
  if FILENAME in features:
    try:
      filename = _feature_value(features, FILENAME, filename).decode(
          'utf-8', 'replace')
    except CorruptRecordError:
      pass
  values = {n: _feature_value(features, n, filename) for n in RELEASE_FIELDS}
  scores = {}
  for name in SCORE_FIELDS:
    v = float(values[name])
    if not math.isfinite(v) or not (
        -_SCORE_TOLERANCE <= v <= 1 + _SCORE_TOLERANCE):
      raise CorruptRecordError(
          f'{filename}: {name} must be a finite value in [0, 1], got {v}')
    scores[name] = min(max(v, 0.0), 1.0)
  try:
    label_text = values[PROMPT_MISALIGNMENT_LABEL].decode('ascii')
  except UnicodeDecodeError as e:
    raise CorruptRecordError(
        f'{filename}: {PROMPT_MISALIGNMENT_LABEL} is not ASCII') from e
  labels = parse_labels(label_text, filename=filename)
  maps = {n: None for n in HEATMAP_FIELDS}
  if decode_heatmaps:
    maps = {n: decode_heatmap(values[n], name=n, filename=filename)
            for n in HEATMAP_FIELDS}
  record = ReleaseRecord(
      filename=filename,
      uid=uid_from_filename(filename),
      labels=labels,
      artifact_map_png=values[ARTIFACT_MAP],
      misalignment_map_png=values[MISALIGNMENT_MAP],
      artifact_map=maps[ARTIFACT_MAP],
      misalignment_map=maps[MISALIGNMENT_MAP],
      **scores)
  if prompt is not None:
    check_label_count(record, prompt)
  return record


def release_example(*, filename: str, scores: dict[str, float],
                    artifact_map_png: bytes, misalignment_map_png: bytes,
                    labels: Sequence[int]):
  """Builds a `tf.train.Example` in the exact release schema.

  Args:
    filename: `<uid>.png`.
    scores: the four score fields by name, each in [0, 1].
    artifact_map_png: encoded 512x512 single-channel heatmap.
    misalignment_map_png: same for misalignment.
    labels: one 0/1 label per prompt word.

  Returns:
    The `tf.train.Example` with exactly the 8 release fields.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def _bytes(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

  def _float(v):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

  feature = {
      FILENAME: _bytes(filename.encode('utf-8')),
      ARTIFACT_MAP: _bytes(artifact_map_png),
      MISALIGNMENT_MAP: _bytes(misalignment_map_png),
      PROMPT_MISALIGNMENT_LABEL: _bytes(
          ' '.join(str(int(l)) for l in labels).encode('ascii')),
  }
  for name in SCORE_FIELDS:
    feature[name] = _float(float(scores[name]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


# ----------------------------------------------------------------------------
# Images (Pick-a-Pic bytes).
# ----------------------------------------------------------------------------

# Formats `tf.io.decode_image` reads (and the seqio preprocessors accept).
SUPPORTED_IMAGE_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP')


class CorruptImageError(ReleaseError):
  """Image bytes that do not decode completely, or of an unsupported format."""


def check_image(data: bytes, *, uid: str = '?') -> tuple[str, str,
                                                         tuple[int, int]]:
  """Fully decodes an image (catching truncation) and checks its format.

  Every mode TensorFlow turns into RGB is accepted: RGB, grayscale, alpha
  (dropped), palette, CMYK JPEG, 16-bit PNG.

  Args:
    data: the encoded image.
    uid: named in the error message.

  Returns:
    (format, mode, (width, height)) as PIL reports them.

  Raises:
    CorruptImageError: empty, undecodable, truncated, or not one of
      SUPPORTED_IMAGE_FORMATS.
  """
  if not data:
    raise CorruptImageError(f'uid {uid}: empty image')
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      fmt, mode, size = img.format, img.mode, img.size
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise CorruptImageError(
        f'uid {uid}: image of {len(data)} bytes does not decode: {e}') from e
  if fmt not in SUPPORTED_IMAGE_FORMATS:
    raise CorruptImageError(
        f'uid {uid}: image format {fmt} is not supported; expected one of '
        f'{SUPPORTED_IMAGE_FORMATS}')
  return fmt, mode, size


def rgb_image_bytes(data: bytes, *, uid: str = '?') -> bytes:
  """The image as 8-bit RGB JPEG/PNG bytes (unchanged when already so).

  RGB or grayscale JPEG and PNG are returned as they are (no recompression);
  any other mode or format is converted to RGB (16-bit samples scaled to 8
  bits, alpha dropped, CMYK converted) and written as PNG.

  Raises:
    CorruptImageError: see `check_image`.
  """
  fmt, mode, _ = check_image(data, uid=uid)
  if fmt in ('JPEG', 'PNG') and mode in ('RGB', 'L'):
    return data
  with Image.open(io.BytesIO(data)) as img:
    if mode.startswith('I'):
      arr = np.asarray(img).astype(np.int64)
      shift = 8 if mode.startswith('I;16') else 0  # 16-bit -> 8-bit.
      img = Image.fromarray(np.clip(arr >> shift, 0, 255).astype(np.uint8))
    elif mode in ('RGBA', 'LA', 'PA') or (mode == 'P' and 'transparency'
                                          in img.info):
      img = img.convert('RGBA').convert('RGB')
    img = img.convert('RGB')
    buf = io.BytesIO()
    img.save(buf, format='PNG')
  return buf.getvalue()
