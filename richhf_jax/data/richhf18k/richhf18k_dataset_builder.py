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
"""TFDS builder of `richhf18k`: RichHF-18K labels joined with Pick-a-Pic.

Manual download only (the release holds no images; Pick-a-Pic is ~190 GB).
`manual_dir` holds either

* the joined shards `{train,dev,test}.tfrecord-*-of-*` written by
  `python -m richhf_jax.data.join` (directly in `manual_dir` or in
  `manual_dir/joined/`), optionally with the release files
  `{train,dev,test}.tfrecord` (in `manual_dir` or `manual_dir/richhf18k/`)
  to report release records absent from the join; or
* the release files and Pick-a-Pic parquet shards (`manual_dir/pickapic/`
  or `manual_dir/*.parquet`): the join then runs first, resumable, into
  `<download_dir>/richhf18k_join/`.

Splits: train (release train), validation (release dev), test (release
test). Every record is checked again (release schema, 512x512 single-channel
heatmaps, finite scores in [0, 1], labels pairing with the prompt's words, a
fully decodable image); failing records are skipped, counted and logged with
their file and uid. Images that are not 8-bit RGB/grayscale JPEG or PNG
(CMYK, alpha, 16-bit, palette, GIF, BMP) are stored as RGB PNG.
"""

import collections
import glob
import os

from absl import logging
from etils import epath
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from richhf_jax.data import release

SPLITS = {'train': 'train', 'validation': 'dev', 'test': 'test'}
_JOINED = '{split}.tfrecord-?????-of-?????'
_LISTED = 10


def _first(d: str, names: list[str]) -> str | None:
  """The first of `names` (globs relative to `d`) that matches something."""
  for name in names:
    if glob.glob(os.path.join(d, name)):
      return os.path.dirname(os.path.join(d, name))
  return None


def find_inputs(manual_dir: str) -> dict[str, str | None]:
  """Locates the joined shards, release files and parquet shards.

  Returns:
    {'joined': dir or None, 'release': dir or None, 'pickapic': glob or
    None}.
  """
  joined = _first(manual_dir, [_JOINED.format(split='train'),
                               os.path.join('joined',
                                            _JOINED.format(split='train'))])
  rel = _first(manual_dir, ['train.tfrecord',
                            os.path.join('richhf18k', 'train.tfrecord')])
  pickapic = None
  for pattern in (os.path.join(manual_dir, 'pickapic', '*.parquet'),
                  os.path.join(manual_dir, '*.parquet')):
    if glob.glob(pattern):
      pickapic = pattern
      break
  return {'joined': joined, 'release': rel, 'pickapic': pickapic}


class Builder(tfds.core.GeneratorBasedBuilder):
  """RichHF-18K: rich human feedback on Pick-a-Pic images."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Release labels joined with Pick-a-Pic v1.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put in manual_dir EITHER the joined shards written by
  `python -m richhf_jax.data.join` ({train,dev,test}.tfrecord-*-of-*,
  directly or under joined/), OR the RichHF-18K release files
  ({train,dev,test}.tfrecord from github.com/google-research-datasets/
  richhf-18k, directly or under richhf18k/) together with the Pick-a-Pic v1
  parquet shards (under pickapic/).
  """

  # TFDS locates the builder's files through importlib resources, which
  # fails for an editable install without the `importlib_resources` backport;
  # the builder's own path is what it looks for.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    heatmap = tfds.features.Image(shape=(release.HEATMAP_SIZE,
                                         release.HEATMAP_SIZE, 1),
                                  encoding_format='png')
    features = {
        release.IMAGE: tfds.features.Image(shape=(None, None, 3)),
        release.ARTIFACT_MAP: heatmap,
        release.MISALIGNMENT_MAP: heatmap,
        release.PROMPT: tfds.features.Text(),
        release.CLEAN_PROMPT: tfds.features.Text(),
        release.TARGET: tfds.features.Text(),
        release.UID: tfds.features.Text(),
        release.FILENAME: tfds.features.Text(),
        release.PROMPT_MISALIGNMENT_LABEL: tfds.features.Text(),
    }
    for name in release.SCORE_FIELDS:
      features[name] = tfds.features.Scalar(np.float32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'RichHF-18K (Liang et al., CVPR 2024): per image two 512x512 '
            'heatmaps (artifact_map = implausibility, misalignment_map), '
            'four scores in [0, 1], per-word misalignment labels, joined '
            'with the Pick-a-Pic v1 image and prompt. target is the prompt '
            'with each misaligned word suffixed by _0.'),
        features=tfds.features.FeaturesDict(features),
        supervised_keys=None,
        homepage='https://github.com/google-research-datasets/richhf-18k',
        citation='@inproceedings{liang2024rich, title={Rich Human Feedback '
                 'for Text-to-Image Generation}, author={Liang, Youwei and '
                 'others}, booktitle={CVPR}, year={2024}}')

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    found = find_inputs(manual_dir)
    joined = found['joined']
    if joined is None:
      if not (found['release'] and found['pickapic']):
        raise FileNotFoundError(
            f'richhf18k: no joined shards and no release + Pick-a-Pic '
            f'parquet in manual_dir {manual_dir}.\n'
            + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
      from richhf_jax.data import join  # pylint: disable=g-import-not-at-top
      joined = os.path.join(os.fspath(dl_manager.download_dir),
                            'richhf18k_join')
      summary = join.run_join(found['release'], found['pickapic'], joined,
                              progress=False)
      logging.info('richhf18k: joined into %s: %s', joined,
                   {s: v['written'] for s, v in summary['splits'].items()})
    return {
        split: self._generate_examples(
            sorted(glob.glob(os.path.join(joined, _JOINED.format(
                split=name)))),
            os.path.join(found['release'], f'{name}.tfrecord')
            if found['release'] else None)
        for split, name in SPLITS.items()}

  def _generate_examples(self, paths, release_file):
    """Yields (key, example) for one split's joined shards."""
    skipped = collections.Counter()
    seen = set()
    for path in paths:
      base = os.path.basename(path)
      index = -1
      try:
        for index, rec in enumerate(
            tf.data.TFRecordDataset(path).as_numpy_iterator()):
          try:
            ex = _example(rec)
          except release.ReleaseError as e:
            kind = type(e).__name__
            skipped[kind] += 1
            if skipped[kind] <= _LISTED:
              logging.warning('richhf18k: skipping %s record %d: %s', base,
                              index, e)
            continue
          seen.add(ex[release.UID])
          yield f'{base}:{index}', ex
      except tf.errors.OpError as e:
        skipped['UnreadableShard'] += 1
        logging.error('richhf18k: %s is unreadable after record %d: %s',
                      path, index, (e.message or str(e)).splitlines()[0])
    if release_file and os.path.exists(release_file):
      uids = set()
      for rec in tf.data.TFRecordDataset(release_file).as_numpy_iterator():
        try:
          uids.add(release.parse_release_example(
              rec, decode_heatmaps=False).uid)
        except release.ReleaseError:
          continue
      missing = sorted(uids - seen)
      if missing:
        skipped['NotJoined'] = len(missing)
        logging.warning('richhf18k: %d release records of %s are not in the '
                        'joined shards (see join_summary.json), first: %s',
                        len(missing), release_file, missing[:_LISTED])
    if skipped:
      logging.warning('richhf18k: %s: skipped %s', paths[:1], dict(skipped))


def _bytes(features, name: str) -> bytes:
  if name not in features or not features[name].bytes_list.value:
    raise release.CorruptRecordError(f'missing joined field {name!r}')
  return features[name].bytes_list.value[0]


def _example(serialized: bytes) -> dict[str, object]:
  """One joined record -> TFDS features (raises release.ReleaseError)."""
  example = release.example_from_bytes(serialized)
  record = release.parse_release_example(example)
  feats = example.features.feature
  text = {n: _bytes(feats, n).decode('utf-8') for n in (
      release.UID, release.PROMPT, release.CLEAN_PROMPT, release.TARGET)}
  if text[release.UID] != record.uid:
    raise release.CorruptRecordError(
        f'{record.filename}: uid {text[release.UID]!r} does not match the '
        'filename')
  release.check_label_count(record, text[release.PROMPT])
  if not text[release.CLEAN_PROMPT]:
    raise release.CorruptRecordError(f'{record.filename}: empty prompt')
  out = dict(text)
  out[release.IMAGE] = release.rgb_image_bytes(
      _bytes(feats, release.IMAGE), uid=record.uid)
  out[release.ARTIFACT_MAP] = record.artifact_map[:, :, None]
  out[release.MISALIGNMENT_MAP] = record.misalignment_map[:, :, None]
  out[release.FILENAME] = record.filename
  out[release.PROMPT_MISALIGNMENT_LABEL] = ' '.join(
      str(l) for l in record.labels)
  for name in release.SCORE_FIELDS:
    out[name] = np.float32(getattr(record, name))
  return out
