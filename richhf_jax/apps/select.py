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
r"""Fine-tuning data selection: the best image per prompt, if good enough.

Paper Sec. 5: RAHF's scores pick high-quality images to fine-tune a
text-to-image model on. Given several images per prompt, every image is
scored, and per prompt the best image is kept when its score reaches the
threshold.

  python -m richhf_jax.apps.select --checkpoint /tmp/rahf_export \
    --input candidates.csv --out_dir /tmp/selected \
    --weights plausibility=1,aesthetics=1 --threshold 0.6

`--input` is a CSV or JSONL with `prompt` and `image` (path, relative to the
file) columns. Rows that already carry a `scores` object with the four
scores (e.g. the output JSONL of `richhf_jax.predict`) are used as they are,
without the model, unless `--rescore`. The score is one score type
(`--score overall`) or a weighted mean (`--weights name=w,...`, normalised
by the sum of the weights so it stays in [0, 1]).

Writes `selected.jsonl` (one line per kept prompt: prompt, image, score,
scores, candidates), `summary.json` (counts, the settings and score
histograms over all scored images and over the kept ones) and `summary.md`.
"""

import argparse
import collections
import json
import os
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from richhf_jax import inference
from richhf_jax import predict as predict_lib
from richhf_jax.models import rahf

HISTOGRAM_BINS = 10


def parse_weights(score: Optional[str] = None,
                  weights: Optional[str | Mapping[str, float]] = None
                  ) -> dict[str, float]:
  """{score type: weight} from `--score NAME` or `--weights a=1,b=2`.

  Raises:
    ValueError: an unknown score name, a negative or malformed weight, or
      all weights zero.
  """
  if score is not None and weights is not None:
    raise ValueError('give either a score name or weights, not both')
  if weights is None:
    weights = {score or 'overall': 1.0}
  elif isinstance(weights, str):
    parsed = {}
    for part in filter(None, (p.strip() for p in weights.split(','))):
      name, sep, value = part.partition('=')
      try:
        parsed[name.strip()] = float(value) if sep else float('nan')
      except ValueError:
        parsed[name.strip()] = float('nan')
      if not np.isfinite(parsed[name.strip()]):
        raise ValueError(f'weights: {part!r} is not NAME=NUMBER')
    weights = parsed
  weights = {k: float(v) for k, v in weights.items()}
  unknown = sorted(set(weights) - set(rahf.SCORE_TYPES))
  if unknown:
    raise ValueError(f'unknown score names {unknown}; expected names from '
                     f'{rahf.SCORE_TYPES}')
  if any(v < 0 for v in weights.values()) or not sum(weights.values()) > 0:
    raise ValueError(f'weights {weights} must be >= 0 with a positive sum')
  return weights


def combined_score(scores: Mapping[str, float],
                   weights: Mapping[str, float]) -> float:
  """Weighted mean of the named scores."""
  total = sum(weights.values())
  return float(sum(w * float(scores[k]) for k, w in weights.items()) / total)


def select_per_prompt(rows: Sequence[Mapping[str, Any]],
                      weights: Mapping[str, float],
                      threshold: float) -> tuple[list[dict[str, Any]], int]:
  """Keeps, per prompt, the best-scoring row if it reaches `threshold`.

  Args:
    rows: scored rows with `prompt`, `image` and `scores`.
    weights: see `parse_weights`.
    threshold: the least combined score of a kept image.

  Returns:
    (selected rows in order of first appearance of their prompt, number of
    distinct prompts). Ties go to the earlier row.
  """
  groups: dict[str, list[Mapping[str, Any]]] = collections.OrderedDict()
  for row in rows:
    groups.setdefault(str(row['prompt']).strip(), []).append(row)
  selected = []
  for prompt, group in groups.items():
    values = [combined_score(r['scores'], weights) for r in group]
    best = int(np.argmax(values))
    if values[best] >= threshold:
      selected.append({
          'prompt': prompt, 'image': group[best]['image'],
          'score': round(values[best], 6),
          'scores': dict(group[best]['scores']),
          'candidates': len(group),
      })
  return selected, len(groups)


def histogram(values: Sequence[float],
              bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
  """Counts of `values` in `bins` equal bins over [0, 1].

  Bin i holds [i / bins, (i + 1) / bins), the last one also 1.0; values
  outside [0, 1] count in the end bins. Unlike `np.histogram`'s float edges,
  a value such as 0.3 falls in the bin starting at 0.3.
  """
  v = np.clip(np.asarray(values, float), 0.0, 1.0)
  index = np.minimum(np.floor(v * bins + 1e-9).astype(int), bins - 1)
  counts = np.bincount(index, minlength=bins)
  return {'edges': [round(i / bins, 6) for i in range(bins + 1)],
          'counts': [int(c) for c in counts]}


def summarize(scored: Sequence[Mapping[str, Any]],
              selected: Sequence[Mapping[str, Any]], num_prompts: int,
              weights: Mapping[str, float], threshold: float,
              skipped: int) -> dict[str, Any]:
  """The summary.json contents."""
  def hists(rows):
    out = {k: histogram([r['scores'][k] for r in rows])
           for k in rahf.SCORE_TYPES}
    out['combined'] = histogram(
        [combined_score(r['scores'], weights) for r in rows])
    return out

  return {
      'images_scored': len(scored), 'images_skipped': skipped,
      'prompts': num_prompts, 'prompts_kept': len(selected),
      'weights': dict(weights), 'threshold': threshold,
      'histograms': {'all': hists(scored), 'selected': hists(selected)},
  }


def render_markdown(summary: Mapping[str, Any]) -> str:
  """summary.md: counts and text histograms of the combined score."""
  lines = [
      '# Fine-tuning data selection', '',
      f'- images scored: {summary["images_scored"]} '
      f'(skipped: {summary["images_skipped"]})',
      f'- prompts kept: {summary["prompts_kept"]} of {summary["prompts"]}',
      f'- score: weighted mean of {summary["weights"]}, threshold '
      f'{summary["threshold"]}', '']
  for which in ('all', 'selected'):
    h = summary['histograms'][which]['combined']
    peak = max(h['counts'] + [1])
    lines += [f'## Combined score, {which} images', '',
              '| bin | count | |', '|---|---:|---|']
    for lo, hi, c in zip(h['edges'], h['edges'][1:], h['counts']):
      lines.append(f'| {lo:.1f}-{hi:.1f} | {c} | '
                   f'{"#" * int(round(20 * c / peak))} |')
    lines.append('')
  return '\n'.join(lines)


def _has_scores(row: Mapping[str, Any]) -> bool:
  s = row.get('scores')
  return isinstance(s, dict) and all(k in s for k in rahf.SCORE_TYPES)


def score_rows(path: str, predictor: Optional[inference.Predictor],
               rescore: bool = False) -> tuple[list[dict[str, Any]], int]:
  """Scored rows of a CSV/JSONL (running the model when needed).

  Returns:
    (rows with prompt, image and scores; number of skipped rows).

  Raises:
    ValueError: the rows lack scores and no predictor is given.
  """
  rows = predict_lib.read_table(path)
  if rows and not {'image', 'prompt'} <= set(rows[0]):
    raise ValueError(f'{path} has columns {sorted(rows[0])}; expected '
                     '`image` and `prompt`')
  if not rescore and all(_has_scores(r) for r in rows):
    return [dict(r) for r in rows], 0
  if predictor is None:
    raise ValueError(f'{path}: rows without scores; pass --checkpoint to '
                     'score them')
  scored, skipped = [], 0
  for res in predict_lib.predict_items(predictor,
                                       predict_lib.items_from_table(path)):
    if res.error:
      print(f'skipped {res.item.fields.get("image")}: {res.error}',
            file=sys.stderr)
      skipped += 1
      continue
    scored.append(dict(res.item.fields, prompt=res.item.prompt,
                       scores=res.prediction.scores))
  return scored, skipped


def run(path: str, out_dir: str, weights: Mapping[str, float],
        threshold: float, predictor: Optional[inference.Predictor] = None,
        rescore: bool = False) -> dict[str, Any]:
  """Scores, selects and writes the outputs; returns the summary."""
  scored, skipped = score_rows(path, predictor, rescore)
  selected, num_prompts = select_per_prompt(scored, weights, threshold)
  summary = summarize(scored, selected, num_prompts, weights, threshold,
                      skipped)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'selected.jsonl'), 'w') as f:
    for row in selected:
      f.write(json.dumps(row) + '\n')
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(out_dir, 'summary.md'), 'w') as f:
    f.write(render_markdown(summary))
  return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n', maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--input', required=True, help='CSV/JSONL of '
                      'prompt,image (optionally with scores)')
  parser.add_argument('--out_dir', required=True)
  parser.add_argument('--checkpoint', help='export or training directory')
  group = parser.add_mutually_exclusive_group()
  group.add_argument('--score', choices=rahf.SCORE_TYPES,
                     help='select by this score (default overall)')
  group.add_argument('--weights', help='weighted mean, e.g. '
                     'plausibility=1,aesthetics=0.5')
  parser.add_argument('--threshold', type=float, default=0.0)
  parser.add_argument('--rescore', action='store_true',
                      help='run the model even when rows carry scores')
  parser.add_argument('--batch_size', type=int, default=8)
  args = parser.parse_args(argv)
  try:
    weights = parse_weights(args.score, args.weights)
    predictor = (inference.Predictor.load(args.checkpoint,
                                          max_batch_size=args.batch_size)
                 if args.checkpoint else None)
    summary = run(args.input, args.out_dir, weights, args.threshold,
                  predictor, args.rescore)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'kept {summary["prompts_kept"]} of {summary["prompts"]} prompts '
        f'({summary["images_scored"]} images scored, '
        f'{summary["images_skipped"]} skipped); wrote {args.out_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
