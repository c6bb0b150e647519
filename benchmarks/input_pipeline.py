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
"""Throughput of the seqio input pipeline at the paper's resolution.

Generates a small synthetic RichHF-18K with Pick-a-Pic-sized images (512 and
768 px JPEGs, 512x512 heatmaps) into --work_dir, joins it, then times the
training stream of `richhf_jax.data.pipeline.get_dataset` (shuffled,
repeated, batched) for each case: image side, heatmap side (the head's
output resolution), variant. Prints a table and one JSON line per case.

  python benchmarks/input_pipeline.py [--work_dir /tmp/richhf_bench]
      [--batch_size 32] [--steps 20] [--num_train 64]
"""

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from richhf_jax import test_utils
from richhf_jax.data import join
from richhf_jax.data import pipeline
from richhf_jax.data import synthetic
# pylint: enable=g-import-not-at-top


def prepare(work_dir: str, num_train: int) -> tuple[str, str]:
  """Synthetic data + join (reused when already there)."""
  synth = os.path.join(work_dir, 'synth')
  joined = os.path.join(work_dir, 'joined')
  if not os.path.exists(os.path.join(joined, join.SUMMARY_FILE)):
    synthetic.generate(synth, num_train=num_train, num_dev=4, num_test=4,
                       seed=0, image_sizes=(512, 768))
    join.run_join(os.path.join(synth, 'richhf18k'),
                  os.path.join(synth, 'pickapic', '*.parquet'), joined,
                  progress=False)
  return joined, os.path.join(synth, 'vocab', 'spm.model')


def model_config(image_size: int, heatmap_size: int, variant: str):
  """The tiny model's config at the given data sizes (the pipeline reads
  only `vit.image_size`, `heatmap_size` and `variant`)."""
  base = test_utils.tiny_config(variant=variant)
  return dataclasses.replace(
      base, vit=dataclasses.replace(base.vit, image_size=image_size,
                                    patch_size=16),
      heatmap_head=dataclasses.replace(base.heatmap_head,
                                       output_size=(heatmap_size,
                                                    heatmap_size)))


def run_case(data, image_size: int, heatmap_size: int, variant: str,
             batch_size: int, steps: int, warmup: int) -> dict:
  """Times `steps` batches after `warmup` batches; returns the result row."""
  config = model_config(image_size, heatmap_size, variant)
  ds = pipeline.get_dataset(data, config, 'train', batch_size, shuffle=True,
                            repeat=True)
  it = pipeline.numpy_batches(ds)
  t0 = time.perf_counter()
  for _ in range(warmup):
    next(it)
  t1 = time.perf_counter()
  for _ in range(steps):
    batch = next(it)
  t2 = time.perf_counter()
  return dict(image_size=image_size, heatmap_size=heatmap_size,
              variant=variant, batch_size=batch_size, steps=steps,
              examples_per_sec=round(steps * batch_size / (t2 - t1), 1),
              warmup_sec=round(t1 - t0, 2),
              image_shape=list(batch['image'].shape),
              heatmap_shape=list(batch['implausibility_heatmap'].shape),
              encoder_input_shape=list(batch['encoder_input_tokens'].shape),
              cpus=os.cpu_count())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--work_dir', default='/tmp/richhf_bench')
  parser.add_argument('--num_train', type=int, default=64)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=3)
  args = parser.parse_args(argv)
  t = time.perf_counter()
  joined, vocab = prepare(args.work_dir, args.num_train)
  print(f'data ready in {time.perf_counter() - t:.1f}s: {joined}',
        file=sys.stderr)
  data = pipeline.DataConfig(joined, vocab, input_length=64,
                             target_length=96)
  cases = [(384, 96, 'multihead'), (384, 384, 'multihead'),
           (384, 96, 'augmented')]
  rows = [run_case(data, s, h, v, args.batch_size, args.steps, args.warmup)
          for s, h, v in cases]
  print(f"{'image':>6} {'heatmap':>8} {'variant':>10} {'batch':>6} "
        f"{'examples/s':>11}")
  for r in rows:
    print(f"{r['image_size']:>6} {r['heatmap_size']:>8} {r['variant']:>10} "
          f"{r['batch_size']:>6} {r['examples_per_sec']:>11.1f}")
  for r in rows:
    print(json.dumps(r))
  return 0


if __name__ == '__main__':
  sys.exit(main())
