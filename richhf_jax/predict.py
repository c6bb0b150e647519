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
r"""Predicts heatmaps, scores and misaligned words from the command line.

One image:

  python -m richhf_jax.predict --checkpoint /tmp/rahf_export \
    --image cat.png --prompt "a yellow cat on a red sofa" --out_dir /tmp/pred

prints the four scores, the decoded marked prompt and the misaligned words,
and (with --out_dir) writes `overlays/<stem>.png`: image | implausibility |
misalignment.

Batches (one JSONL line per image in `--output`, default
`<out_dir>/predictions.jsonl`):

  --input_csv FILE   a CSV with columns `image,prompt` (a `.jsonl` file with
                     those keys works too); relative image paths are
                     relative to the file's directory.
  --input_dir DIR    every image file in DIR (not recursive, sorted). The
                     prompt of `x.png` is, in order: the `--prompts_file`
                     entry (a JSON object {"x.png": prompt} or a CSV with
                     columns image,prompt), else the sidecar `x.txt`, else
                     `--prompt` (one prompt for all).
  --tfrecord GLOB    joined shards (docs/architecture.md): the `image`
                     bytes, `prompt`, `uid`; the release scores are copied
                     to `true_scores`.

`--overlays` also writes overlay PNGs in batch mode, `--save_heatmaps` the
two heatmaps as 8-bit grayscale PNGs (`heatmaps/<name>_<type>.png`, value x
255), which `richhf_jax.apps.inpaint` reads. `--checkpoint` is an export
(`richhf_jax.export`) or a training directory. Unreadable images (and images
without a prompt) are reported on stderr and in `skipped.jsonl` beside the
output, and the run goes on; the exit status is 1 only when nothing was
predicted.
"""

import argparse
import csv
import dataclasses
import glob
import itertools
import json
import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, Sequence, TextIO

import numpy as np
from PIL import Image

from richhf_jax import inference
from richhf_jax import report
from richhf_jax.data import release
from richhf_jax.models import rahf

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif',
                    '.tiff')
# Overlays are drawn with the image's longer side in this range (pixels).
OVERLAY_SIDE_RANGE = (256, 512)


@dataclasses.dataclass
class Item:
  """One (image, prompt) to predict.

  Attributes:
    name: a file-name stem for outputs.
    image: a path or encoded bytes.
    prompt: the prompt (None: skipped with `error`).
    fields: copied into the JSONL line.
    error: set when the item cannot be predicted at all.
  """
  name: str
  image: Any
  prompt: Optional[str]
  fields: dict[str, Any] = dataclasses.field(default_factory=dict)
  error: Optional[str] = None


@dataclasses.dataclass
class Result:
  item: Item
  prediction: Optional[inference.Prediction] = None
  rgb: Optional[np.ndarray] = None
  error: Optional[str] = None


# ----------------------------------------------------------------------------
# Inputs.
# ----------------------------------------------------------------------------


def read_table(path: str) -> list[dict[str, Any]]:
  """Rows of a CSV (header line) or JSONL file (by extension)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'input file {path} not found')
  if path.endswith(('.jsonl', '.json')):
    rows = []
    with open(path, encoding='utf-8') as f:
      for n, line in enumerate(f, 1):
        if line.strip():
          try:
            rows.append(json.loads(line))
          except json.JSONDecodeError as e:
            raise ValueError(f'{path} line {n}: not JSON: {e}') from e
    return rows
  with open(path, newline='', encoding='utf-8') as f:
    return list(csv.DictReader(f))


def file_stem(path: str) -> str:
  return os.path.splitext(os.path.basename(str(path)))[0] or 'image'


def items_from_table(path: str) -> list[Item]:
  """Items of a CSV/JSONL with `image` and `prompt` columns."""
  rows = read_table(path)
  if rows and not {'image', 'prompt'} <= set(rows[0]):
    raise ValueError(f'{path} has columns {sorted(rows[0])}; expected '
                     '`image` and `prompt`')
  base = os.path.dirname(os.path.abspath(path))
  items = []
  for i, row in enumerate(rows):
    image = os.path.join(base, str(row['image']))
    fields = {k: v for k, v in row.items() if k not in ('image', 'prompt')}
    fields['image'] = row['image']
    prompt = row.get('prompt')
    items.append(Item(f'{i:06d}_{file_stem(image)}', image, prompt, fields,
                      None if prompt else 'no prompt'))
  return items


def _prompts_file(path: str) -> dict[str, str]:
  if path.endswith('.json'):
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
    if not isinstance(data, dict):
      raise ValueError(f'{path}: expected a JSON object {{file name: prompt}}')
    return {str(k): str(v) for k, v in data.items()}
  rows = read_table(path)
  if rows and not {'image', 'prompt'} <= set(rows[0]):
    raise ValueError(f'{path} has columns {sorted(rows[0])}; expected '
                     '`image` and `prompt`')
  return {r['image']: r['prompt'] for r in rows}


def items_from_dir(directory: str, prompts_file: Optional[str] = None,
                   prompt: Optional[str] = None) -> list[Item]:
  """Items of the image files in `directory` (see the module docstring)."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'--input_dir {directory} is not a directory')
  prompts = _prompts_file(prompts_file) if prompts_file else {}
  items = []
  for fname in sorted(os.listdir(directory)):
    path = os.path.join(directory, fname)
    if not (fname.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(path)):
      continue
    text = prompts.get(fname)
    sidecar = os.path.splitext(path)[0] + '.txt'
    if text is None and os.path.isfile(sidecar):
      with open(sidecar, encoding='utf-8') as f:
        text = f.read().strip()
    text = text if text is not None else prompt
    items.append(Item(file_stem(fname), path, text, {'image': fname},
                      None if text else
                      'no prompt (no prompts_file entry, sidecar .txt or '
                      '--prompt)'))
  return items


def items_from_tfrecord(pattern: str) -> Iterator[Item]:
  """Items of joined shards (image bytes, prompt, uid, release scores)."""
  files = sorted(glob.glob(pattern))
  if not files:
    raise FileNotFoundError(f'--tfrecord {pattern} matches no file')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # Leave accelerators to JAX.
  for path in files:
    for n, record in enumerate(tf.data.TFRecordDataset(path)
                               .as_numpy_iterator()):
      where = f'{os.path.basename(path)}#{n}'
      try:
        feats = tf.train.Example.FromString(record).features.feature
        uid = feats[release.UID].bytes_list.value[0].decode()
        image = feats[release.IMAGE].bytes_list.value[0]
        prompt = feats[release.PROMPT].bytes_list.value[0].decode()
      except (IndexError, KeyError, UnicodeDecodeError, ValueError) as e:
        yield Item(where, b'', None, {'image': where},
                   f'unreadable record: {e!r}')
        continue
      true = {name: float(feats[field].float_list.value[0])
              for name, field in zip(rahf.SCORE_TYPES, release.SCORE_FIELDS)
              if feats[field].float_list.value}
      yield Item(uid, image, prompt,
                 {'image': uid, 'uid': uid, 'true_scores': true})


# ----------------------------------------------------------------------------
# Prediction.
# ----------------------------------------------------------------------------


def predict_items(predictor: inference.Predictor, items: Iterable[Item], *,
                  heatmap_size: inference.HeatmapSize = None,
                  keep_rgb: bool = False) -> Iterator[Result]:
  """Predicts in batches of `predictor.max_batch_size`.

  Predictions come in input order. Items whose image cannot be read come
  back at once with `error` set (possibly before predictions of earlier
  items still waiting for a full batch); they never stop the run.
  """
  pending: list[tuple[Item, np.ndarray]] = []

  def flush():
    arrays = np.stack([inference.to_model_input(rgb, predictor.image_size)
                       for _, rgb in pending])
    preds = predictor.predict_arrays(
        arrays, [it.prompt for it, _ in pending],
        [rgb.shape[:2] for _, rgb in pending], heatmap_size)
    for (it, rgb), pred in zip(pending, preds):
      yield Result(it, pred, rgb if keep_rgb else None)
    pending.clear()

  for item in items:
    if item.error:
      yield Result(item, error=item.error)
      continue
    try:
      rgb = inference.load_rgb(item.image)
    except Exception as e:  # pylint: disable=broad-exception-caught
      # Any decoder failure (PIL raises many kinds) skips just this image.
      yield Result(item, error=str(e) if isinstance(e, ValueError)
                   else f'cannot read image: {e!r}')
      continue
    pending.append((item, rgb))
    if len(pending) == predictor.max_batch_size:
      yield from flush()
  if pending:
    yield from flush()


class Progress:
  """A one-line progress display on stderr (periodic lines when not a tty)."""

  def __init__(self, total: Optional[int], enabled: bool = True,
               stream: Optional[TextIO] = None, every_s: float = 5.0):
    stream = stream or sys.stderr
    self.total, self.enabled, self.stream = total, enabled, stream
    self.tty = enabled and hasattr(stream, 'isatty') and stream.isatty()
    self.every_s = every_s
    self.t0 = self.last = time.time()

  def _line(self, done: int, skipped: int) -> str:
    rate = done / max(time.time() - self.t0, 1e-9)
    of = f'/{self.total}' if self.total is not None else ''
    eta = ''
    if self.total is not None and rate > 0:
      eta = f' eta {int((self.total - done) / rate)}s'
    return f'[{done}{of}] {rate:.1f} img/s, {skipped} skipped{eta}'

  def update(self, done: int, skipped: int) -> None:
    if not self.enabled:
      return
    now = time.time()
    if self.tty:
      self.stream.write('\r' + self._line(done, skipped))
      self.stream.flush()
    elif now - self.last >= self.every_s:
      self.stream.write(self._line(done, skipped) + '\n')
      self.last = now

  def close(self, done: int, skipped: int) -> None:
    if self.enabled:
      self.stream.write(('\r' if self.tty else '') +
                        self._line(done, skipped) + '\n')
      self.stream.flush()


# ----------------------------------------------------------------------------
# Outputs.
# ----------------------------------------------------------------------------


def save_overlay(out_dir: str, name: str, rgb: np.ndarray,
                 pred: inference.Prediction) -> str:
  """image | implausibility | misalignment PNG; returns its path."""
  img = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
  longer = max(img.size)
  side = min(max(longer, OVERLAY_SIDE_RANGE[0]), OVERLAY_SIDE_RANGE[1])
  if side != longer:
    img = img.resize((max(1, round(img.width * side / longer)),
                      max(1, round(img.height * side / longer))),
                     Image.Resampling.BILINEAR)
  [path] = report.save_overlays(
      out_dir, np.asarray(img)[None], pred.implausibility_heatmap[None],
      pred.misalignment_heatmap[None], [name],
      labels=('image', 'implausibility', 'misalignment'))
  return path


def save_heatmaps(out_dir: str, name: str,
                  pred: inference.Prediction) -> dict[str, str]:
  """The heatmaps as 8-bit PNGs (value x 255); returns {type: path}."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for k in rahf.HEATMAP_TYPES:
    path = os.path.join(out_dir, f'{name}_{k}.png')
    Image.fromarray(np.round(pred.heatmap(k) * 255).astype(np.uint8),
                    'L').save(path)
    paths[k] = os.path.abspath(path)
  return paths


def read_heatmap_png(path: str) -> np.ndarray:
  """Inverse of `save_heatmaps`: float32 [h, w] in [0, 1]."""
  with Image.open(path) as img:
    return np.asarray(img.convert('L'), np.float32) / 255.0


def _parse_heatmap_size(text: str) -> inference.HeatmapSize:
  if text in ('native', ''):
    return None
  if text == 'image':
    return 'image'
  try:
    parts = [int(v) for v in text.lower().split('x')]
  except ValueError:
    parts = []
  if len(parts) == 1 and parts[0] > 0:
    return parts[0]
  if len(parts) == 2 and min(parts) > 0:
    return tuple(parts)
  raise argparse.ArgumentTypeError(
      f'--heatmap_size {text!r}; expected native, image, N or HxW')


def _print_single(res: Result, out: TextIO) -> None:
  pred = res.prediction
  scores = ' '.join(f'{k}={v:.3f}' for k, v in pred.scores.items())
  out.write(f'image: {res.item.fields.get("image", res.item.name)}\n'
            f'prompt: {res.item.prompt}\n'
            f'scores: {scores}\n'
            f'marked prompt: {pred.marked_prompt}\n'
            f'misaligned words: '
            f'{", ".join(pred.misaligned_words) or "(none)"}\n')


def run(predictor: inference.Predictor, items: Iterable[Item], *,
        output: Optional[str], out_dir: Optional[str], overlays: bool,
        heatmaps: bool, heatmap_size: inference.HeatmapSize = None,
        total: Optional[int] = None, progress: bool = True,
        echo: Optional[TextIO] = None) -> dict[str, int]:
  """Predicts `items`, writing JSONL / overlays / heatmaps; returns counts."""
  out_file = skip_file = None
  if output:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    out_file = open(output, 'w', encoding='utf-8')
    skip_file = open(os.path.join(os.path.dirname(os.path.abspath(output)),
                                  'skipped.jsonl'), 'w', encoding='utf-8')
  bar = Progress(total, progress)
  done = skipped = 0
  try:
    for res in predict_items(predictor, items, heatmap_size=heatmap_size,
                             keep_rgb=overlays):
      if res.error:
        skipped += 1
        print(f'skipped {res.item.fields.get("image", res.item.name)}: '
              f'{res.error}', file=sys.stderr)
        if skip_file:
          skip_file.write(json.dumps({'image': res.item.fields.get(
              'image', res.item.name), 'error': res.error}) + '\n')
      else:
        done += 1
        line = dict(res.item.fields, prompt=res.item.prompt,
                    **res.prediction.to_json())
        if overlays and out_dir:
          line['overlay'] = save_overlay(os.path.join(out_dir, 'overlays'),
                                         res.item.name, res.rgb,
                                         res.prediction)
        if heatmaps and out_dir:
          line['heatmaps'] = save_heatmaps(
              os.path.join(out_dir, 'heatmaps'), res.item.name,
              res.prediction)
        if echo:
          _print_single(res, echo)
          if 'overlay' in line:
            echo.write(f'overlay: {line["overlay"]}\n')
        if out_file:
          out_file.write(json.dumps(line) + '\n')
          out_file.flush()
      bar.update(done + skipped, skipped)
  finally:
    bar.close(done + skipped, skipped)
    for f in (out_file, skip_file):
      if f:
        f.close()
  return {'predicted': done, 'skipped': skipped}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n', maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--checkpoint', required=True,
                      help='export directory (or training directory)')
  parser.add_argument('--step', type=int, default=None,
                      help='checkpoint step of a training directory')
  parser.add_argument('--vocab', default=None, help='overrides the vocabulary')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--image', help='one image (needs --prompt)')
  source.add_argument('--input_csv', help='CSV/JSONL with image,prompt')
  source.add_argument('--input_dir', help='directory of images')
  source.add_argument('--tfrecord', help='glob of joined shards')
  parser.add_argument('--prompt', help='the prompt (--image), or the '
                      'fallback prompt of --input_dir')
  parser.add_argument('--prompts_file', help='--input_dir prompts: JSON '
                      '{file: prompt} or CSV image,prompt')
  parser.add_argument('--out_dir', help='overlays/ and heatmaps/ go here')
  parser.add_argument('--output', help='JSONL (default '
                      '<out_dir>/predictions.jsonl in batch modes)')
  parser.add_argument('--overlays', action='store_true',
                      help='overlay PNGs in batch modes (always with --image '
                      'and --out_dir)')
  parser.add_argument('--save_heatmaps', action='store_true')
  parser.add_argument('--heatmap_size', type=_parse_heatmap_size,
                      default=None, help='native (default), image, N or HxW')
  parser.add_argument('--batch_size', type=int, default=8,
                      help='largest compiled batch')
  parser.add_argument('--num_beams', type=int, default=1)
  parser.add_argument('--draft_tokens', type=int, default=0,
                      help='K > 0: greedy keyword decoding verifies K tokens '
                      'copied from the prompt per decoder call (same output)')
  parser.add_argument('--limit', type=int, default=None,
                      help='predict at most this many items')
  parser.add_argument('--no_progress', action='store_true')
  args = parser.parse_args(argv)
  single = args.image is not None
  if single and not args.prompt:
    parser.error('--image needs --prompt')
  output = args.output
  if not single and not output:
    if not args.out_dir:
      parser.error('batch modes need --out_dir or --output')
    output = os.path.join(args.out_dir, 'predictions.jsonl')
  try:
    if single:
      items = [Item(file_stem(args.image), args.image, args.prompt,
                    {'image': args.image})]
    elif args.input_csv:
      items = items_from_table(args.input_csv)
    elif args.input_dir:
      items = items_from_dir(args.input_dir, args.prompts_file, args.prompt)
    else:
      items = items_from_tfrecord(args.tfrecord)
    total = len(items) if isinstance(items, list) else None
    if args.limit is not None:
      items = itertools.islice(items, args.limit)
      total = min(total, args.limit) if total is not None else args.limit
    predictor = inference.Predictor.load(
        args.checkpoint, step=args.step, vocab_path=args.vocab,
        max_batch_size=args.batch_size, num_beams=args.num_beams,
        draft_tokens=args.draft_tokens)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  counts = run(predictor, items, output=output, out_dir=args.out_dir,
               overlays=args.overlays or (single and bool(args.out_dir)),
               heatmaps=args.save_heatmaps, heatmap_size=args.heatmap_size,
               total=total, progress=not (args.no_progress or single),
               echo=sys.stdout if single else None)
  if not single:
    print(f'{counts["predicted"]} predicted, {counts["skipped"]} skipped; '
          f'wrote {output}')
  return 0 if counts['predicted'] else 1


if __name__ == '__main__':
  sys.exit(main())
