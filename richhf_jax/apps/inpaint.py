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
r"""Inpainting masks from predicted heatmaps, and picking the best inpainting.

Paper Sec. 5: the implausibility heatmap marks artifact regions; thresholded
and dilated it is the mask an inpainting model regenerates, and RAHF's
plausibility prediction picks the best of several inpainted candidates.

Masks for a batch, from a `richhf_jax.predict --save_heatmaps` run:

  python -m richhf_jax.apps.inpaint --predictions /tmp/pred/predictions.jsonl \
    --out_dir /tmp/masks --threshold 0.5 --dilation_px 8

or by running the predictor on a CSV/JSONL of image,prompt:

  python -m richhf_jax.apps.inpaint --checkpoint /tmp/rahf_export \
    --input_csv images.csv --out_dir /tmp/masks

Writes `<out_dir>/<name>_mask.png` (mode L, 255 = inpaint) at each image's
resolution, and `<out_dir>/masks.jsonl` (image, mask path, masked fraction).
"""

import argparse
import dataclasses
import json
import os
import sys
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from richhf_jax import inference
from richhf_jax import predict as predict_lib
from richhf_jax.models import rahf


def disk(radius: int) -> np.ndarray:
  """Boolean disk footprint of the given radius ([2r+1, 2r+1])."""
  y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
  return x * x + y * y <= radius * radius


def inpaint_mask(heatmap: np.ndarray, threshold: float = 0.5,
                 dilation_px: int = 0, *, fill_holes: bool = True,
                 min_area_px: int = 0) -> np.ndarray:
  """Binary inpainting mask from a heatmap.

  Pixels at or above `threshold` are selected; components smaller than
  `min_area_px` are dropped (speckle), holes inside a region are filled, and
  the mask is grown by a disk of radius `dilation_px` so the inpainting
  covers the artifact's surroundings.

  Args:
    heatmap: [H, W] values in [0, 1] (any resolution; resize it to the
      image first so `dilation_px` is in image pixels).
    threshold: selection level in [0, 1].
    dilation_px: dilation radius in pixels (>= 0).
    fill_holes: fill enclosed holes.
    min_area_px: smallest kept component before dilation, in pixels.

  Returns:
    bool [H, W], True = inpaint.

  Raises:
    ValueError: a heatmap that is not a finite 2-D array, or a bad
      threshold / radius.
  """
  heatmap = np.asarray(heatmap)
  if heatmap.ndim != 2:
    raise ValueError(f'heatmap has shape {heatmap.shape}; expected [H, W]')
  if not np.isfinite(heatmap).all():
    raise ValueError('heatmap has non-finite values')
  if not 0.0 <= threshold <= 1.0:
    raise ValueError(f'threshold={threshold}; expected a value in [0, 1]')
  if int(dilation_px) != dilation_px or dilation_px < 0:
    raise ValueError(f'dilation_px={dilation_px}; expected an int >= 0')
  mask = heatmap >= threshold
  if min_area_px > 0 and mask.any():
    labels, n = ndimage.label(mask)
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    mask = np.isin(labels, 1 + np.flatnonzero(areas >= min_area_px))
  if fill_holes:
    mask = ndimage.binary_fill_holes(mask)
  if dilation_px > 0 and mask.any():
    mask = ndimage.binary_dilation(mask, structure=disk(int(dilation_px)))
  return mask


@dataclasses.dataclass
class Choice:
  """The outcome of `choose_best`.

  Attributes:
    index: the best candidate.
    values: the criterion of every candidate (higher is better).
    predictions: every candidate's prediction.
  """
  index: int
  values: list[float]
  predictions: list[inference.Prediction]


def choose_best(candidates: Sequence[inference.ImageLike], prompt: str,
                predictor: inference.Predictor, *,
                mask: Optional[np.ndarray] = None,
                mask_weight: float = 1.0) -> Choice:
  """Picks the most plausible of several inpainted versions of an image.

  The criterion is the predicted plausibility score; with `mask` (the
  inpainted region) it is the score minus `mask_weight` times the mean
  predicted implausibility inside the mask, so artifacts left where the
  inpainting worked count extra. Ties go to the earlier candidate.

  Args:
    candidates: the inpainted images (any `Predictor.predict` input).
    prompt: the image's prompt.
    predictor: the loaded model.
    mask: optional bool [h, w] (any resolution; resized to each image).
    mask_weight: weight of the in-mask implausibility.

  Returns:
    A `Choice`.

  Raises:
    ValueError: no candidates.
  """
  if not candidates:
    raise ValueError('choose_best needs at least one candidate')
  preds = predictor.predict(list(candidates), [prompt] * len(candidates),
                            heatmap_size='image')
  values = []
  for pred in preds:
    value = pred.scores['plausibility']
    if mask is not None:
      m = inference.resize_channels(np.asarray(mask, np.float32),
                                    pred.image_size) >= 0.5
      if m.any():
        value -= mask_weight * float(pred.implausibility_heatmap[m].mean())
    values.append(float(value))
  return Choice(int(np.argmax(values)), values, preds)


def save_mask(path: str, mask: np.ndarray) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(mask.astype(np.uint8) * 255, 'L').save(path)


def _heatmap_for(heatmaps: dict[str, np.ndarray], which: str) -> np.ndarray:
  if which == 'both':
    return np.maximum(heatmaps['implausibility'], heatmaps['misalignment'])
  return heatmaps[which]


def masks_from_predictions(path: str, out_dir: str, *, threshold: float,
                           dilation_px: int, which: str = 'implausibility',
                           min_area_px: int = 0) -> dict[str, int]:
  """Masks for each line of a predictions JSONL with saved heatmaps."""
  written = skipped = 0
  rows = predict_lib.read_table(path)
  with open(os.path.join(out_dir, 'masks.jsonl'), 'w') as out:
    for n, row in enumerate(rows):
      name = f'{n:06d}_{predict_lib.file_stem(row.get("image", "image"))}'
      try:
        paths = row['heatmaps']
        maps = {k: predict_lib.read_heatmap_png(paths[k])
                for k in rahf.HEATMAP_TYPES}
        size = tuple(row.get('image_size') or maps['implausibility'].shape)
      except (KeyError, TypeError, OSError) as e:
        print(f'skipped line {n + 1} of {path}: no readable heatmaps '
              f'({e!r}); run richhf_jax.predict with --save_heatmaps',
              file=sys.stderr)
        skipped += 1
        continue
      heatmap = inference.resize_channels(_heatmap_for(maps, which), size)
      written += _write_mask(out, out_dir, name, row.get('image'), heatmap,
                             threshold, dilation_px, min_area_px)
  return {'written': written, 'skipped': skipped}


def _write_mask(out, out_dir, name, image, heatmap, threshold, dilation_px,
                min_area_px) -> int:
  mask = inpaint_mask(heatmap, threshold, dilation_px,
                      min_area_px=min_area_px)
  mask_path = os.path.join(out_dir, f'{name}_mask.png')
  save_mask(mask_path, mask)
  out.write(json.dumps({'image': image, 'mask': os.path.abspath(mask_path),
                        'masked_fraction': round(float(mask.mean()), 6)})
            + '\n')
  return 1


def masks_from_images(predictor: inference.Predictor, table: str,
                      out_dir: str, *, threshold: float, dilation_px: int,
                      which: str = 'implausibility',
                      min_area_px: int = 0) -> dict[str, int]:
  """Runs the predictor on a CSV/JSONL of image,prompt and writes masks."""
  written = skipped = 0
  items = predict_lib.items_from_table(table)
  with open(os.path.join(out_dir, 'masks.jsonl'), 'w') as out:
    for res in predict_lib.predict_items(predictor, items,
                                         heatmap_size='image'):
      if res.error:
        print(f'skipped {res.item.fields.get("image")}: {res.error}',
              file=sys.stderr)
        skipped += 1
        continue
      maps = {k: res.prediction.heatmap(k) for k in rahf.HEATMAP_TYPES}
      written += _write_mask(out, out_dir, res.item.name,
                             res.item.fields.get('image'),
                             _heatmap_for(maps, which), threshold,
                             dilation_px, min_area_px)
  return {'written': written, 'skipped': skipped}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n', maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--predictions',
                      help='predictions JSONL of richhf_jax.predict '
                      '--save_heatmaps')
  source.add_argument('--input_csv', help='CSV/JSONL of image,prompt (needs '
                      '--checkpoint)')
  parser.add_argument('--checkpoint', help='export or training directory')
  parser.add_argument('--out_dir', required=True)
  parser.add_argument('--threshold', type=float, default=0.5)
  parser.add_argument('--dilation_px', type=int, default=8)
  parser.add_argument('--min_area_px', type=int, default=0)
  parser.add_argument('--heatmap', default='implausibility',
                      choices=rahf.HEATMAP_TYPES + ('both',))
  parser.add_argument('--batch_size', type=int, default=8)
  args = parser.parse_args(argv)
  if args.input_csv and not args.checkpoint:
    parser.error('--input_csv needs --checkpoint')
  os.makedirs(args.out_dir, exist_ok=True)
  opts = dict(threshold=args.threshold, dilation_px=args.dilation_px,
              which=args.heatmap, min_area_px=args.min_area_px)
  try:
    if args.predictions:
      counts = masks_from_predictions(args.predictions, args.out_dir, **opts)
    else:
      predictor = inference.Predictor.load(args.checkpoint,
                                           max_batch_size=args.batch_size)
      counts = masks_from_images(predictor, args.input_csv, args.out_dir,
                                 **opts)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'{counts["written"]} masks written to {args.out_dir}, '
        f'{counts["skipped"]} skipped')
  return 0 if counts['written'] else 1


if __name__ == '__main__':
  sys.exit(main())
