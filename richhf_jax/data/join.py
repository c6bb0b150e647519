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
"""Joins the RichHF-18K release with the Pick-a-Pic v1 images and prompts.

The release holds labels only; images and captions come from Pick-a-Pic v1
parquet shards (`caption`, `image_0_uid`, `image_1_uid`, `jpg_0`, `jpg_1`).
The join runs in three stages, with bounded memory:

1. Read the release TFRecords (`{train,dev,test}.tfrecord`) for the uid set
   of each split (the `filename` stem).
2. Stream the parquet shards row group by row group, reading the two uid
   columns first and the caption/image columns only for row groups that hold
   a wanted uid. Matched images are written to an on-disk store
   `OUT/_work/images/<group>/` keyed by uid and each finished shard leaves a
   done marker `OUT/_work/shards/<shard>.json` (its uid -> caption matches),
   so an interrupted join resumes where it stopped. A shard's Pick-a-Pic
   split is read from its file name: a name containing `test` is a test
   shard (matched against the release's test uids), one containing `train` a
   train shard (matched against train and dev uids, which Pick-a-Pic keeps in
   its train split); any other shard (e.g. `validation-*`) is skipped and
   listed in the summary. The first occurrence of a uid wins (Pick-a-Pic
   repeats images across comparisons).
3. Write `OUT/{train,dev,test}.tfrecord-{i:05d}-of-{n:05d}` in release
   order (record k to shard k mod n): the 8 release fields unchanged plus
   `image`, `uid`, `prompt`, `clean_prompt`, `target`
   (docs/architecture.md). Records are skipped, counted and listed when the
   uid is missing from Pick-a-Pic, when the labels do not pair with the
   caption's words (SPEC.md section 2: skip with a count), when the caption
   has no word, when the image is empty or does not fully decode (truncated,
   unknown format; `release.check_image`), or when the record is corrupt.
   Images in any mode TensorFlow decodes to RGB (grayscale, alpha, palette,
   CMYK JPEG, 16-bit PNG) are kept as they are. The counts go to stdout
   and `OUT/join_summary.json`.

Usage:
  python -m richhf_jax.data.join --richhf_dir richhf-18k \
      --pickapic 'pickapic_v1/data/*.parquet' --out_dir joined [--num_shards 8]
"""

import argparse
import collections
import glob
import json
import math
import os
import sys
import time
from typing import Any, Optional, Sequence

from richhf_jax.data import release

SPLITS = ('train', 'dev', 'test')
# Which Pick-a-Pic split holds each release split's images.
GROUP_OF_SPLIT = {'train': 'train', 'dev': 'train', 'test': 'test'}
COLUMNS = ('caption', 'image_0_uid', 'image_1_uid', 'jpg_0', 'jpg_1')
SUMMARY_FILE = 'join_summary.json'
WORK_DIR = '_work'
RECORDS_PER_SHARD = 1024  # for the automatic shard count
MAX_LISTED = 10


def shard_group(path: str) -> Optional[str]:
  """The Pick-a-Pic split of a parquet shard, from its file name.

  Args:
    path: the shard path.

  Returns:
    'test' if the base name contains 'test', else 'train' if it contains
    'train', else None (not a split the release uses).
  """
  base = os.path.basename(path).lower()
  if 'test' in base:
    return 'test'
  if 'train' in base:
    return 'train'
  return None


def release_path(richhf_dir: str, split: str) -> str:
  """`richhf_dir/<split>.tfrecord` (the release's file names)."""
  return os.path.join(richhf_dir, f'{split}.tfrecord')


def _iter_records(path: str):
  """Yields serialized records; yields an Exception on a damaged file."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    for rec in tf.data.TFRecordDataset(path).as_numpy_iterator():
      yield rec
  except tf.errors.OpError as e:
    yield release.CorruptRecordError(
        f'{path}: unreadable TFRecord data after the records read so far: '
        f'{e.message.splitlines()[0] if e.message else e}')


def read_release_uids(richhf_dir: str) -> dict[str, list[str]]:
  """Reads each split's uids in release order (unparseable records skipped).

  Args:
    richhf_dir: the directory with `{train,dev,test}.tfrecord`.

  Returns:
    split -> list of uids.

  Raises:
    FileNotFoundError: if a split's file is missing.
  """
  uids = {}
  for split in SPLITS:
    path = release_path(richhf_dir, split)
    if not os.path.exists(path):
      raise FileNotFoundError(
          f'release file {path} not found (expected the RichHF-18K '
          f'{{train,dev,test}}.tfrecord files in --richhf_dir)')
    out = []
    for rec in _iter_records(path):
      if isinstance(rec, Exception):
        break
      try:
        out.append(release.parse_release_example(
            rec, decode_heatmaps=False).uid)
      except release.ReleaseError:
        continue
    uids[split] = out
  return uids


def _atomic_write(path: str, data: bytes) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def _image_path(out_dir: str, group: str, uid: str) -> str:
  return os.path.join(out_dir, WORK_DIR, 'images', group, uid[:2], uid)


def _binary_column(table, name):
  """A binary column; HF image structs {bytes, path} give their bytes."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  col = table.column(name)
  if pa.types.is_struct(col.type):
    col = pc.struct_field(col, 'bytes')
  return col


def scan_shard(path: str, group: str, wanted, out_dir: str) -> dict[str, Any]:
  """Streams one parquet shard, storing the images of wanted uids.

  Args:
    path: the parquet shard.
    group: 'train' or 'test'.
    wanted: a pyarrow string array of the uids to keep.
    out_dir: the join's output directory (the store is under `_work`).

  Returns:
    {'matches': {uid: caption}, 'rows': rows scanned}.

  Raises:
    ValueError: if the shard lacks a required column.
  """
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  pf = pq.ParquetFile(path)
  missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
  if missing:
    raise ValueError(f'{path}: parquet shard lacks columns {missing}; '
                     f'expected Pick-a-Pic columns {list(COLUMNS)}')
  matches, rows = {}, 0
  for rg in range(pf.num_row_groups):
    ids = pf.read_row_group(rg, columns=['image_0_uid', 'image_1_uid'])
    rows += ids.num_rows
    masks = [pc.fill_null(pc.is_in(ids.column(f'image_{k}_uid'),
                                   value_set=wanted), False) for k in (0, 1)]
    if not any(pc.any(m).as_py() for m in masks):
      continue
    table = pf.read_row_group(rg, columns=list(COLUMNS))
    for k, mask in enumerate(masks):
      sub = table.filter(mask)
      if not sub.num_rows:
        continue
      for uid, caption, img in zip(
          sub.column(f'image_{k}_uid').to_pylist(),
          sub.column('caption').to_pylist(),
          _binary_column(sub, f'jpg_{k}').to_pylist()):
        if uid in matches:
          continue
        target = _image_path(out_dir, group, uid)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        _atomic_write(target, img or b'')
        matches[uid] = caption if caption is not None else ''
  return dict(matches=matches, rows=rows)


def _marker_path(out_dir: str, shard: str) -> str:
  return os.path.join(out_dir, WORK_DIR, 'shards',
                      os.path.basename(shard) + '.json')


def scan_pickapic(shards: Sequence[str], uids: dict[str, list[str]],
                  out_dir: str, progress: bool = True) -> dict[str, Any]:
  """Stage 2: scans every shard not yet done; returns the scan summary."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  wanted = {g: pa.array(sorted({u for s in SPLITS if GROUP_OF_SPLIT[s] == g
                                for u in uids[s]}), pa.string())
            for g in ('train', 'test')}
  os.makedirs(os.path.join(out_dir, WORK_DIR, 'shards'), exist_ok=True)
  info = dict(scanned=[], skipped_done=[], skipped_unknown_split=[], rows=0)
  for path in tqdm.tqdm(shards, desc='pickapic shards', unit='shard',
                        disable=not progress, file=sys.stderr,
                        mininterval=2.0):
    group = shard_group(path)
    if group is None:
      info['skipped_unknown_split'].append(path)
      continue
    marker = _marker_path(out_dir, path)
    if os.path.exists(marker):
      info['skipped_done'].append(path)
      continue
    result = scan_shard(path, group, wanted[group], out_dir)
    info['rows'] += result['rows']
    info['scanned'].append(path)
    _atomic_write(marker, json.dumps(dict(
        shard=os.path.basename(path), group=group, rows=result['rows'],
        matches=result['matches']), sort_keys=True).encode('utf-8'))
  return info


def _load_captions(shards: Sequence[str], out_dir: str
                   ) -> dict[str, dict[str, str]]:
  """group -> {uid: caption} from the done markers, first shard wins."""
  captions = {'train': {}, 'test': {}}
  for path in sorted(shards):
    marker = _marker_path(out_dir, path)
    if shard_group(path) is None or not os.path.exists(marker):
      continue
    with open(marker, encoding='utf-8') as f:
      data = json.load(f)
    for uid, caption in sorted(data['matches'].items()):
      captions[data['group']].setdefault(uid, caption)
  return captions


def _bytes_feature(value: bytes):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def joined_example(example, *, image: bytes, uid: str, prompt: str,
                   labels: Sequence[int]):
  """Adds the join's fields to a release `tf.train.Example` (in place).

  Args:
    example: the release `tf.train.Example`.
    image: the encoded image bytes, as stored in Pick-a-Pic.
    uid: the Pick-a-Pic image uid.
    prompt: the caption.
    labels: the record's word labels (0 = misaligned).

  Returns:
    The example, with `image`, `uid`, `prompt`, `clean_prompt`, `target`.
  """
  words = release.prompt_words(prompt)
  extra = {
      release.IMAGE: image,
      release.UID: uid.encode('utf-8'),
      release.PROMPT: prompt.encode('utf-8'),
      release.CLEAN_PROMPT: ' '.join(words).encode('utf-8'),
      release.TARGET: release.marked_target(words, labels).encode('utf-8'),
  }
  for name, value in extra.items():
    example.features.feature[name].CopyFrom(_bytes_feature(value))
  return example


# Summary count of each skip reason -> the summary list naming its examples.
_SKIP_LISTS = {
    'missing': 'missing_uids', 'label_mismatch': 'label_mismatch_files',
    'corrupt': 'corrupt_examples', 'empty_image': 'empty_image_uids',
    'corrupt_image': 'corrupt_image_uids', 'empty_prompt': 'empty_prompt_uids',
}


def _new_split_summary() -> dict[str, Any]:
  summary = dict(release_records=0, written=0)
  for key, list_key in _SKIP_LISTS.items():
    summary[key], summary[list_key] = 0, []
  return summary


def _note(summary, key, item):
  list_key = _SKIP_LISTS[key]
  summary[key] += 1
  if len(summary[list_key]) < MAX_LISTED:
    summary[list_key].append(item)


def _check_record(rec: bytes, split: str, captions: dict[str, str],
                  out_dir: str) -> tuple[str, Any]:
  """Validates one release record against its Pick-a-Pic image and caption.

  Returns:
    ('ok', serialized joined example) or (summary key, the item to list).
    Runs in worker threads: it only reads files and decodes images (PIL
    releases the GIL while decoding).
  """
  try:
    example = release.example_from_bytes(rec)
    record = release.parse_release_example(example)
  except release.CorruptRecordError as e:
    return 'corrupt', str(e)
  if record.uid not in captions:
    return 'missing', record.uid
  prompt = captions[record.uid]
  if not release.prompt_words(prompt):
    return 'empty_prompt', record.uid
  try:
    release.check_label_count(record, prompt)
  except release.LabelCountMismatchError:
    return 'label_mismatch', record.filename
  with open(_image_path(out_dir, GROUP_OF_SPLIT[split], record.uid),
            'rb') as f:
    image = f.read()
  if not image:
    return 'empty_image', record.uid
  try:
    release.check_image(image, uid=record.uid)
  except release.CorruptImageError as e:
    print(f'skipping {split} record {record.filename}: {e}', file=sys.stderr)
    return 'corrupt_image', record.uid
  joined_example(example, image=image, uid=record.uid, prompt=prompt,
                 labels=record.labels)
  return 'ok', example.SerializeToString()


_CHUNK = 64  # records validated concurrently; bounds the memory held


def _chunks(records, size: int):
  """Lists of up to `size` records; an Exception item ends its chunk."""
  chunk = []
  for rec in records:
    chunk.append(rec)
    if isinstance(rec, Exception) or len(chunk) == size:
      yield chunk
      if isinstance(rec, Exception):
        return
      chunk = []
  if chunk:
    yield chunk


def write_split(split: str, richhf_dir: str, out_dir: str,
                captions: dict[str, str], num_shards: Optional[int],
                num_records: int, progress: bool = True,
                workers: Optional[int] = None) -> dict[str, Any]:
  """Stage 3 for one split: writes its joined shards in release order.

  Records are validated (heatmaps and image decoded) by `workers` threads
  (default: one per CPU) and written in release order.
  """
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  n = num_shards or max(1, math.ceil(num_records / RECORDS_PER_SHARD))
  names = [os.path.join(out_dir, f'{split}.tfrecord-{i:05d}-of-{n:05d}')
           for i in range(n)]
  for stale in glob.glob(os.path.join(out_dir, f'{split}.tfrecord-*')):
    if stale not in names:
      os.remove(stale)
  tmp = [f'{p}.tmp' for p in names]
  writers = [tf.io.TFRecordWriter(p) for p in tmp]
  summary = _new_split_summary()
  summary['num_shards'] = n
  bar = tqdm.tqdm(desc=f'write {split}', unit='rec', total=num_records,
                  disable=not progress, file=sys.stderr, mininterval=2.0)
  check = lambda rec: _check_record(rec, split, captions, out_dir)
  with concurrent.futures.ThreadPoolExecutor(
      workers or os.cpu_count() or 1) as pool:
    for chunk in _chunks(_iter_records(release_path(richhf_dir, split)),
                         _CHUNK):
      broken = chunk.pop() if isinstance(chunk[-1], Exception) else None
      for status, item in pool.map(check, chunk):
        summary['release_records'] += 1
        if status == 'ok':
          writers[summary['written'] % n].write(item)
          summary['written'] += 1
        else:
          _note(summary, status, item)
      bar.update(len(chunk))
      if broken is not None:
        _note(summary, 'corrupt', str(broken))
  bar.close()
  for w in writers:
    w.close()
  for t, p in zip(tmp, names):
    os.replace(t, p)
  return summary


def run_join(richhf_dir: str, pickapic: str | Sequence[str], out_dir: str,
             num_shards: Optional[int] = None,
             progress: bool = True,
             workers: Optional[int] = None) -> dict[str, Any]:
  """Runs the whole join; see the module docstring.

  Args:
    richhf_dir: directory with the release's `{train,dev,test}.tfrecord`.
    pickapic: a glob (or list of globs/paths) of Pick-a-Pic parquet shards.
    out_dir: output directory (also holds the resumable work store).
    num_shards: output shards per split; default ceil(records / 1024).
    progress: show tqdm progress bars on stderr.
    workers: threads validating records (default: one per CPU).

  Returns:
    The summary also written to `OUT/join_summary.json`.

  Raises:
    FileNotFoundError: no parquet shard matches, or a release file is
      missing.
  """
  t0 = time.time()
  patterns = [pickapic] if isinstance(pickapic, str) else list(pickapic)
  shards = sorted({p for pat in patterns for p in glob.glob(pat)})
  if not shards:
    raise FileNotFoundError(f'no Pick-a-Pic parquet shard matches {patterns}')
  os.makedirs(out_dir, exist_ok=True)
  uids = read_release_uids(richhf_dir)
  scan = scan_pickapic(shards, uids, out_dir, progress)
  captions = _load_captions(shards, out_dir)
  splits = {}
  for split in SPLITS:
    splits[split] = write_split(
        split, richhf_dir, out_dir, captions[GROUP_OF_SPLIT[split]],
        num_shards, len(uids[split]), progress, workers)
  counts = collections.Counter(uid for s in SPLITS for uid in uids[s])
  summary = dict(
      richhf_dir=richhf_dir, pickapic=patterns, out_dir=out_dir,
      num_parquet_shards=len(shards), scanned_shards=len(scan['scanned']),
      skipped_done_shards=len(scan['skipped_done']),
      skipped_unknown_split_shards=scan['skipped_unknown_split'],
      parquet_rows_scanned=scan['rows'],
      duplicate_release_uids=sum(1 for c in counts.values() if c > 1),
      splits=splits, seconds=round(time.time() - t0, 2))
  _atomic_write(os.path.join(out_dir, SUMMARY_FILE),
                json.dumps(summary, indent=1, sort_keys=True).encode())
  return summary


def _report(summary: dict[str, Any]) -> None:
  print(f"parquet shards: {summary['num_parquet_shards']} "
        f"(scanned {summary['scanned_shards']}, already done "
        f"{summary['skipped_done_shards']}, not train/test "
        f"{len(summary['skipped_unknown_split_shards'])})")
  for split, s in summary['splits'].items():
    print(f"{split}: {s['release_records']} release records -> "
          f"{s['written']} written in {s['num_shards']} shards; "
          f"missing from Pick-a-Pic {s['missing']}, label/word count "
          f"mismatch skipped {s['label_mismatch']}, corrupt {s['corrupt']}, "
          f"empty image {s['empty_image']}, corrupt image "
          f"{s['corrupt_image']}, empty prompt {s['empty_prompt']}")
    for key, lst in _SKIP_LISTS.items():
      if s[key]:
        print(f'  {key} (first {len(s[lst])}): ' + ', '.join(s[lst]),
              file=sys.stderr)
  print(f"summary: {os.path.join(summary['out_dir'], SUMMARY_FILE)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """CLI entry point; exit 1 when nothing at all was matched."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--richhf_dir', required=True,
                      help='directory with {train,dev,test}.tfrecord')
  parser.add_argument('--pickapic', required=True, action='append',
                      help='glob of Pick-a-Pic parquet shards (repeatable)')
  parser.add_argument('--out_dir', required=True)
  parser.add_argument('--num_shards', type=int, default=None,
                      help='shards per split (default ceil(n / 1024))')
  parser.add_argument('--no_progress', action='store_true')
  parser.add_argument('--workers', type=int, default=None,
                      help='threads validating records (default: one per '
                      'CPU)')
  args = parser.parse_args(argv)
  summary = run_join(args.richhf_dir, args.pickapic, args.out_dir,
                     args.num_shards, progress=not args.no_progress,
                     workers=args.workers)
  _report(summary)
  written = sum(s['written'] for s in summary['splits'].values())
  return 0 if written else 1


if __name__ == '__main__':
  sys.exit(main())
