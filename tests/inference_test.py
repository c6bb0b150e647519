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
"""Tests for richhf_jax.inference: preprocessing, tokens, Predictor."""

import io
import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image

from richhf_jax import compile_options
from richhf_jax import inference
from richhf_jax import test_utils
from richhf_jax.models import rahf


def _smooth_image(rng, h, w):
  """A random image without pixel noise (JPEG-friendly)."""
  small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _encode(img, fmt='PNG'):
  buf = io.BytesIO()
  img.save(buf, fmt)
  return buf.getvalue()


def mode_images(rng, h=40, w=28):
  """{name: (encoded bytes, tolerance vs TF)} for every supported mode."""
  rgb = _smooth_image(rng, h, w)
  gray16 = rgb[..., 0].astype(np.uint16) * 257 + rng.integers(
      0, 256, (h, w)).astype(np.uint16)
  return {
      'RGB': (_encode(Image.fromarray(rgb)), 1e-5),
      'L': (_encode(Image.fromarray(rgb[..., 1])), 1e-5),
      'RGBA': (_encode(Image.fromarray(np.dstack([rgb, rgb[..., :1]]))),
               1e-5),
      'LA': (_encode(Image.fromarray(np.dstack([rgb[..., 0],
                                                rgb[..., 2]]))), 1e-5),
      'P': (_encode(Image.fromarray(rgb).convert('P')), 1e-5),
      'I;16': (_encode(Image.fromarray(gray16)), 1e-5),
      # TF and Pillow carry different JPEG decoders (IDCT rounding).
      'CMYK': (_encode(Image.fromarray(rgb).convert('CMYK'), 'JPEG'), 0.05),
      'RGB JPEG': (_encode(Image.fromarray(rgb), 'JPEG'), 0.05),
  }


class PreprocessTest(absltest.TestCase):

  def test_matches_the_training_pipeline_for_every_mode(self):
    # pylint: disable=g-import-not-at-top
    import tensorflow as tf
    from richhf_jax.data import preprocessors
    # pylint: enable=g-import-not-at-top
    rng = np.random.default_rng(0)
    for size in (16, 32, 64):
      for name, (data, tol) in mode_images(rng).items():
        ours, hw = inference.preprocess(data, size)
        want = preprocessors.decode_image(
            tf.constant(data), tf.constant(b'x'), size).numpy()
        self.assertEqual(hw, (40, 28))
        self.assertEqual(ours.shape, (size, size, 3))
        np.testing.assert_allclose(ours, want, atol=tol, err_msg=name)
    with Image.open(io.BytesIO(mode_images(rng)['I;16'][0])) as img:
      self.assertEqual(img.mode, 'I;16')  # The mode really is 16-bit.

  def test_arrays_paths_and_pil_agree(self):
    rng = np.random.default_rng(1)
    rgb = _smooth_image(rng, 20, 30)
    path = os.path.join(tempfile.mkdtemp(), 'x.png')
    Image.fromarray(rgb).save(path)
    want, _ = inference.preprocess(rgb, 16)
    for other in (path, Image.open(path), rgb.astype(np.float32) / 255.0,
                  rgb.astype(np.uint16) * 256, rgb.astype(np.int64),
                  np.dstack([rgb, rgb[..., :1]])):
      np.testing.assert_allclose(inference.preprocess(other, 16)[0], want,
                                 atol=1e-5)
    gray, _ = inference.preprocess(rgb[..., 0], 16)
    np.testing.assert_allclose(gray[..., 0], gray[..., 2])

  def test_bad_inputs_are_named(self):
    with self.assertRaisesRegex(ValueError, r'expected finite values in '
                                r'\[0, 1\]'):
      inference.load_rgb(np.full((4, 4, 3), 2.0))
    with self.assertRaisesRegex(ValueError, r'shape \(4, 4, 2\)'):
      inference.load_rgb(np.zeros((4, 4, 2), np.uint8))
    with self.assertRaisesRegex(ValueError, 'cannot read image 9 bytes'):
      inference.load_rgb(b'not a png')
    png = _encode(Image.fromarray(np.zeros((30, 30, 3), np.uint8)))
    with self.assertRaisesRegex(ValueError, 'cannot read image'):
      inference.load_rgb(png[:len(png) // 2])
    with self.assertRaisesRegex(ValueError, 'cannot read image /nonexistent'):
      inference.load_rgb('/nonexistent/x.png')


class AlignMarkedTest(absltest.TestCase):

  def test_cases(self):
    words = ['a', 'yellow', 'cat', 'on', 'a', 'sofa']
    cases = {
        'a yellow_0 cat on a sofa_0': [0, 1, 0, 0, 0, 1],
        # The decoder dropped a word: the rest still lines up.
        'a yellow_0 cat a sofa_0': [0, 1, 0, 0, 0, 1],
        # ... or added one.
        'a big yellow_0 cat on a sofa_0 today_0': [0, 1, 0, 0, 0, 1],
        # A misspelt word is paired with the prompt word it replaces.
        'a yelow_0 cat on a sofa': [0, 1, 0, 0, 0, 0],
        'A YELLOW_0 Cat on a sofa': [0, 1, 0, 0, 0, 0],
        '': [0] * 6,
        'a_0': [1, 0, 0, 0, 0, 0],
    }
    for text, want in cases.items():
      self.assertEqual(inference.align_marked(words, text),
                       [bool(x) for x in want], text)
    self.assertEqual(inference.align_marked([], 'cat_0'), [])


class PredictorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp()
    cls.export_dir = test_utils.tiny_export(os.path.join(tmp, 'export'))
    cls.predictor = inference.Predictor.load(cls.export_dir, max_batch_size=2)
    rng = np.random.default_rng(2)
    cls.images = [_smooth_image(rng, 40, 28), _smooth_image(rng, 32, 32),
                  Image.fromarray(_smooth_image(rng, 50, 20)).convert('L')]
    cls.prompts = ['a red circle', 'three yellow triangles, on a green '
                   'background!', 'a big orange star']
    cls.preds = cls.predictor.predict(cls.images, cls.prompts)

  def test_outputs(self):
    self.assertLen(self.preds, 3)
    hm = self.predictor.config.heatmap_size
    for pred, prompt in zip(self.preds, self.prompts):
      self.assertEqual(pred.implausibility_heatmap.shape, hm)
      self.assertEqual(pred.misalignment_heatmap.shape, hm)
      for k in rahf.HEATMAP_TYPES:
        self.assertTrue(0 <= pred.heatmap(k).min() <= pred.heatmap(k).max()
                        <= 1)
      self.assertEqual(list(pred.scores), list(rahf.SCORE_TYPES))
      self.assertTrue(all(0 <= v <= 1 for v in pred.scores.values()))
      self.assertEqual(pred.words, prompt.replace(',', ' ').replace(
          '!', ' ').split())
      self.assertLen(pred.misaligned, len(pred.words))
      self.assertEqual(pred.misaligned_words,
                       [w for w, f in zip(pred.words, pred.misaligned) if f])
      self.assertIsInstance(pred.marked_prompt, str)
      self.assertEqual(set(pred.to_json()), {
          'scores', 'marked_prompt', 'words', 'misaligned',
          'misaligned_words', 'heatmap_stats', 'image_size'})
    self.assertEqual(self.preds[2].image_size, (50, 20))

  def test_batching_does_not_change_results(self):
    # 3 examples with max_batch_size 2 ran as a batch of 2 and a padded 1;
    # each alone (bucket 1) must give the same outputs.
    self.assertEqual(self._compiled_sizes(), [1, 2])
    for i in range(3):
      [alone] = self.predictor.predict(self.images[i], self.prompts[i])
      for k in rahf.SCORE_TYPES:
        self.assertAlmostEqual(alone.scores[k], self.preds[i].scores[k],
                               places=5)
      np.testing.assert_allclose(alone.implausibility_heatmap,
                                 self.preds[i].implausibility_heatmap,
                                 atol=1e-5)
      self.assertEqual(alone.marked_prompt, self.preds[i].marked_prompt)
    self.assertEqual(self._compiled_sizes(), [1, 2])

  def test_speculative_decoding_gives_the_same_keywords(self):
    spec = inference.Predictor.load(self.export_dir, max_batch_size=2,
                                    draft_tokens=3)
    preds = spec.predict(self.images, self.prompts)
    self.assertEqual([p.marked_prompt for p in preds],
                     [p.marked_prompt for p in self.preds])
    with self.assertRaisesRegex(ValueError, 'draft_tokens=3.*num_beams=2'):
      inference.Predictor.load(self.export_dir, draft_tokens=3, num_beams=2)

  def test_weight_major_steps(self):
    # On CPU the decoding steps read transposed kernel copies by default;
    # without them the keywords are the same.
    self.assertIsNotNone(self.predictor.step_kernels)
    plain = inference.Predictor.load(self.export_dir, max_batch_size=2,
                                     weight_major_steps=False)
    self.assertIsNone(plain.step_kernels)
    preds = plain.predict(self.images[:2], self.prompts[:2])
    self.assertEqual([p.marked_prompt for p in preds],
                     [p.marked_prompt for p in self.preds[:2]])

  def test_compiler_options(self):
    # Compiled with the backend's inference options unless told otherwise;
    # the options change how XLA computes, not what.
    self.assertEqual(self.predictor.compiler_options,
                     compile_options.defaults())
    plain = inference.Predictor.load(self.export_dir, max_batch_size=2,
                                     compiler_options={})
    self.assertEqual(plain.compiler_options, {})
    preds = plain.predict(self.images, self.prompts)
    for got, want in zip(preds, self.preds):
      for k in rahf.HEATMAP_TYPES:
        np.testing.assert_allclose(got.heatmap(k), want.heatmap(k), atol=1e-5)
      for k in rahf.SCORE_TYPES:
        self.assertAlmostEqual(got.scores[k], want.scores[k], places=5)
      self.assertEqual(got.marked_prompt, want.marked_prompt)
    with self.assertRaisesRegex(ValueError, 'compiler_options'):
      inference.Predictor.load(self.export_dir, compiler_options='none')

  def _compiled_sizes(self):
    return sorted(self.predictor._compiled)  # pylint: disable=protected-access

  def test_heatmap_sizes(self):
    img, prompt = self.images[2], self.prompts[2]
    for size, want in ((None, self.predictor.config.heatmap_size),
                       ('image', (50, 20)), (24, (24, 24)),
                       ((10, 30), (10, 30))):
      [p] = self.predictor.predict([img], [prompt], heatmap_size=size)
      self.assertEqual(p.misalignment_heatmap.shape, want, size)
    with self.assertRaisesRegex(ValueError, 'heatmap_size'):
      self.predictor.predict([img], [prompt], heatmap_size='big')
    with self.assertRaisesRegex(ValueError, '1 images but 2 prompts'):
      self.predictor.predict([img], ['a', 'b'])

  def test_tokens_match_seqio(self):
    import seqio  # pylint: disable=g-import-not-at-top
    tok = self.predictor.tokenizer
    vocab = seqio.SentencePieceVocabulary(
        os.path.join(self.export_dir, 'spm.model'), extra_ids=0)
    prompt = 'a red circle, and two blue squares on a green background'
    ids = self.predictor.tokenize([prompt])[0]
    want = list(vocab.encode('a red circle and two blue squares on a green '
                             'background'))[:tok.length - 1] + [1]
    self.assertEqual(list(ids[:len(want)]), want)
    self.assertTrue((ids[len(want):] == 0).all())
    self.assertLen(ids, tok.length)
    marked = [int(i) for i in vocab.encode('a red_0 circle')]
    self.assertEqual(tok.decode(marked + [1, 5, 6, 0]),
                     vocab.decode(marked))
    # Ids past the vocabulary (an untrained decoder emits them) read as unk.
    self.assertEqual(tok.decode([marked[0], 10_000]),
                     tok.decode([marked[0], tok.sp.unk_id()]))

  def test_buckets(self):
    self.assertEqual(inference.bucket_sizes(8), [1, 2, 4, 8])
    self.assertEqual(inference.bucket_sizes(6), [1, 2, 4, 6])
    self.assertEqual(inference.bucket_sizes(1), [1])
    with self.assertRaises(ValueError):
      inference.bucket_sizes(0)

  def test_load_errors(self):
    with self.assertRaisesRegex(FileNotFoundError, 'neither an export'):
      inference.Predictor.load(tempfile.mkdtemp())


if __name__ == '__main__':
  absltest.main()
