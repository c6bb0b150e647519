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
"""Evaluation outputs: metrics.json, report.md (paper Tables 1-4), PNGs.

* `write_metrics_json`: the `metrics.evaluate` dict (plus an optional
  `baseline` of the same shape) as JSON. Undefined values (NaN, e.g.
  `mse_gt0` on a split without GT=0 examples) are written as `null`, so the
  file is strict JSON.
* `render_report`: markdown with the paper's Tables 1-4, each holding the
  paper's and the public PyTorch port's reference rows (`REFERENCE_RESULTS`),
  then ours and the trivial baseline.
* `save_overlays`: image | ground-truth overlay | predicted overlay PNGs.
* `save_overlay_grid`: one PNG of such rows with a caption per row (the
  evaluator's best / median / worst CC examples).
* `save_score_scatter`: predicted-vs-true scatter plot PNG of one score.

Images are drawn with numpy and PIL only (no matplotlib).
"""

import json
import math
import os
import re
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw

from richhf_jax import metrics as metrics_lib

# Reference results on the real RichHF-18K test set (SPEC.md section 5), in
# the units of `metrics.evaluate` (keyword P / R / F1 as fractions; the report
# prints them in percent). Rows list only the values their source reports.
REFERENCE_RESULTS = {
    'scores': [  # Paper Table 1, PLCC / SRCC.
        ('ResNet-50 (paper)', {
            'plausibility': {'plcc': 0.495, 'srcc': 0.487},
            'aesthetics': {'plcc': 0.370, 'srcc': 0.363},
            'alignment': {'plcc': 0.108, 'srcc': 0.119},
            'overall': {'plcc': 0.337, 'srcc': 0.308}}),
        ('CLIP fine-tuned (paper)', {
            'plausibility': {'plcc': 0.390, 'srcc': 0.378},
            'aesthetics': {'plcc': 0.357, 'srcc': 0.360},
            'alignment': {'plcc': 0.398, 'srcc': 0.390},
            'overall': {'plcc': 0.353, 'srcc': 0.352}}),
        ('RAHF multi-head (paper)', {
            'plausibility': {'plcc': 0.666, 'srcc': 0.654},
            'aesthetics': {'plcc': 0.605, 'srcc': 0.591},
            'alignment': {'plcc': 0.487, 'srcc': 0.500},
            'overall': {'plcc': 0.582, 'srcc': 0.561}}),
        ('RAHF augmented prompt (paper)', {
            'plausibility': {'plcc': 0.693, 'srcc': 0.681},
            'aesthetics': {'plcc': 0.600, 'srcc': 0.589},
            'alignment': {'plcc': 0.474, 'srcc': 0.496},
            'overall': {'plcc': 0.580, 'srcc': 0.562}}),
        ('PyTorch port, multi-head', {
            'plausibility': {'plcc': 0.739},
            'aesthetics': {'plcc': 0.629},
            'alignment': {'plcc': 0.565},
            'overall': {'plcc': 0.642}}),
    ],
    'implausibility': [  # Paper Table 2.
        ('ResNet-50 (paper)', {
            'mse_all': 0.00996, 'mse_gt0': 0.00093, 'cc': 0.506, 'kld': 1.669,
            'sim': 0.338, 'nss': 2.924, 'auc_judd': 0.909}),
        ('RAHF multi-head (paper)', {
            'mse_all': 0.01216, 'mse_gt0': 0.00141, 'cc': 0.425, 'kld': 1.971,
            'sim': 0.302, 'nss': 2.330, 'auc_judd': 0.877}),
        ('RAHF augmented prompt (paper)', {
            'mse_all': 0.00920, 'mse_gt0': 0.00095, 'cc': 0.556, 'kld': 1.652,
            'sim': 0.409, 'nss': 3.085, 'auc_judd': 0.913}),
        ('PyTorch port, multi-head', {
            'cc': 0.525, 'nss': 2.029, 'auc_judd': 0.905}),
    ],
    'misalignment': [  # Paper Table 3.
        ('CLIP gradient (paper)', {
            'mse_all': 0.00817, 'mse_gt0': 0.00551, 'cc': 0.015, 'kld': 3.844,
            'sim': 0.041, 'nss': 0.143, 'auc_judd': 0.643}),
        ('RAHF multi-head (paper)', {
            'mse_all': 0.00303, 'mse_gt0': 0.00015, 'cc': 0.206, 'kld': 2.932,
            'sim': 0.093, 'nss': 1.335, 'auc_judd': 0.838}),
        ('RAHF augmented prompt (paper)', {
            'mse_all': 0.00304, 'mse_gt0': 0.00006, 'cc': 0.212, 'kld': 2.933,
            'sim': 0.106, 'nss': 1.411, 'auc_judd': 0.841}),
    ],
    'keywords': [  # Paper Table 4.
        ('RAHF multi-head (paper)', {
            'precision': 0.629, 'recall': 0.330, 'f1': 0.433}),
        ('RAHF augmented prompt (paper)', {
            'precision': 0.613, 'recall': 0.341, 'f1': 0.439}),
        ('PyTorch port, multi-head', {
            'precision': 0.565, 'recall': 0.452, 'f1': 0.475}),
    ],
}

# Paper Table 1 column order (differs from SCORE_NAMES' order).
_TABLE1_SCORES = (('plausibility', 'Plausibility'),
                  ('aesthetics', 'Aesthetics'),
                  ('alignment', 'Text-image alignment'),
                  ('overall', 'Overall'))
_HEATMAP_COLUMNS = (('mse_all', 'MSE all', 5), ('mse_gt0', 'MSE GT=0', 5),
                    ('cc', 'CC', 3), ('kld', 'KLD', 3), ('sim', 'SIM', 3),
                    ('nss', 'NSS', 3), ('auc_judd', 'AUC-Judd', 3))
_KEYWORD_COLUMNS = (('precision', 'Precision (%)'), ('recall', 'Recall (%)'),
                    ('f1', 'F1 (%)'))
_MISSING = '-'
_UNDEFINED = 'n/a'


# ----------------------------------------------------------------------------
# metrics.json
# ----------------------------------------------------------------------------


def _to_json_values(tree):
  """Python floats for every leaf; NaN / inf become None (JSON null)."""
  if isinstance(tree, Mapping):
    return {str(k): _to_json_values(v) for k, v in tree.items()}
  value = float(tree)
  return value if math.isfinite(value) else None


def write_metrics_json(path: str, metrics: Mapping[str, Any],
                       baseline: Optional[Mapping[str, Any]] = None) -> None:
  """Writes the metrics (and the trivial baseline's) as strict JSON.

  The file holds the `metrics.evaluate` dict with python floats, plus the
  key `baseline` holding a dict of the same shape when `baseline` is given.
  A NaN or infinite value (a mean over no example) is written as `null`.

  Args:
    path: output file; parent directories are created.
    metrics: the `metrics.evaluate` dict.
    baseline: optional dict of the same shape for the trivial baseline.

  Raises:
    ValueError: if a dict does not have exactly the evaluate() keys.
  """
  metrics_lib.check_metrics_structure(metrics, 'metrics')
  out = _to_json_values(metrics)
  if baseline is not None:
    metrics_lib.check_metrics_structure(baseline, 'baseline')
    out['baseline'] = _to_json_values(baseline)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(out, f, indent=2, allow_nan=False)
    f.write('\n')


# ----------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------


def _fmt(value, decimals, scale=1.0):
  """Formats one table cell; None is a missing value, NaN an undefined one."""
  if value is None:
    return _MISSING
  value = float(value)
  if not math.isfinite(value):
    return _UNDEFINED
  text = f'{value * scale:.{decimals}f}'
  # Tiny negative values (e.g. a KLD of -1e-14 from rounding) print as 0.
  return text[1:] if text.startswith('-') and float(text) == 0 else text


def _table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def _our_rows(metrics, baseline, pick):
  rows = [('**ours**', pick(metrics))]
  if baseline is not None:
    rows.append(('trivial baseline', pick(baseline)))
  return rows


def _scores_table(metrics, baseline):
  header = ['Model']
  for _, title in _TABLE1_SCORES:
    header += [f'{title} PLCC', f'{title} SRCC']
  rows = list(REFERENCE_RESULTS['scores'])
  rows += _our_rows(metrics, baseline, lambda m: m['scores'])
  cells = []
  for name, values in rows:
    row = [name]
    for key, _ in _TABLE1_SCORES:
      entry = values.get(key, {})
      row += [_fmt(entry.get('plcc'), 3), _fmt(entry.get('srcc'), 3)]
    cells.append(row)
  return _table(header, cells)


def _heatmap_table(heatmap, metrics, baseline):
  header = ['Model'] + [title for _, title, _ in _HEATMAP_COLUMNS]
  rows = list(REFERENCE_RESULTS[heatmap])
  rows += _our_rows(metrics, baseline,
                    lambda m: m['heatmaps'][heatmap])
  cells = [[name] + [_fmt(values.get(key), decimals)
                     for key, _, decimals in _HEATMAP_COLUMNS]
           for name, values in rows]
  return _table(header, cells)


def _keywords_table(metrics, baseline):
  header = ['Model'] + [title for _, title in _KEYWORD_COLUMNS]
  rows = list(REFERENCE_RESULTS['keywords'])
  rows += _our_rows(metrics, baseline, lambda m: m['keywords'])
  cells = [[name] + [_fmt(values.get(key), 1, scale=100.0)
                     for key, _ in _KEYWORD_COLUMNS]
           for name, values in rows]
  return _table(header, cells)


def render_report(metrics: Mapping[str, Any],
                  baseline: Optional[Mapping[str, Any]] = None,
                  title: str = 'RAHF evaluation',
                  notes: Optional[str] = None,
                  heatmap_resolution: Optional[str] = None,
                  figures: Sequence[tuple[str, str]] = ()) -> str:
  """Markdown report with the paper's Tables 1-4.

  Each table lists the paper's rows and the public PyTorch port's rows
  (REFERENCE_RESULTS, real RichHF-18K test set), then `ours` and, when
  given, the trivial baseline. Keyword precision / recall / F1 are printed
  in percent like the paper. `-` marks a value the source does not report,
  `n/a` a value that is undefined on this split (NaN).

  Args:
    metrics: the `metrics.evaluate` dict.
    baseline: optional dict of the same shape for the trivial baseline.
    title: the report's first heading.
    notes: optional markdown paragraph placed under the title (e.g. the
      checkpoint, split and data used).
    heatmap_resolution: optional sentence saying at which resolution the
      heatmap metrics were computed (printed under Tables 2-3).
    figures: (caption, relative path) pairs of PNGs, linked in a final
      `Figures` section.

  Returns:
    The report as a markdown string.

  Raises:
    ValueError: if a dict does not have exactly the evaluate() keys.
  """
  metrics_lib.check_metrics_structure(metrics, 'metrics')
  if baseline is not None:
    metrics_lib.check_metrics_structure(baseline, 'baseline')
  parts = [f'# {title}']
  if notes:
    parts.append(notes.strip())
  parts.append(
      'Reference rows (paper, and the public PyTorch port of RAHF) are on '
      'the real RichHF-18K test set; they are not comparable to numbers '
      'measured on synthetic data. The trivial baseline predicts the mean '
      'training score and heatmap for every example and marks no keyword; '
      'a constant predictor has PLCC = SRCC = 0 by convention. Metric '
      'definitions: `richhf_jax/metrics.py`. `-`: not reported; `n/a`: '
      'undefined on this split (no example to average over).')
  parts.append('## Table 1: score prediction (PLCC / SRCC)')
  parts.append(_scores_table(metrics, baseline))
  parts.append('## Table 2: implausibility heatmap')
  parts.append(_heatmap_table('implausibility', metrics, baseline))
  parts.append('## Table 3: misalignment heatmap')
  parts.append(_heatmap_table('misalignment', metrics, baseline))
  parts.append(
      'MSE all: over all examples; MSE GT=0: over examples whose ground '
      'truth is all zero; CC, KLD, SIM, NSS, AUC-Judd: over examples with '
      'ground truth > 0 (fixations = pixels > 0).'
      + (f' Resolution: {heatmap_resolution.strip()}'
         if heatmap_resolution else ''))
  parts.append('## Table 4: misaligned keywords (token level, pooled)')
  parts.append(_keywords_table(metrics, baseline))
  if figures:
    parts.append('## Figures')
    parts.append('\n\n'.join(f'{caption}\n\n![{caption}]({target})'
                              for caption, target in figures))
  return '\n\n'.join(parts) + '\n'


# ----------------------------------------------------------------------------
# Images.
# ----------------------------------------------------------------------------

# Jet-like colormap: piecewise-linear RGB through these anchor colours.
_JET_POSITIONS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_JET_COLORS = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0],
                        [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])


def colormap_jet(values: np.ndarray) -> np.ndarray:
  """Maps values in [0, 1] (clipped) to jet-like RGB floats in [0, 1].

  Args:
    values: array of any shape.

  Returns:
    Array of shape values.shape + (3,), float32.
  """
  v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
  channels = [np.interp(v, _JET_POSITIONS, _JET_COLORS[:, c])
              for c in range(3)]
  return np.stack(channels, axis=-1).astype(np.float32)


def _image_to_float(image, what):
  """[S, S, 3] uint8 or float in [-1, 1] -> float32 in [0, 1]."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'{what}: expected an image [H, W, 3], got shape '
                     f'{image.shape}.')
  if image.dtype == np.uint8:
    return image.astype(np.float32) / 255.0
  return np.clip((image.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def _resize_map(heatmap, size, what):
  """Bilinear resize of a [h, w] map to size (H, W), float32."""
  heatmap = np.asarray(heatmap, dtype=np.float32)
  if heatmap.ndim != 2:
    raise ValueError(f'{what}: expected a heatmap [H, W], got shape '
                     f'{heatmap.shape}.')
  if heatmap.shape == size:
    return heatmap
  resized = Image.fromarray(heatmap).resize(
      (size[1], size[0]), Image.Resampling.BILINEAR)
  return np.asarray(resized, dtype=np.float32)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray,
                    alpha: float = 0.6) -> np.ndarray:
  """Blends a jet-coloured heatmap onto an image, weighted by the heatmap.

  out = (1 - w) image + w jet(h), w = alpha * clip(h, 0, 1): pixels where
  the heatmap is 0 show the image unchanged.

  Args:
    image: [H, W, 3] float in [0, 1].
    heatmap: [H, W] in [0, 1].
    alpha: the blend weight at heatmap value 1.

  Returns:
    [H, W, 3] uint8.
  """
  weight = alpha * np.clip(heatmap, 0.0, 1.0)[..., None]
  out = (1.0 - weight) * image + weight * colormap_jet(heatmap)
  return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def _safe_name(name):
  return re.sub(r'[^A-Za-z0-9._-]+', '_', str(name)) or 'example'


def save_overlays(out_dir: str,
                  images: np.ndarray,
                  gts: np.ndarray,
                  preds: np.ndarray,
                  names: Sequence[str],
                  alpha: float = 0.6,
                  labels: Sequence[str] = ('image', 'ground truth',
                                           'prediction'),
                  label_height: int = 14) -> list[str]:
  """Writes one PNG per example: image | gt overlay | prediction overlay.

  Each PNG is (label_height + S) x (3 S) pixels: a white strip with the
  three panel labels above the three S x S panels. Heatmaps are resized to
  the image size (bilinear) and drawn with `overlay_heatmap`.

  Args:
    out_dir: output directory (created).
    images: [N, S, S, 3] uint8, or float in [-1, 1].
    gts: [N, H, W] ground-truth heatmaps in [0, 1], any resolution.
    preds: [N, H', W'] predicted heatmaps in [0, 1], any resolution.
    names: N file stems (unsafe characters become `_`); `.png` is added.
    alpha: overlay weight at heatmap value 1.
    labels: the three panel labels.
    label_height: height in pixels of the label strip (0: no strip).

  Returns:
    The written paths, in input order.

  Raises:
    ValueError: if the inputs disagree on N or have the wrong rank.
  """
  images = np.asarray(images)
  names = list(names)
  n = len(names)
  for what, x in (('images', images), ('gts', gts), ('preds', preds)):
    if len(x) != n:
      raise ValueError(f'save_overlays: {what} holds {len(x)} examples but '
                       f'names holds {n}.')
  if len(labels) != 3:
    raise ValueError(f'save_overlays: expected 3 labels, got {len(labels)}.')
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for k in range(n):
    image = _image_to_float(images[k], f'save_overlays: images[{k}]')
    size = image.shape[:2]
    gt = _resize_map(gts[k], size, f'save_overlays: gts[{k}]')
    pred = _resize_map(preds[k], size, f'save_overlays: preds[{k}]')
    panels = [np.round(image * 255.0).astype(np.uint8),
              overlay_heatmap(image, gt, alpha),
              overlay_heatmap(image, pred, alpha)]
    height, width = size
    canvas = Image.new('RGB', (3 * width, height + label_height), 'white')
    draw = ImageDraw.Draw(canvas)
    # Labels first, panels second: text taller than the strip is clipped
    # by the panels instead of being drawn over them.
    if label_height:
      for j, label in enumerate(labels):
        draw.text((j * width + 2, 1), label, fill='black')
    for j, panel in enumerate(panels):
      canvas.paste(Image.fromarray(panel), (j * width, label_height))
    path = os.path.join(out_dir, _safe_name(names[k]) + '.png')
    canvas.save(path)
    paths.append(path)
  return paths


def _resize_image(image, side):
  """[S, S, 3] float in [0, 1] -> [side, side, 3] (bilinear)."""
  if image.shape[:2] == (side, side):
    return image
  return np.stack([_resize_map(image[..., c], (side, side), 'image')
                   for c in range(3)], axis=-1)


def save_overlay_grid(path: str,
                      images: np.ndarray,
                      gts: np.ndarray,
                      preds: np.ndarray,
                      captions: Sequence[str],
                      title: Optional[str] = None,
                      alpha: float = 0.6,
                      panel_size: Optional[int] = None,
                      labels: Sequence[str] = ('image', 'ground truth',
                                               'prediction'),
                      text_height: int = 14) -> str:
  """Writes one PNG of rows image | gt overlay | prediction overlay.

  Layout: a header strip (the optional title, then the three column labels),
  then per example a caption strip above its three panels. Panels are
  `panel_size` pixels square (default: the image side, at least 160 so the
  captions fit); images and heatmaps are resized bilinearly to it.

  Args:
    path: output PNG path; parent directories are created.
    images: [N, S, S, 3] uint8, or float in [-1, 1].
    gts: [N, H, W] ground-truth heatmaps in [0, 1], any resolution.
    preds: [N, H', W'] predicted heatmaps in [0, 1], any resolution.
    captions: N row captions (e.g. the example and its CC).
    title: optional first line of the header.
    alpha: overlay weight at heatmap value 1.
    panel_size: side of each panel in pixels.
    labels: the three column labels.
    text_height: height in pixels of one text line.

  Returns:
    The written path.

  Raises:
    ValueError: if the inputs disagree on N (or N is 0), have the wrong
      rank, or panel_size < 16.
  """
  images = np.asarray(images)
  captions = [str(c) for c in captions]
  n = len(captions)
  if not n:
    raise ValueError('save_overlay_grid: no example to draw (captions is '
                     'empty).')
  for what, x in (('images', images), ('gts', gts), ('preds', preds)):
    if len(x) != n:
      raise ValueError(f'save_overlay_grid: {what} holds {len(x)} examples '
                       f'but captions holds {n}.')
  if len(labels) != 3:
    raise ValueError(f'save_overlay_grid: expected 3 labels, got '
                     f'{len(labels)}.')
  first = _image_to_float(images[0], 'save_overlay_grid: images[0]')
  side = panel_size or max(first.shape[0], 160)
  if side < 16:
    raise ValueError(f'save_overlay_grid: panel_size must be >= 16, got '
                     f'{panel_size}.')
  header = text_height * (2 if title else 1)
  row = text_height + side
  canvas = Image.new('RGB', (3 * side, header + n * row), 'white')
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((2, 1), title, fill='black')
  for j, label in enumerate(labels):
    draw.text((j * side + 2, header - text_height + 1), label, fill='black')
  for k in range(n):
    what = f'save_overlay_grid: images[{k}]'
    image = _resize_image(_image_to_float(images[k], what), side)
    gt = _resize_map(gts[k], (side, side), f'save_overlay_grid: gts[{k}]')
    pred = _resize_map(preds[k], (side, side),
                       f'save_overlay_grid: preds[{k}]')
    top = header + k * row
    # Caption first, panels second: text taller than its strip is clipped by
    # the panels instead of being drawn over them.
    draw.text((2, top + 1), captions[k], fill='black')
    panels = [np.round(image * 255.0).astype(np.uint8),
              overlay_heatmap(image, gt, alpha),
              overlay_heatmap(image, pred, alpha)]
    for j, panel in enumerate(panels):
      canvas.paste(Image.fromarray(panel), (j * side, top + text_height))
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  canvas.save(path)
  return path


def save_score_scatter(path: str, pred: np.ndarray, true: np.ndarray,
                       name: str, size: int = 400) -> None:
  """Writes a predicted-vs-true scatter plot PNG of one score type.

  x: true score, y: predicted score, both axes over [0, 1] (widened to the
  data range if values fall outside), with ticks every 0.25, the y = x
  diagonal in grey, one dot per example, and a title with the PLCC / SRCC.

  Args:
    path: output PNG path; parent directories are created.
    pred: predicted scores [N].
    true: ground-truth scores [N].
    name: the score type, used in the title.
    size: width and height of the PNG in pixels (at least 100).

  Raises:
    ValueError: if pred and true are not 1-D of one length, or size < 100.
  """
  pred = np.asarray(pred, dtype=np.float64)
  true = np.asarray(true, dtype=np.float64)
  if pred.ndim != 1 or pred.shape != true.shape:
    raise ValueError(f'save_score_scatter: pred and true must be 1-D of one '
                     f'length, got {pred.shape} and {true.shape}.')
  if size < 100:
    raise ValueError(f'save_score_scatter: size must be >= 100, got {size}.')
  lo = min(0.0, float(np.min(pred, initial=0.0)), float(np.min(true,
                                                               initial=0.0)))
  hi = max(1.0, float(np.max(pred, initial=1.0)), float(np.max(true,
                                                               initial=1.0)))
  left, top, right, bottom = 40, 24, size - 12, size - 30

  def to_px(x, y):
    px = left + (x - lo) / (hi - lo) * (right - left)
    py = bottom - (y - lo) / (hi - lo) * (bottom - top)
    return px, py

  canvas = Image.new('RGB', (size, size), 'white')
  draw = ImageDraw.Draw(canvas)
  draw.line([to_px(lo, lo), to_px(hi, hi)], fill=(160, 160, 160), width=1)
  draw.line([(left, bottom), (right, bottom)], fill='black')  # x axis.
  draw.line([(left, top), (left, bottom)], fill='black')  # y axis.
  for tick in np.arange(math.ceil(lo * 4), math.floor(hi * 4) + 1) / 4:
    x, _ = to_px(tick, lo)
    _, y = to_px(lo, tick)
    draw.line([(x, bottom), (x, bottom + 4)], fill='black')
    draw.line([(left - 4, y), (left, y)], fill='black')
    draw.text((x - 8, bottom + 6), f'{tick:.2f}', fill='black')
    draw.text((2, y - 6), f'{tick:.2f}', fill='black')
  for x_val, y_val in zip(true, pred):
    if math.isfinite(x_val) and math.isfinite(y_val):
      x, y = to_px(x_val, y_val)
      draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
  title = f'{name}: predicted (y) vs true (x)'
  if pred.size and np.all(np.isfinite(pred)) and np.all(np.isfinite(true)):
    title += (f'  PLCC {metrics_lib.plcc(pred, true):.3f}'
              f'  SRCC {metrics_lib.srcc(pred, true):.3f}')
  draw.text((left, 6), title, fill='black')
  draw.text(((left + right) // 2 - 12, size - 14), 'true', fill='black')
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  canvas.save(path)
