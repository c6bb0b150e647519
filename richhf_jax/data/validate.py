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
"""Validates RichHF-18K release (or joined) TFRecord files.

Prints every problem count with the first few offending filenames. Exit
status: 1 on structural corruption (unreadable TFRecord data, a record that
is not a `tf.train.Example`, a missing or mistyped field, a bad heatmap, a
score non-finite or outside [0, 1], a label that is not 0/1; in joined files
also an image that does not fully decode and an empty prompt), 2 on a
missing file, else 0. Label/word-count mismatches (checkable only in joined
files, which carry the prompt) are counted and reported but do not fail: the
join skips them with a count (SPEC.md section 2).

Usage:
  python -m richhf_jax.data.validate richhf-18k/*.tfrecord
  python -m richhf_jax.data.validate joined/train.tfrecord-*
"""

import collections
import os
import sys
from typing import Any, Optional, Sequence

from richhf_jax.data import release

MAX_LISTED = 5


def validate_file(path: str) -> dict[str, Any]:
  """Checks every record of one file.

  Args:
    path: a TFRecord file of release or joined examples.

  Returns:
    {'records', 'ok', 'counts': {problem: n}, 'examples': {problem: [...]}}.
    Problems: 'unreadable' (damaged TFRecord data), 'corrupt' (a record
    that fails `release.parse_release_example`), 'label_mismatch',
    'corrupt_image' (the image does not fully decode or has an unsupported
    format), 'empty_prompt' (the last three in joined files only),
    'duplicate_uid'.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  counts = collections.Counter()
  examples = collections.defaultdict(list)
  seen = set()
  records = ok = 0

  def note(kind, item):
    counts[kind] += 1
    if len(examples[kind]) < MAX_LISTED:
      examples[kind].append(item)

  try:
    for rec in tf.data.TFRecordDataset(path).as_numpy_iterator():
      records += 1
      try:
        example = release.example_from_bytes(rec)
        feats = example.features.feature
        prompt = None
        if release.PROMPT in feats:
          prompt = feats[release.PROMPT].bytes_list.value[0].decode(
              'utf-8', 'replace')
        record = release.parse_release_example(example)
      except release.CorruptRecordError as e:
        note('corrupt', f'record {records - 1}: {e}')
        continue
      if release.IMAGE in feats:
        try:
          release.check_image(feats[release.IMAGE].bytes_list.value[0]
                              if feats[release.IMAGE].bytes_list.value
                              else b'', uid=record.uid)
        except release.CorruptImageError as e:
          note('corrupt_image', f'record {records - 1}: {e}')
          continue
      if prompt is not None and not release.prompt_words(prompt):
        note('empty_prompt', f'record {records - 1}: {record.filename}')
        continue
      if record.uid in seen:
        note('duplicate_uid', record.filename)
      seen.add(record.uid)
      if prompt is not None:
        try:
          release.check_label_count(record, prompt)
        except release.LabelCountMismatchError:
          note('label_mismatch', record.filename)
          continue
      ok += 1
  except tf.errors.OpError as e:
    note('unreadable', f'after record {records}: '
         f'{(e.message or str(e)).splitlines()[0]}')
  return dict(records=records, ok=ok, counts=dict(counts),
              examples=dict(examples))


STRUCTURAL = ('unreadable', 'corrupt', 'corrupt_image', 'empty_prompt')


def main(argv: Optional[Sequence[str]] = None) -> int:
  """CLI entry point; returns the exit status (see the module docstring)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  paths = list(sys.argv[1:] if argv is None else argv)
  if not paths:
    print('usage: python -m richhf_jax.data.validate FILE...',
          file=sys.stderr)
    return 2
  status = 0
  for path in paths:
    if not os.path.exists(path):
      print(f'{path}: file not found', file=sys.stderr)
      status = max(status, 2)
      continue
    result = validate_file(path)
    print(f"{path}: {result['records']} records, {result['ok']} ok")
    for kind, n in sorted(result['counts'].items()):
      policy = ('STRUCTURAL' if kind in STRUCTURAL else
                'skipped by the join' if kind == 'label_mismatch' else
                'warning')
      print(f'  {kind}: {n} ({policy}); first: '
            + '; '.join(result['examples'][kind]))
    if any(result['counts'].get(k) for k in STRUCTURAL):
      status = max(status, 1)
  return status


if __name__ == '__main__':
  sys.exit(main())
