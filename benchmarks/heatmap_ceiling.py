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
"""How much a low-resolution heatmap head can lose: the resampling ceiling.

The ground-truth heatmaps are averages of discs of radius 1/20 of the image
height, so they hold little high-frequency content. A head that predicts at
r x r and upsamples bilinearly can at best reproduce the ground truth
downsampled to r x r and upsampled back. This script measures that ceiling:
for each r it takes the 512x512 ground-truth maps of the synthetic
generator, downsamples them (bilinear with antialiasing, i.e. area-like
averaging), upsamples back bilinearly to the evaluation size, and reports
the `richhf_jax.metrics` heatmap metrics against the original at that size.

  python benchmarks/heatmap_ceiling.py [--work_dir /tmp/richhf_ceiling]
      [--num_examples 300] [--resolutions 24,48,96,192]
      [--eval_sizes 512,384]

The data is written once by `richhf_jax.data.synthetic.generate` under
--work_dir; the maps are rebuilt from its `meta/train.jsonl` rater points
with `synthetic.rater_heatmap` (exactly the maps in the release records).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import jax
import numpy as np

from richhf_jax import metrics
from richhf_jax.data import synthetic
# pylint: enable=g-import-not-at-top

METRICS = ('cc', 'kld', 'sim', 'nss', 'auc_judd', 'mse_all')


def load_maps(work_dir: str, num_examples: int, seed: int = 0) -> np.ndarray:
  """[2N, 512, 512] float32 GT maps in [0, 1] (artifact, misalignment).

  Generates `num_examples` train examples into `work_dir` unless a run with
  at least that many is already there.
  """
  meta = os.path.join(work_dir, 'meta', 'train.jsonl')
  have = 0
  if os.path.exists(meta):
    with open(meta) as f:
      have = sum(1 for _ in f)
  if have < num_examples:
    synthetic.generate(work_dir, num_train=num_examples, num_dev=0,
                       num_test=0, seed=seed, write_vocab=False)
  maps = []
  with open(meta) as f:
    for i, line in enumerate(f):
      if i >= num_examples:
        break
      rec = json.loads(line)
      for key in ('artifact_points', 'misalignment_points'):
        maps.append(synthetic.rater_heatmap(rec[key]))
  return np.stack(maps).astype(np.float32) / 255.0


def resample(maps: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of [N, H, W] maps to [N, size, size] (antialiased)."""
  out = jax.image.resize(maps, (maps.shape[0], size, size), 'linear',
                         antialias=True)
  return np.clip(np.asarray(out), 0.0, 1.0)


def ceiling(maps: np.ndarray, resolutions, eval_sizes) -> list[dict]:
  """One row per (eval size, head resolution): metrics vs the original."""
  rows = []
  for eval_size in eval_sizes:
    gt = maps if eval_size == maps.shape[-1] else resample(maps, eval_size)
    for r in resolutions:
      pred = resample(resample(maps, r), eval_size)
      m = metrics.heatmap_metrics(pred, gt)
      rows.append(dict(benchmark='heatmap_ceiling', head_resolution=r,
                       eval_size=eval_size, num_maps=int(maps.shape[0]),
                       num_gt_positive=int(np.sum(gt.max(axis=(1, 2)) > 0)),
                       **{k: round(m[k], 5) for k in METRICS}))
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--work_dir', default='/tmp/richhf_ceiling')
  parser.add_argument('--num_examples', type=int, default=300)
  parser.add_argument('--resolutions', default='24,48,96,192')
  parser.add_argument('--eval_sizes', default='512,384')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.num_examples < 1:
    parser.error(f'--num_examples must be >= 1, got {args.num_examples}')
  resolutions = [int(x) for x in args.resolutions.split(',')]
  eval_sizes = [int(x) for x in args.eval_sizes.split(',')]
  t0 = time.perf_counter()
  maps = load_maps(args.work_dir, args.num_examples, args.seed)
  print(f'{maps.shape[0]} maps ready in {time.perf_counter() - t0:.1f}s',
        file=sys.stderr)
  rows = ceiling(maps, resolutions, eval_sizes)
  print(f"{'eval':>5} {'head':>5} " + ' '.join(f'{k:>9}' for k in METRICS))
  for r in rows:
    print(f"{r['eval_size']:>5} {r['head_resolution']:>5} " +
          ' '.join(f'{r[k]:>9.4f}' for k in METRICS))
  for r in rows:
    print(json.dumps(r))
  return 0


if __name__ == '__main__':
  sys.exit(main())
