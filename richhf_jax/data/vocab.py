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
"""A tiny SentencePiece vocabulary with T5's special ids, for synthetic runs.

Real runs use the T5 vocabulary of the pretrained checkpoint. Synthetic runs
(and tests) train a small BPE model on the synthetic prompts and targets:
pad 0, eos 1, unk 2, no bos (T5's layout, what seqio expects), `_0` as a
user-defined symbol so that a marked word `red_0` encodes as `▁red` + `_0` and
decodes back exactly. BPE with a vocabulary as large as the merges need
makes every corpus word a single piece (a unigram model of that size still
splits a few rare long words). Training is single-threaded on a sorted,
de-duplicated corpus and the file paths the trainer records are cleared, so
the model file is a deterministic function of the text.
"""

import os
import tempfile
from typing import Iterable, Optional, Sequence

import sentencepiece as spm

from richhf_jax.data import release

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
DEFAULT_USER_SYMBOLS = (release.MISALIGNED_SUFFIX,)


def train_vocab(texts: Iterable[str], model_prefix: str, *,
                vocab_size: Optional[int] = None,
                user_defined_symbols: Sequence[str] = DEFAULT_USER_SYMBOLS,
                model_type: str = 'bpe'
                ) -> str:
  """Trains a SentencePiece model with T5's special ids.

  Args:
    texts: training lines (prompts, marked targets).
    model_prefix: output path prefix; writes `<prefix>.model` and
      `<prefix>.vocab` (parent directories are created).
    vocab_size: the target size; by default large enough for every distinct
      whitespace-separated word (with `_0` removed) to get its own piece. The
      limit is soft (`hard_vocab_limit=False`).
    user_defined_symbols: pieces always kept whole.
    model_type: SentencePiece model type.

  Returns:
    The path of the `.model` file.

  Raises:
    ValueError: if `texts` is empty.
  """
  lines = sorted({t.strip() for t in texts if t.strip()})
  if not lines:
    raise ValueError(f'no training text for the vocabulary {model_prefix}')
  words = set()
  for line in lines:
    for w in line.split():
      for sym in user_defined_symbols:
        w = w.replace(sym, ' ')
      words.update(w.split())
  chars = {c for line in lines for c in line}
  if vocab_size is None:
    # BPE needs a piece for every intermediate merge of every word.
    vocab_size = sum(len(w) for w in words) + len(chars) + len(
        user_defined_symbols) + 16
  os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, 'corpus.txt')
    with open(corpus, 'w', encoding='utf-8') as f:
      # Repeating the bare words makes each a frequent whole piece.
      f.write('\n'.join(lines + sorted(words) * 64) + '\n')
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=model_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        hard_vocab_limit=False,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        user_defined_symbols=list(user_defined_symbols),
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2)
  _strip_paths(model_prefix + '.model')
  return model_prefix + '.model'


def _strip_paths(model_path: str) -> None:
  """Clears the training paths the trainer records in the model file."""
  # pylint: disable-next=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2
  proto = sentencepiece_model_pb2.ModelProto()
  with open(model_path, 'rb') as f:
    proto.ParseFromString(f.read())
  del proto.trainer_spec.input[:]
  proto.trainer_spec.model_prefix = ''
  with open(model_path, 'wb') as f:
    f.write(proto.SerializeToString())


def load(model_path: str) -> spm.SentencePieceProcessor:
  """Loads a SentencePiece model file."""
  return spm.SentencePieceProcessor(model_file=model_path)


def round_trips(model_path: str, texts: Iterable[str]) -> list[str]:
  """Returns the texts that do not survive decode(encode(text)) exactly."""
  sp = load(model_path)
  return [t for t in texts if sp.decode(sp.encode(t)) != t]
