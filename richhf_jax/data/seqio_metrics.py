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
"""The paper's metrics as seqio metric functions (both model variants).

Contract with `seqio.Evaluator.evaluate(predict_with_aux_fn=...)`:

* The model function gets the feature-converted eval dataset of
  `(index, features)` pairs and returns
  `([(index, decoded_token_ids), ...], aux)` where the token ids are the
  decoded marked prompt (one equal-length, 0-padded int array per example:
  seqio stacks them with `np.array`) and `aux` is a dict of per-example
  lists in the same order:
  `aux['scores']` [4] (order plausibility, alignment, aesthetics, overall),
  `aux['implausibility_heatmap']` and `aux['misalignment_heatmap']` [H, W]
  in [0, 1] at the head resolution of the task's heatmaps. Both variants
  (multi-head and augmented prompt) return the same outputs per image.
* seqio decodes the token ids with the task vocabulary; `postprocess`
  leaves the prediction text as is and turns each target into a dict of
  `texts` (the marked target), `scores`, and the two heatmaps, read from the
  preprocessed task example.
* `score_metrics`, `heatmap_metrics` and `keyword_metrics` then compute
  (with `richhf_jax.metrics`) flat metric dicts: `scores/<type>/{plcc,srcc}`,
  `heatmaps/<type>/{mse_all,mse_gt0,cc,kld,sim,nss,auc_judd}`,
  `keywords/{precision,recall,f1}`. `nested` turns the flat dict back into
  `richhf_jax.metrics.evaluate`'s shape (for `report.write_metrics_json`).
"""

from typing import Any, Mapping, Sequence

import numpy as np

from richhf_jax import metrics as metrics_lib

SCORES = 'scores'
HEATMAP_KEYS = tuple(f'{n}_heatmap' for n in metrics_lib.HEATMAP_NAMES)
AUX_KEYS = (SCORES,) + HEATMAP_KEYS
TEXTS = 'texts'


def _text(x) -> str:
  return x.decode('utf-8') if isinstance(x, bytes) else str(x)


def postprocess(output, example=None, is_target=False):
  """seqio postprocess_fn: targets become dicts, predictions stay text.

  Args:
    output: the decoded text (prediction or target).
    example: the preprocessed task example (numpy), given for targets.
    is_target: whether `output` is a target.

  Returns:
    The prediction text, or for a target {'texts', 'scores',
    'implausibility_heatmap', 'misalignment_heatmap'}.

  Raises:
    ValueError: a target example lacks a field.
  """
  if not is_target:
    return _text(output)
  if example is None:
    raise ValueError('postprocess: a target needs its example')
  missing = [k for k in AUX_KEYS if k not in example]
  if missing:
    raise ValueError(f'postprocess: the task example lacks {missing}; '
                     f'it has {sorted(example)}')
  out = {TEXTS: _text(output)}
  for key in AUX_KEYS:
    out[key] = np.asarray(example[key], np.float32)
  return out


def _stack(aux_values: Mapping[str, Any], key: str, n: int,
           shape_tail: tuple[int, ...] | None = None) -> np.ndarray:
  """Stacks aux_values[key] into [n, ...] float64 or raises ValueError."""
  if key not in aux_values:
    raise ValueError(
        f'model aux values lack {key!r}: predict_with_aux_fn must return '
        f'per-example {list(AUX_KEYS)} (got {sorted(aux_values)})')
  x = np.asarray(aux_values[key], np.float64)
  if x.shape[0] != n or (shape_tail is not None and
                         x.shape[1:] != shape_tail):
    want = (n,) + (shape_tail or ('...',))
    raise ValueError(f'model aux values {key!r} have shape {x.shape}; '
                     f'expected {want}')
  return x


def _targets(targets: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
  return np.stack([np.asarray(t[key], np.float64) for t in targets])


def score_metrics(targets, predictions, aux_values):
  """PLCC and SRCC per score type (Table 1)."""
  del predictions
  true = _targets(targets, SCORES)
  pred = _stack(aux_values, SCORES, len(targets), true.shape[1:])
  out = {}
  for k, name in enumerate(metrics_lib.SCORE_NAMES):
    for metric, value in metrics_lib.score_metrics(pred[:, k],
                                                   true[:, k]).items():
      out[f'scores/{name}/{metric}'] = value
  return out


def heatmap_metrics(targets, predictions, aux_values):
  """MSE all / GT=0 and the saliency metrics over GT>0 (Tables 2-3)."""
  del predictions
  out = {}
  for name, key in zip(metrics_lib.HEATMAP_NAMES, HEATMAP_KEYS):
    true = _targets(targets, key)
    pred = _stack(aux_values, key, len(targets), true.shape[1:])
    for metric, value in metrics_lib.heatmap_metrics(pred, true).items():
      out[f'heatmaps/{name}/{metric}'] = value
  return out


def keyword_metrics(targets, predictions, aux_values):
  """Precision / recall / F1 of the misaligned class (Table 4)."""
  del aux_values
  p, r, f1 = metrics_lib.keyword_prf([_text(x) for x in predictions],
                                     [t[TEXTS] for t in targets])
  return {'keywords/precision': p, 'keywords/recall': r, 'keywords/f1': f1}


METRIC_FNS = (score_metrics, heatmap_metrics, keyword_metrics)


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
  """`scores/plausibility/plcc`-style keys -> the `metrics.evaluate` dict.

  seqio may wrap values in `seqio.metrics.Scalar`; their `.value` is used.
  """
  out = {}
  for key, value in flat.items():
    value = getattr(value, 'value', value)
    node = out
    parts = key.split('/')
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = float(value)
  return out
