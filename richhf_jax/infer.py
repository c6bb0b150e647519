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
r"""Batch inference as a gin-configured run (`gin/runs/infer.gin`).

  python -m richhf_jax.infer --gin_file=gin/runs/infer.gin \
    --gin.CHECKPOINT_PATH="'/tmp/rahf_export'" \
    --gin.INFER_TFRECORD="'/data/joined/test.tfrecord-*'" \
    --gin.INFER_OUTPUT_DIR="'/tmp/infer'"

The same work as `python -m richhf_jax.predict` in a batch mode (one JSONL
line per image, `skipped.jsonl`, optional overlays and heatmap PNGs), with
the settings in gin like the train and eval runs.
"""

from typing import Optional

import gin

from richhf_jax import gin_utils
from richhf_jax import predict


@gin.configurable(module='richhf_jax')
def infer(checkpoint_path: str = gin.REQUIRED,
          output_dir: str = gin.REQUIRED,
          input_csv: Optional[str] = None,
          input_dir: Optional[str] = None,
          tfrecord: Optional[str] = None,
          prompt: Optional[str] = None,
          batch_size: int = 8,
          heatmap_size: Optional[str] = None,
          overlays: bool = False,
          save_heatmaps: bool = False,
          num_beams: int = 1) -> int:
  """Predicts on one input source; returns predict's exit status.

  Args:
    checkpoint_path: an export (`richhf_jax.export`) or a training run dir.
    output_dir: predictions.jsonl, skipped.jsonl, overlays/, heatmaps/.
    input_csv: CSV/JSONL with image,prompt columns.
    input_dir: a directory of images (prompts: sidecar .txt or `prompt`).
    tfrecord: a glob of joined shards.
    prompt: the prompt of every image of `input_dir` without a sidecar.
    batch_size: images per batch.
    heatmap_size: None (the head's), 'image', 'N' or 'HxW'.
    overlays: also write overlay PNGs.
    save_heatmaps: also write the heatmaps as PNGs.
    num_beams: 1 = greedy decoding.
  """
  sources = {'--input_csv': input_csv, '--input_dir': input_dir,
             '--tfrecord': tfrecord}
  given = {k: v for k, v in sources.items() if v}
  if len(given) != 1:
    raise ValueError('set exactly one of INFER_INPUT_CSV, INFER_INPUT_DIR, '
                     f'INFER_TFRECORD (got {sorted(given) or "none"})')
  argv = ['--checkpoint', checkpoint_path, '--out_dir', output_dir,
          '--batch_size', str(batch_size), '--num_beams', str(num_beams)]
  for flag, value in given.items():
    argv += [flag, value]
  if prompt:
    argv += ['--prompt', prompt]
  if heatmap_size:
    argv += ['--heatmap_size', str(heatmap_size)]
  if overlays:
    argv.append('--overlays')
  if save_heatmaps:
    argv.append('--save_heatmaps')
  return predict.main(argv)


def _main() -> None:
  status = []
  gin_utils.run(lambda: status.append(infer()))
  raise SystemExit(status[0] if status else 1)


if __name__ == '__main__':
  _main()
