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
"""Synthetic RichHF-18K + Pick-a-Pic: the real data's layout on toy scenes.

Writes what a user of the real data has before the join, so the same code
path (join, validate, seqio tasks, training) runs end to end on CPU:

  DIR/richhf18k/{train,dev,test}.tfrecord   release schema only (8 fields)
  DIR/pickapic/{train,test}-{i:05d}-of-{n:05d}.parquet
                                            Pick-a-Pic-style rows, shuffled
  DIR/vocab/spm.model (+ .vocab)            SentencePiece on prompts+targets
  DIR/meta/{split}.jsonl                    planted defects (debugging only)

Scenes. A prompt grammar of 1-3 phrases, at most 3 objects in all:
`[a|two|three] [small|big] <color> <shape>[s] [on the left|...]`, joined by
`,` and `and`, optionally `on a <color> background`, optionally ending in `.`;
e.g. `a red circle and two blue squares on a green background`. Objects sit
in the cells of a 3x3 grid, 18-30% of the image side each (visible at 64 px).

Misalignment (the image contradicts the prompt): a phrase drawn in the wrong
color (marks the color word), the wrong shape (marks the shape word), at the
wrong position (marks the position word), with one object fewer (marks the
count word, or the shape word when the phrase's only object is omitted), or
a wrong background color (marks the background color word). Wrong color,
shape and position put points on the offending objects; omissions and the
background have no region to point at.

Implausibility (artifacts): 0-2 local distortions, each about a fifth of the
image side: `noise` (a disc of random pixels), `scramble` (a patch whose
blocks are permuted), `smear` (a patch whose rows are jaggedly shifted) and
`broken` (an object's lower half displaced, with a crack).

Annotation, as in the paper (Sec. 3): three raters each put one point on each
defect they notice (each misses one with probability 0.15; positions jitter);
each point becomes a disc of radius 1/20 of the image height (25.6 px on the
512x512 map); the heatmap is the mean over raters, so its uint8 values are
0, 85, 170 and 255. Each rater gives 1-5 Likert scores: plausibility falls
with the artifacts that rater saw, alignment with the misaligned words that
rater saw, aesthetics follows object/background contrast, the number of
distinct colors and clutter, overall mixes the three; each with rater noise.
The release scores are (mean - 1) / 4.

Pick-a-Pic rows hold two images generated for the same caption: every
labeled image is paired with an unlabeled one (a different rendering of the
same prompt), a few labeled images appear in two rows, and some rows hold
two unlabeled images. Train and dev images go to Pick-a-Pic's train split,
test images to its test split. Everything is a deterministic function of the
seed.

Usage:
  python -m richhf_jax.data.synthetic --out_dir /tmp/synth \
      --num_train 2000 --num_dev 200 --num_test 200 --seed 0
"""

import argparse
import dataclasses
import io
import json
import math
import multiprocessing
import os
import sys
import time
import uuid
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw

from richhf_jax.data import release

COLORS = {
    'red': (215, 40, 40),
    'green': (40, 165, 60),
    'blue': (40, 80, 215),
    'yellow': (240, 210, 40),
    'purple': (135, 55, 175),
    'orange': (245, 135, 25),
    'white': (245, 245, 245),
    'black': (25, 25, 25),
}
# Background used when the prompt names none.
DEFAULT_BACKGROUNDS = ((150, 150, 150), (200, 195, 185), (90, 100, 110))
SHAPES = ('circle', 'square', 'triangle', 'diamond')
COUNT_WORDS = {1: 'a', 2: 'two', 3: 'three'}  # 'an' before a vowel.
SIZES = {'small': 0.18, None: 0.25, 'big': 0.30}
# Position phrase -> allowed grid cells (row, col) of a 3x3 grid.
POSITIONS = {
    ('on', 'the', 'left'): [(r, 0) for r in range(3)],
    ('on', 'the', 'right'): [(r, 2) for r in range(3)],
    ('at', 'the', 'top'): [(0, c) for c in range(3)],
    ('at', 'the', 'bottom'): [(2, c) for c in range(3)],
}
OPPOSITE = {'left': ('on', 'the', 'right'), 'right': ('on', 'the', 'left'),
            'top': ('at', 'the', 'bottom'), 'bottom': ('at', 'the', 'top')}
ARTIFACT_KINDS = ('noise', 'scramble', 'smear', 'broken')
MISALIGNMENT_KINDS = ('color', 'shape', 'position', 'omit', 'background')
IMAGE_SIZES = (256, 320)
SPLITS = ('train', 'dev', 'test')
# Pick-a-Pic split each release split's images live in.
PICKAPIC_SPLIT = {'train': 'train', 'dev': 'train', 'test': 'test'}
NUM_RATERS = 3
RATER_MISS_PROB = 0.15
RATER_JITTER = 0.02  # std of a rater's point, in units of the image side.
DISC_RADIUS_FRACTION = 1 / 20  # of the image height (paper Sec. 3).
JPEG_QUALITY = 90


@dataclasses.dataclass
class Phrase:
  """One noun phrase of the prompt and where its words sit."""
  color: str
  shape: str
  count: int
  size: Optional[str] = None
  position: Optional[tuple[str, ...]] = None
  # Indices into the prompt words.
  count_idx: int = -1
  color_idx: int = -1
  shape_idx: int = -1
  position_idx: int = -1


@dataclasses.dataclass
class Scene:
  """A prompt and the scene it describes."""
  phrases: list[Phrase]
  background: Optional[str]
  background_idx: int
  words: list[str]
  prompt: str


@dataclasses.dataclass
class SyntheticExample:
  """One generated, annotated image (the release record plus ground truth)."""
  uid: str
  split: str
  prompt: str
  words: list[str]
  labels: list[int]
  image_size: int
  jpeg: bytes
  # uint8 [512, 512] maps; `generate` keeps only their PNG encodings.
  artifact_map: Optional[np.ndarray]
  misalignment_map: Optional[np.ndarray]
  artifact_points: list[list[tuple[float, float]]]
  misalignment_points: list[list[tuple[float, float]]]
  likert: dict[str, list[int]]
  scores: dict[str, float]
  artifacts: list[dict[str, Any]]
  misalignments: list[dict[str, Any]]
  artifact_png: bytes = b''
  misalignment_png: bytes = b''

  @property
  def filename(self) -> str:
    return self.uid + '.png'


def _uid(rng: np.random.Generator) -> str:
  return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def sample_scene(rng: np.random.Generator) -> Scene:
  """Samples a prompt from the grammar and records its word roles."""
  num_phrases = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
  budget = 3 - num_phrases
  bg = (str(rng.choice(list(COLORS))) if rng.random() < 0.7 else None)
  used, phrases = set(), []
  for _ in range(num_phrases):
    count = 1
    if budget and rng.random() < 0.35:
      count = int(rng.integers(2, 2 + budget))
      budget -= count - 1
    while True:
      color = str(rng.choice([c for c in COLORS if c != bg]))
      shape = str(rng.choice(SHAPES))
      if (color, shape) not in used:
        break
    used.add((color, shape))
    size = str(rng.choice(['small', 'big'])) if rng.random() < 0.3 else None
    position = None
    if count == 1 and rng.random() < 0.3:
      keys = list(POSITIONS)
      position = keys[int(rng.integers(len(keys)))]
    phrases.append(Phrase(color, shape, count, size, position))
  # Words, with a comma glued to all but the last two phrases.
  words, glue = [], []
  for i, ph in enumerate(phrases):
    if i:
      if i == len(phrases) - 1:
        words.append('and')
        glue.append('')
      else:
        glue[-1] = ','
    ph.count_idx = len(words)
    words.append(COUNT_WORDS[ph.count])
    glue.append('')
    if ph.size:
      words.append(ph.size)
      glue.append('')
    ph.color_idx = len(words)
    words.append(ph.color)
    glue.append('')
    ph.shape_idx = len(words)
    words.append(ph.shape + ('s' if ph.count > 1 else ''))
    glue.append('')
    if ph.position:
      words.extend(ph.position)
      glue.extend([''] * 3)
      ph.position_idx = len(words) - 1
  for ph in phrases:
    if ph.count == 1 and words[ph.count_idx + 1][0] in 'aeiou':
      words[ph.count_idx] = 'an'
  bg_idx = -1
  if bg:
    words.extend(['on', 'an' if bg[0] in 'aeiou' else 'a'])
    glue.extend(['', ''])
    bg_idx = len(words)
    words.extend([bg, 'background'])
    glue.extend(['', ''])
  if rng.random() < 0.3:
    glue[-1] = '.'
  prompt = ' '.join(w + g for w, g in zip(words, glue))
  assert release.prompt_words(prompt) == words, (prompt, words)
  return Scene(phrases, bg, bg_idx, words, prompt)


@dataclasses.dataclass
class _Obj:
  color: tuple[int, int, int]
  shape: str
  cx: float  # center, in units of the image side
  cy: float
  size: float  # side of the bounding box, in units of the image side
  phrase: int


def _layout(rng, scene: Scene, plan: dict[int, dict[str, Any]]) -> list[_Obj]:
  """Places the objects of the (possibly contradicted) scene on a 3x3 grid."""
  free = {(r, c) for r in range(3) for c in range(3)}
  objs = []
  order = sorted(range(len(scene.phrases)),
                 key=lambda i: scene.phrases[i].position is None)
  for i in order:
    ph, p = scene.phrases[i], plan[i]
    for _ in range(p['count']):
      allowed = sorted(free & set(POSITIONS[p['position']])) if p[
          'position'] else sorted(free)
      if not allowed:
        allowed = sorted(free)
      r, c = allowed[int(rng.integers(len(allowed)))]
      free.discard((r, c))
      size = SIZES[ph.size] * rng.uniform(0.95, 1.08)
      jitter = (1 / 3 - size) / 2
      cx = (c + 0.5) / 3 + rng.uniform(-jitter, jitter)
      cy = (r + 0.5) / 3 + rng.uniform(-jitter, jitter)
      objs.append(_Obj(COLORS[p['color']], p['shape'], cx, cy, size, i))
  return objs


def _draw(objs: Sequence[_Obj], bg_rgb, side: int) -> np.ndarray:
  img = Image.new('RGB', (side, side), tuple(bg_rgb))
  draw = ImageDraw.Draw(img)
  for o in objs:
    cx, cy, h = o.cx * side, o.cy * side, o.size * side / 2
    box = [cx - h, cy - h, cx + h, cy + h]
    if o.shape == 'circle':
      draw.ellipse(box, fill=o.color)
    elif o.shape == 'square':
      draw.rectangle(box, fill=o.color)
    elif o.shape == 'triangle':
      draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)],
                   fill=o.color)
    else:
      draw.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)],
                   fill=o.color)
  return np.asarray(img).copy()


def _apply_artifact(rng, img: np.ndarray, kind: str, cx: float, cy: float,
                    size: float) -> None:
  """Distorts `img` in place around (cx, cy) (units of the image side)."""
  side = img.shape[0]
  half = max(4, int(size * side / 2))
  x0, y0 = int(cx * side) - half, int(cy * side) - half
  x0 = min(max(x0, 0), side - 2 * half)
  y0 = min(max(y0, 0), side - 2 * half)
  patch = img[y0:y0 + 2 * half, x0:x0 + 2 * half]
  n = patch.shape[0]
  if kind == 'noise':
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 <= (n / 2) ** 2
    noise = rng.integers(0, 256, size=patch.shape, dtype=np.uint8)
    patch[disc] = noise[disc]
  elif kind == 'scramble':
    b = n // 4
    blocks = [patch[i * b:(i + 1) * b, j * b:(j + 1) * b].copy()
              for i in range(4) for j in range(4)]
    perm = rng.permutation(16)
    for k, src in enumerate(perm):
      i, j = divmod(k, 4)
      blk = blocks[src]
      patch[i * b:(i + 1) * b, j * b:(j + 1) * b] = np.rot90(
          blk, int(rng.integers(4)))
    patch[::3, :] = 255 - patch[::3, :]
  elif kind == 'smear':
    stripe = max(2, n // 12)
    for y in range(0, n, stripe):
      shift = int(rng.integers(-n // 3, n // 3 + 1))
      patch[y:y + stripe] = np.roll(patch[y:y + stripe], shift, axis=1)
    patch[:] = (patch.astype(np.int16) // 2 + rng.integers(
        0, 128, size=(1, 1, 3))).astype(np.uint8)
  else:  # broken
    lower = patch[n // 2:].copy()
    patch[n // 2:] = np.roll(lower, n // 4, axis=1)
    patch[n // 2 - 2:n // 2 + 2] = 0
    patch[:, n // 2 - 1:n // 2 + 1] = 255 - patch[:, n // 2 - 1:n // 2 + 1]


def rater_heatmap(points_per_rater: Sequence[Sequence[tuple[float, float]]],
                  size: int = release.HEATMAP_SIZE) -> np.ndarray:
  """The paper's heatmap: each rater's points as discs, averaged over raters.

  Args:
    points_per_rater: for each rater, the (x, y) points it placed, in units
      of the image side.
    size: side of the square heatmap.

  Returns:
    uint8 [size, size]: round(255 * mean over raters of the rater's binary
    union of discs of radius size / 20).
  """
  radius = DISC_RADIUS_FRACTION * size
  num_raters = max(1, len(points_per_rater))
  # Pixel-centre coordinates as a column and a row (broadcast per disc).
  coords = np.arange(size, dtype=np.float32) + 0.5
  yy, xx = coords[:, None], coords[None, :]
  # How many raters cover each pixel, within the box around all discs (most
  # maps are empty or nearly so).
  rater_boxes = []
  for points in points_per_rater:
    boxes = []
    for x, y in points:
      x0, x1 = int(max(0, x * size - radius - 1)), int(
          min(size, x * size + radius + 2))
      y0, y1 = int(max(0, y * size - radius - 1)), int(
          min(size, y * size + radius + 2))
      if x0 < x1 and y0 < y1:
        boxes.append((x, y, x0, x1, y0, y1))
    rater_boxes.append(boxes)
  out = np.zeros((size, size), np.uint8)
  every_box = [b for r in rater_boxes for b in r]
  if not every_box:
    return out
  bx0, bx1 = min(b[2] for b in every_box), max(b[3] for b in every_box)
  by0, by1 = min(b[4] for b in every_box), max(b[5] for b in every_box)
  count = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
  for boxes in rater_boxes:
    mask = np.zeros_like(count, bool)
    for x, y, x0, x1, y0, y1 in boxes:
      mask[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] |= (
          (xx[:, x0:x1] - x * size) ** 2 + (yy[y0:y1] - y * size) ** 2
          <= radius ** 2)
    count += mask
  # round(255 * count / raters), computed in float32 once per count value.
  levels = np.round(
      np.arange(num_raters + 1, dtype=np.float32) / num_raters * 255)
  out[by0:by1, bx0:bx1] = levels.astype(np.uint8)[count]
  return out


def _rate(rng, centers) -> tuple[list[list[tuple[float, float]]],
                                 list[list[bool]]]:
  """Simulates the raters' clicks on defects with the given centers."""
  points, seen = [], []
  for _ in range(NUM_RATERS):
    pts, saw = [], []
    for c in centers:
      hit = rng.random() >= RATER_MISS_PROB
      saw.append(hit)
      if hit and c is not None:
        x, y = np.clip(np.asarray(c) + rng.normal(0, RATER_JITTER, 2), 0, 1)
        pts.append((float(x), float(y)))
    points.append(pts)
    seen.append(saw)
  return points, seen


def _png(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  # Lossless at any level; level 1 encodes ~3x faster than the default 6.
  Image.fromarray(arr, mode='L').save(buf, format='PNG', compress_level=1)
  return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format='JPEG', quality=JPEG_QUALITY)
  return buf.getvalue()


def _plan_misalignments(rng, scene: Scene):
  """Chooses what the image contradicts; returns (plan, bg, errors)."""
  plan = {i: dict(color=p.color, shape=p.shape, count=p.count,
                  position=p.position) for i, p in enumerate(scene.phrases)}
  bg = scene.background
  errors = []
  if rng.random() >= 0.5:
    return plan, bg, errors
  num = 1 if rng.random() < 0.7 else 2
  total = sum(p.count for p in scene.phrases)
  for _ in range(num):
    i = int(rng.integers(len(scene.phrases)))
    ph, p = scene.phrases[i], plan[i]
    kinds = ['color', 'shape', 'omit']
    if ph.position:
      kinds.append('position')
    if scene.background:
      kinds.append('background')
    kind = str(rng.choice(kinds))
    if any(e['phrase'] == i for e in errors) and kind != 'background':
      continue
    if kind == 'color':
      p['color'] = str(rng.choice(
          [c for c in COLORS if c not in (ph.color, scene.background)]))
      errors.append(dict(kind=kind, phrase=i, word=ph.color_idx))
    elif kind == 'shape':
      p['shape'] = str(rng.choice([s for s in SHAPES if s != ph.shape]))
      errors.append(dict(kind=kind, phrase=i, word=ph.shape_idx))
    elif kind == 'position':
      p['position'] = OPPOSITE[ph.position[-1]]
      errors.append(dict(kind=kind, phrase=i, word=ph.position_idx))
    elif kind == 'omit':
      if total - 1 < 1:
        continue
      total -= 1
      p['count'] -= 1
      word = ph.count_idx if p['count'] else ph.shape_idx
      errors.append(dict(kind=kind, phrase=i, word=word))
    elif kind == 'background' and bg == scene.background:
      used = {q.color for q in scene.phrases} | {scene.background}
      bg = str(rng.choice([c for c in COLORS if c not in used]))
      errors.append(dict(kind=kind, phrase=-1, word=scene.background_idx))
  return plan, bg, errors


def _render(rng, scene: Scene, side: int, *, annotate: bool):
  """Renders one image of `scene` with planted defects."""
  plan, bg, errors = _plan_misalignments(rng, scene)
  bg_rgb = COLORS[bg] if bg else DEFAULT_BACKGROUNDS[
      int(rng.integers(len(DEFAULT_BACKGROUNDS)))]
  objs = _layout(rng, scene, plan)
  img = _draw(objs, bg_rgb, side)
  num_art = int(rng.choice([0, 1, 2], p=[0.45, 0.35, 0.2]))
  artifacts = []
  for _ in range(num_art):
    kind = str(rng.choice(ARTIFACT_KINDS))
    if kind == 'broken' and not objs:
      kind = 'noise'
    if kind == 'broken' or (objs and rng.random() < 0.6):
      o = objs[int(rng.integers(len(objs)))]
      cx, cy = o.cx, o.cy
      size = max(o.size, 0.2) if kind == 'broken' else rng.uniform(0.17, 0.23)
    else:
      cx, cy = rng.uniform(0.15, 0.85, 2)
      size = rng.uniform(0.17, 0.23)
    _apply_artifact(rng, img, kind, cx, cy, size)
    half = size / 2
    artifacts.append(dict(kind=kind, x=float(np.clip(cx, half, 1 - half)),
                          y=float(np.clip(cy, half, 1 - half)),
                          size=float(size)))
  out = dict(img=img, bg=bg, bg_rgb=bg_rgb, objs=objs, errors=errors,
             artifacts=artifacts)
  if not annotate:
    return out
  # Misalignment regions: the objects of a wrongly drawn phrase.
  mis_centers, mis_err = [], []
  for k, e in enumerate(errors):
    if e['kind'] in ('color', 'shape', 'position'):
      for o in objs:
        if o.phrase == e['phrase']:
          mis_centers.append((o.cx, o.cy))
          mis_err.append(k)
    else:
      mis_centers.append(None)
      mis_err.append(k)
  out['art_points'], out['art_seen'] = _rate(
      rng, [(a['x'], a['y']) for a in artifacts])
  out['mis_points'], mis_seen = _rate(rng, mis_centers)
  # A rater saw an error if it noticed any of its regions.
  out['mis_seen'] = [[any(s for s, k2 in zip(seen, mis_err) if k2 == k)
                      for k in range(len(errors))] for seen in mis_seen]
  return out


def _likert(x: float) -> int:
  return int(np.clip(np.round(x), 1, 5))


def _scores(rng, scene: Scene, r) -> tuple[dict[str, list[int]],
                                           dict[str, float]]:
  """Per-rater 1-5 Likert scores and the release's normalised means."""
  objs, arts = r['objs'], r['artifacts']
  colors = {tuple(o.color) for o in objs} | {tuple(r['bg_rgb'])}
  bg = np.asarray(r['bg_rgb'], np.float32)
  contrast = np.mean([np.linalg.norm(np.asarray(o.color) - bg) / 300.0
                      for o in objs]) if objs else 0.0
  aesthetic = (2.0 + 2.4 * min(contrast, 1.0)
               - 0.45 * max(0, len(colors) - 3)
               - 0.35 * max(0, len(objs) - 2) - 0.35 * len(arts))
  likert = {k: [] for k in release.SCORE_FIELDS}
  for rater in range(NUM_RATERS):
    bias = rng.normal(0, 0.2)
    seen_art = sum(r['art_seen'][rater])
    seen_mis = sum(r['mis_seen'][rater])
    plaus = 5 - 1.6 * seen_art + bias + rng.normal(0, 0.4)
    align = 5 - 1.6 * seen_mis + bias + rng.normal(0, 0.4)
    aes = aesthetic + bias + rng.normal(0, 0.4)
    over = 0.35 * plaus + 0.35 * align + 0.3 * aes + rng.normal(0, 0.3)
    for k, v in zip(release.SCORE_FIELDS, (plaus, align, aes, over)):
      likert[k].append(_likert(v))
  scores = {k: float(np.float32((np.mean(v) - 1) / 4))
            for k, v in likert.items()}
  return likert, scores


def make_example(rng: np.random.Generator, split: str,
                 image_sizes: Sequence[int] = IMAGE_SIZES
                 ) -> tuple[SyntheticExample, Scene]:
  """Generates one annotated example from `rng`.

  Args:
    rng: the example's own generator.
    split: release split name, recorded in the example.
    image_sizes: the square image sizes to choose from.

  Returns:
    (example, scene); the scene renders the unlabeled partner image.
  """
  uid = _uid(rng)
  scene = sample_scene(rng)
  side = int(rng.choice(image_sizes))
  r = _render(rng, scene, side, annotate=True)
  labels = [1] * len(scene.words)
  for e in r['errors']:
    labels[e['word']] = 0
  likert, scores = _scores(rng, scene, r)
  artifact_map = rater_heatmap(r['art_points'])
  misalignment_map = rater_heatmap(r['mis_points'])
  ex = SyntheticExample(
      uid=uid, split=split, prompt=scene.prompt, words=scene.words,
      labels=labels, image_size=side, jpeg=_jpeg(r['img']),
      artifact_map=artifact_map, misalignment_map=misalignment_map,
      artifact_png=_png(artifact_map),
      misalignment_png=_png(misalignment_map),
      artifact_points=r['art_points'], misalignment_points=r['mis_points'],
      likert=likert, scores=scores, artifacts=r['artifacts'],
      misalignments=[dict(kind=e['kind'], word=scene.words[e['word']],
                          index=e['word']) for e in r['errors']])
  return ex, scene


def _example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, SPLITS.index(split), index])


def _example_for_release(args) -> tuple[SyntheticExample, Scene]:
  """Example `index` of `split` with its maps dropped (PNGs kept)."""
  seed, split, index, image_sizes = args
  ex, scene = make_example(_example_rng(seed, split, index), split,
                           image_sizes)
  return dataclasses.replace(ex, artifact_map=None,
                             misalignment_map=None), scene


def _examples(seed: int, split: str, num: int, image_sizes, pool
              ) -> list[tuple[SyntheticExample, Scene]]:
  """The split's examples in order, generated by `pool` when given."""
  jobs = [(seed, split, i, tuple(image_sizes)) for i in range(num)]
  if pool is None:
    return [_example_for_release(j) for j in jobs]
  return list(pool.imap(_example_for_release, jobs, chunksize=32))


def _write_release(path: str, examples: Sequence[SyntheticExample],
                   mismatch: set[int]) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path) as w:
    for i, ex in enumerate(examples):
      labels = ex.labels + [1] if i in mismatch else ex.labels
      w.write(release.release_example(
          filename=ex.filename, scores=ex.scores,
          artifact_map_png=ex.artifact_png,
          misalignment_map_png=ex.misalignment_png,
          # Sorted map keys: the bytes do not depend on the process.
          labels=labels).SerializeToString(deterministic=True))


def _pickapic_rows(rng, labeled, scenes, num_distractors):
  """Pick-a-Pic rows: each labeled image beside an unlabeled rendering."""
  rows = []

  def partner(scene):
    side = int(rng.choice(IMAGE_SIZES))
    return _uid(rng), _jpeg(_render(rng, scene, side, annotate=False)['img'])

  def row(caption, a, b):
    swap = rng.random() < 0.5
    (u0, j0), (u1, j1) = (b, a) if swap else (a, b)
    pref = int(rng.integers(3))
    return dict(caption=caption, image_0_uid=u0, image_1_uid=u1, jpg_0=j0,
                jpg_1=j1, label_0=[1.0, 0.0, 0.5][pref],
                label_1=[0.0, 1.0, 0.5][pref], model_0='synthetic-renderer',
                model_1='synthetic-renderer',
                ranking_id=int(rng.integers(1 << 40)),
                user_id=int(rng.integers(1 << 20)), has_label=True,
                best_image_uid=[u0, u1, ''][pref], are_different=True,
                num_example_per_prompt=1)

  for ex, scene in zip(labeled, scenes):
    rows.append(row(ex.prompt, (ex.uid, ex.jpeg), partner(scene)))
    if rng.random() < 0.05:  # Pick-a-Pic repeats images across comparisons.
      rows.append(row(ex.prompt, (ex.uid, ex.jpeg), partner(scene)))
  for _ in range(num_distractors):
    scene = sample_scene(rng)
    rows.append(row(scene.prompt, partner(scene), partner(scene)))
  order = rng.permutation(len(rows))
  return [rows[i] for i in order]


def _write_parquet(out_dir: str, split: str, rows, rows_per_shard: int,
                   row_group_size: int) -> list[str]:
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  n = max(1, math.ceil(len(rows) / rows_per_shard))
  paths = []
  schema = pa.schema([
      ('are_different', pa.bool_()), ('best_image_uid', pa.string()),
      ('caption', pa.string()), ('created_at', pa.timestamp('ns')),
      ('has_label', pa.bool_()), ('image_0_uid', pa.string()),
      ('image_0_url', pa.string()), ('image_1_uid', pa.string()),
      ('image_1_url', pa.string()), ('jpg_0', pa.binary()),
      ('jpg_1', pa.binary()), ('label_0', pa.float64()),
      ('label_1', pa.float64()), ('model_0', pa.string()),
      ('model_1', pa.string()), ('ranking_id', pa.int64()),
      ('user_id', pa.int64()), ('num_example_per_prompt', pa.int64()),
  ])
  for i in range(n):
    part = rows[i * rows_per_shard:(i + 1) * rows_per_shard]
    cols = {}
    for field in schema:
      if field.name == 'created_at':
        cols[field.name] = [0] * len(part)
      elif field.name.endswith('_url'):
        k = field.name[6]
        cols[field.name] = [f'https://example.invalid/{r[f"image_{k}_uid"]}'
                            '.png' for r in part]
      else:
        cols[field.name] = [r[field.name] for r in part]
    table = pa.table(cols, schema=schema)
    path = os.path.join(out_dir, f'{split}-{i:05d}-of-{n:05d}.parquet')
    pq.write_table(table, path, row_group_size=row_group_size)
    paths.append(path)
  return paths


def generate(out_dir: str, num_train: int, num_dev: int, num_test: int,
             seed: int = 0, *, rows_per_shard: int = 256,
             row_group_size: int = 64, label_mismatch_rate: float = 0.0,
             distractor_rate: float = 0.2, image_sizes=IMAGE_SIZES,
             write_vocab: bool = True, workers: int = 1) -> dict[str, Any]:
  """Writes the synthetic release, Pick-a-Pic shards and vocabulary.

  Args:
    out_dir: output root (see the module docstring for the layout).
    num_train: examples in the release's train split.
    num_dev: examples in dev.
    num_test: examples in test.
    seed: everything written is a deterministic function of it.
    rows_per_shard: Pick-a-Pic rows per parquet shard.
    row_group_size: parquet row group size.
    label_mismatch_rate: fraction of release records written with one label
      too many (the real release's label/word-count mismatches).
    distractor_rate: extra Pick-a-Pic rows with two unlabeled images, as a
      fraction of the labeled images.
    image_sizes: square image sizes to draw from.
    write_vocab: also train `vocab/spm.model`.
    workers: processes that render the labeled examples (each example has
      its own generator, so the output does not depend on this). The
      unlabeled Pick-a-Pic partners share one generator and are rendered in
      this process.

  Returns:
    A summary dict: counts per split, paths, the uids written with a label
    mismatch, and the elapsed seconds.
  """
  t0 = time.time()
  if workers < 1:
    raise ValueError(f'workers={workers}; expected >= 1')
  counts = dict(train=num_train, dev=num_dev, test=num_test)
  for sub in ('richhf18k', 'pickapic', 'vocab', 'meta'):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  by_group = {'train': ([], []), 'test': ([], [])}
  texts, mismatched = [], []
  pool = None
  if workers > 1:
    # Spawned, not forked: the caller may hold TensorFlow or JAX threads.
    pool = multiprocessing.get_context('spawn').Pool(workers)
  try:
    made = {split: _examples(seed, split, counts[split], image_sizes, pool)
            for split in SPLITS}
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  for split in SPLITS:
    examples = []
    for ex, scene in made.pop(split):
      examples.append(ex)
      by_group[PICKAPIC_SPLIT[split]][0].append(ex)
      by_group[PICKAPIC_SPLIT[split]][1].append(scene)
      words = release.prompt_words(ex.prompt)
      texts += [' '.join(words), release.marked_target(words, ex.labels)]
    mrng = np.random.default_rng([seed, 100 + SPLITS.index(split)])
    mismatch = {i for i in range(len(examples))
                if mrng.random() < label_mismatch_rate}
    mismatched += [examples[i].uid for i in sorted(mismatch)]
    _write_release(os.path.join(out_dir, 'richhf18k', f'{split}.tfrecord'),
                   examples, mismatch)
    with open(os.path.join(out_dir, 'meta', f'{split}.jsonl'), 'w') as f:
      for ex in examples:
        f.write(json.dumps(dict(
            uid=ex.uid, prompt=ex.prompt, labels=ex.labels,
            image_size=ex.image_size, artifacts=ex.artifacts,
            misalignments=ex.misalignments, likert=ex.likert,
            scores=ex.scores, artifact_points=ex.artifact_points,
            misalignment_points=ex.misalignment_points)) + '\n')
  shards = {}
  for g, (labeled, scenes) in by_group.items():
    rng = np.random.default_rng([seed, 200 + ('train', 'test').index(g)])
    rows = _pickapic_rows(rng, labeled, scenes,
                          int(round(distractor_rate * len(labeled))))
    shards[g] = _write_parquet(os.path.join(out_dir, 'pickapic'), g, rows,
                               rows_per_shard, row_group_size)
  vocab_path = None
  if write_vocab:
    from richhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
    texts += list(release.AUGMENTED_PREFIXES.values())
    texts += [f'{p} {t}' for p in release.AUGMENTED_PREFIXES.values()
              for t in texts[:1]]
    vocab_path = vocab.train_vocab(
        texts, os.path.join(out_dir, 'vocab', 'spm'))
  return dict(counts=counts, pickapic_shards=shards, vocab=vocab_path,
              label_mismatch_uids=mismatched,
              seconds=round(time.time() - t0, 2))


def main(argv: Optional[Sequence[str]] = None) -> int:
  """CLI entry point."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out_dir', required=True)
  parser.add_argument('--num_train', type=int, default=2000)
  parser.add_argument('--num_dev', type=int, default=200)
  parser.add_argument('--num_test', type=int, default=200)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--rows_per_shard', type=int, default=256)
  parser.add_argument('--row_group_size', type=int, default=64)
  parser.add_argument('--label_mismatch_rate', type=float, default=0.0)
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                      help='processes rendering the labeled examples')
  args = parser.parse_args(argv)
  summary = generate(args.out_dir, args.num_train, args.num_dev,
                     args.num_test, args.seed,
                     rows_per_shard=args.rows_per_shard,
                     row_group_size=args.row_group_size,
                     label_mismatch_rate=args.label_mismatch_rate,
                     workers=args.workers)
  print(json.dumps(dict(summary, label_mismatch_uids=len(
      summary['label_mismatch_uids'])), indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
