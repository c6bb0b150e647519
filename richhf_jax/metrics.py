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
"""The paper's evaluation metrics (RAHF Sec. 4.2.1, Tables 1-4) on numpy.

Three families, each on host numpy arrays (computed in float64):

* Scores (Table 1): `plcc` and `srcc` over the whole split, per score type.
* Heatmaps (Tables 2-3): per-pixel MSE over all examples (`mse_all`) and over
  the examples whose ground truth is all zero (`mse_gt0`); over the examples
  with some ground truth > 0, the MIT saliency benchmark metrics (Bylinskii et
  al., "What do different evaluation metrics tell us about saliency models?",
  reference code github.com/cvzoya/saliency `code_forMetrics/`): `heatmap_cc`,
  `heatmap_kld`, `heatmap_sim`, `heatmap_nss`, `heatmap_auc_judd`. Fixations
  for NSS and AUC-Judd are the pixels where the ground truth is > 0.
* Misaligned keywords (Table 4): token-level precision / recall / F1 of the
  misaligned class, pooled over the split (`keyword_prf`).

`evaluate` and the streaming `MetricsAccumulator` produce the metrics dict:

  {'scores': {score: {'plcc', 'srcc'}} for score in SCORE_NAMES,
   'heatmaps': {heatmap: {metric} for metric in HEATMAP_METRIC_NAMES}
               for heatmap in HEATMAP_NAMES,
   'keywords': {'precision', 'recall', 'f1'}}

with python floats everywhere. A mean over an empty set of examples (no GT=0
example for `mse_gt0`, no GT>0 example for the saliency metrics) is
`float('nan')`; `report.write_metrics_json` writes it as JSON `null`.

Differences from the public PyTorch port (youweiliang/RichHF `metrics.py`,
`train.py`), which the paper's numbers may or may not share:

* Resolution: like the port we compare maps at one resolution (the model's
  heatmap size; the port resizes the 512x512 ground truth to 384x384). The
  MIT code instead resizes the prediction to the ground-truth size. Here both
  maps must already have the same shape.
* KLD epsilon: MIT's `eps` (float64 machine epsilon, 2.22e-16) as in
  `KLdiv.m`; the port uses 1e-8 both in the sum-normalisation and in the log.
  Only matters where the prediction is ~0 while the ground truth is > 0.
* SIM: MIT min-max normalises each map before sum-normalising (`similarity.m`);
  the port only sum-normalises. We follow MIT; the two differ for maps whose
  minimum is > 0 (e.g. sigmoid outputs).
* AUC-Judd: MIT and the port add random jitter (1e-7) to break ties; we handle
  ties exactly (ROC points at the distinct saliency values at fixations), so
  the result is deterministic and equal to MIT's without ties. (The port's
  python transcription also counts one extra false positive per threshold,
  `aboveth - i` with a 0-based i; negligible at 384 x 384.)
* Constant maps: MIT and the port return NaN or rely on 1e-8 epsilons; we use
  the explicit conventions documented on each function.
* `mse_all` here is the mean per-example MSE over all examples; the port logs
  its training-loss MSE and reports the GT=0 MSE under `mse`.
* Keywords: the port compares words position by position per example and
  averages per-example sklearn reports; we align words with difflib and pool
  the token counts over the split, as the paper's "token level" suggests.
"""

import difflib
from typing import Any, Mapping

import numpy as np
import scipy.stats

# Order of the four scores everywhere a vector of four is used
# (docs/architecture.md, "Output names").
SCORE_NAMES = ('plausibility', 'alignment', 'aesthetics', 'overall')
HEATMAP_NAMES = ('implausibility', 'misalignment')
SALIENCY_METRIC_NAMES = ('cc', 'kld', 'sim', 'nss', 'auc_judd')
HEATMAP_METRIC_NAMES = ('mse_all', 'mse_gt0') + SALIENCY_METRIC_NAMES
KEYWORD_METRIC_NAMES = ('precision', 'recall', 'f1')
# Keys of the prediction / target dicts taken by `evaluate`.
PREDICTION_KEYS = ('scores', 'implausibility_heatmap', 'misalignment_heatmap',
                   'texts')
# Suffix that marks a misaligned word in a marked prompt (`a yellow_0 cat`).
MISALIGNED_SUFFIX = '_0'
# MATLAB's `eps` as used by the MIT benchmark's KLdiv.m.
KLD_EPS = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------
# Scores.
# ----------------------------------------------------------------------------


def _check_1d_pair(pred, true, fn_name):
  """Returns `pred`, `true` as float64 1-D arrays of one length, or raises."""
  pred = np.asarray(pred, dtype=np.float64)
  true = np.asarray(true, dtype=np.float64)
  if pred.ndim != 1 or pred.shape != true.shape:
    raise ValueError(
        f'{fn_name}: pred and true must be 1-D arrays of the same length, got '
        f'shapes {pred.shape} and {true.shape}.')
  for name, x in (('pred', pred), ('true', true)):
    if not np.all(np.isfinite(x)):
      raise ValueError(f'{fn_name}: {name} contains NaN or inf values.')
  return pred, true


def _is_constant(x):
  """True when all values of `x` are equal (exactly) or `x` is empty."""
  return x.size == 0 or x.max() == x.min()


def plcc(pred, true):
  """Pearson linear correlation coefficient between two 1-D arrays.

  PLCC = sum((p - mean p)(t - mean t)) / sqrt(sum((p - mean p)^2)
  sum((t - mean t)^2)), computed by `scipy.stats.pearsonr` in float64.

  Convention: the correlation is undefined when either input is constant
  (all values exactly equal) or has fewer than two values; it is then 0.0
  (no linear relation), never NaN. A constant predictor, such as the trivial
  baseline's mean training score, therefore scores 0.0.

  Args:
    pred: predicted values, shape [N].
    true: ground-truth values, shape [N].

  Returns:
    The correlation as a python float in [-1, 1].

  Raises:
    ValueError: if the inputs are not 1-D of one length or are not finite.
  """
  pred, true = _check_1d_pair(pred, true, 'plcc')
  if pred.size < 2 or _is_constant(pred) or _is_constant(true):
    return 0.0
  return float(scipy.stats.pearsonr(pred, true).statistic)


def srcc(pred, true):
  """Spearman rank correlation coefficient between two 1-D arrays.

  SRCC = PLCC of the ranks (ties get their average rank), computed by
  `scipy.stats.spearmanr` in float64. Same convention as `plcc`: 0.0 when
  either input is constant or has fewer than two values.

  Args:
    pred: predicted values, shape [N].
    true: ground-truth values, shape [N].

  Returns:
    The rank correlation as a python float in [-1, 1].

  Raises:
    ValueError: if the inputs are not 1-D of one length or are not finite.
  """
  pred, true = _check_1d_pair(pred, true, 'srcc')
  if pred.size < 2 or _is_constant(pred) or _is_constant(true):
    return 0.0
  return float(scipy.stats.spearmanr(pred, true).statistic)


def score_metrics(preds, trues):
  """PLCC and SRCC of one score type over a split.

  Args:
    preds: predicted scores, shape [N].
    trues: ground-truth scores, shape [N].

  Returns:
    {'plcc': float, 'srcc': float}, see `plcc` and `srcc`.
  """
  return {'plcc': plcc(preds, trues), 'srcc': srcc(preds, trues)}


# ----------------------------------------------------------------------------
# Heatmaps: single maps.
# ----------------------------------------------------------------------------


def _check_map_pair(pred, gt, fn_name):
  """Returns `pred`, `gt` as float64 2-D arrays of one shape, or raises."""
  pred = np.asarray(pred, dtype=np.float64)
  gt = np.asarray(gt, dtype=np.float64)
  if pred.ndim != 2 or gt.ndim != 2:
    raise ValueError(
        f'{fn_name}: pred and gt must be 2-D maps [H, W], got shapes '
        f'{pred.shape} and {gt.shape}.')
  if pred.shape != gt.shape:
    raise ValueError(
        f'{fn_name}: shape mismatch between pred {pred.shape} and gt '
        f'{gt.shape}; resize the ground truth to the prediction resolution '
        'before evaluating.')
  for name, x in (('pred', pred), ('gt', gt)):
    if not np.all(np.isfinite(x)):
      raise ValueError(f'{fn_name}: {name} contains NaN or inf values.')
  return pred, gt


def _check_nonnegative(x, name, fn_name):
  if x.min() < 0:
    raise ValueError(
        f'{fn_name}: {name} must be non-negative to be read as a '
        f'distribution, found minimum {x.min()}.')


def _require_fixations(gt, fn_name):
  if not np.any(gt > 0):
    raise ValueError(
        f'{fn_name}: gt has no pixel > 0, so there are no fixations; this '
        'metric is defined only for GT>0 examples.')


def _to_distribution(x):
  """Sum-normalises a non-negative map; a constant map becomes uniform."""
  if _is_constant(x):
    return np.full_like(x, 1.0 / x.size)
  return x / x.sum()


def heatmap_cc(pred, gt):
  """Pearson correlation coefficient (CC) between two maps.

  CC = cov(P, G) / (std(P) std(G)) over all pixels, as MIT `CC.m` (both maps
  standardised, then `corr2`). Convention: 0.0 when either map is constant
  (including all-zero), where the correlation is undefined; no epsilon.

  Args:
    pred: predicted map [H, W].
    gt: ground-truth map [H, W].

  Returns:
    CC as a python float in [-1, 1].

  Raises:
    ValueError: on a shape mismatch or non-finite values.
  """
  pred, gt = _check_map_pair(pred, gt, 'heatmap_cc')
  if _is_constant(pred) or _is_constant(gt):
    return 0.0
  p = pred - pred.mean()
  g = gt - gt.mean()
  value = np.sum(p * g) / np.sqrt(np.sum(p * p) * np.sum(g * g))
  return float(np.clip(value, -1.0, 1.0))


def heatmap_kld(pred, gt):
  """KL divergence KL(G || P) between the two maps read as distributions.

  P = pred / sum(pred), G = gt / sum(gt), then
  KLD = sum_i G_i log(eps + G_i / (P_i + eps)) with eps = `KLD_EPS`
  (2.22e-16, MATLAB's `eps`), exactly MIT `KLdiv.m`. Convention: a constant
  map (including all-zero) is read as the uniform distribution 1 / (H W)
  (MIT leaves an all-zero map at zero). Lower is better; 0 for pred == gt.

  Args:
    pred: predicted map [H, W], non-negative.
    gt: ground-truth map [H, W], non-negative.

  Returns:
    KLD as a python float >= ~0 (small negative rounding possible).

  Raises:
    ValueError: on a shape mismatch, non-finite or negative values.
  """
  pred, gt = _check_map_pair(pred, gt, 'heatmap_kld')
  _check_nonnegative(pred, 'pred', 'heatmap_kld')
  _check_nonnegative(gt, 'gt', 'heatmap_kld')
  p = _to_distribution(pred)
  g = _to_distribution(gt)
  return float(np.sum(g * np.log(KLD_EPS + g / (p + KLD_EPS))))


def heatmap_sim(pred, gt):
  """Similarity (SIM, histogram intersection) between two maps.

  Each map is min-max normalised to [0, 1], then divided by its sum, and
  SIM = sum_i min(P_i, G_i), as MIT `similarity.m`. Convention: a constant
  map (including all-zero) is read as the uniform distribution 1 / (H W)
  (MIT returns NaN for constant non-zero maps and keeps all-zero maps at
  zero). The port skips the min-max step. 1 for identical maps.

  Args:
    pred: predicted map [H, W], non-negative.
    gt: ground-truth map [H, W], non-negative.

  Returns:
    SIM as a python float in [0, 1].

  Raises:
    ValueError: on a shape mismatch, non-finite or negative values.
  """
  pred, gt = _check_map_pair(pred, gt, 'heatmap_sim')
  _check_nonnegative(pred, 'pred', 'heatmap_sim')
  _check_nonnegative(gt, 'gt', 'heatmap_sim')
  maps = []
  for x in (pred, gt):
    if not _is_constant(x):
      x = (x - x.min()) / (x.max() - x.min())
    maps.append(_to_distribution(x))
  return float(np.sum(np.minimum(maps[0], maps[1])))


def heatmap_nss(pred, gt):
  """Normalized scanpath saliency (NSS) of a map at the gt > 0 pixels.

  Z = (pred - mean(pred)) / std(pred) with the sample standard deviation
  (ddof=1, MATLAB's `std` in MIT `NSS.m` and the port's `unbiased=True`);
  NSS = mean of Z over the fixations {i : gt_i > 0}. The gt values only
  select fixations. Convention: 0.0 for a constant prediction (chance level;
  no epsilon).

  Args:
    pred: predicted map [H, W].
    gt: ground-truth map [H, W] with at least one pixel > 0.

  Returns:
    NSS as a python float.

  Raises:
    ValueError: on a shape mismatch, non-finite values, or a gt with no
      pixel > 0.
  """
  pred, gt = _check_map_pair(pred, gt, 'heatmap_nss')
  _require_fixations(gt, 'heatmap_nss')
  if _is_constant(pred):
    return 0.0
  z = (pred - pred.mean()) / pred.std(ddof=1)
  return float(z[gt > 0].mean())


def heatmap_auc_judd(pred, gt):
  """AUC-Judd: area under the ROC curve of pred separating gt > 0 pixels.

  Positives are the fixations F = {i : gt_i > 0} (n_f of them), negatives
  the other n_n pixels. Thresholds are the distinct saliency values at the
  fixations, t_1 > ... > t_k. At each t: TPR = |{i in F : pred_i >= t}| / n_f,
  FPR = |{i not in F : pred_i >= t}| / n_n. The curve (0, 0), (FPR_j, TPR_j),
  (1, 1) is integrated with the trapezoid rule. Without ties this is MIT
  `AUC_Judd.m` exactly; MIT breaks ties with random jitter (1e-7), we count
  them exactly, which makes the result deterministic and gives a constant
  prediction 0.5. Convention: when every pixel is a fixation (n_n = 0) the
  ROC is undefined and the result is 0.5.

  Args:
    pred: predicted map [H, W].
    gt: ground-truth map [H, W] with at least one pixel > 0.

  Returns:
    AUC-Judd as a python float in [0, 1].

  Raises:
    ValueError: on a shape mismatch, non-finite values, or a gt with no
      pixel > 0.
  """
  pred, gt = _check_map_pair(pred, gt, 'heatmap_auc_judd')
  _require_fixations(gt, 'heatmap_auc_judd')
  fixated = gt.ravel() > 0
  values = pred.ravel()
  pos = np.sort(values[fixated])
  neg = np.sort(values[~fixated])
  if neg.size == 0:
    return 0.5
  thresholds = np.unique(pos)[::-1]  # Descending.
  # Number of values >= t in a sorted array: size - searchsorted(left).
  tpr = (pos.size - np.searchsorted(pos, thresholds, side='left')) / pos.size
  fpr = (neg.size - np.searchsorted(neg, thresholds, side='left')) / neg.size
  tpr = np.concatenate([[0.0], tpr, [1.0]])
  fpr = np.concatenate([[0.0], fpr, [1.0]])
  return float(np.trapezoid(tpr, fpr))


def heatmap_mse(pred, gt):
  """Mean squared error over the pixels of one map: mean((pred - gt)^2).

  Args:
    pred: predicted map [H, W].
    gt: ground-truth map [H, W].

  Returns:
    The MSE as a python float.

  Raises:
    ValueError: on a shape mismatch or non-finite values.
  """
  pred, gt = _check_map_pair(pred, gt, 'heatmap_mse')
  return float(np.mean((pred - gt) ** 2))


_SALIENCY_FNS = {
    'cc': heatmap_cc,
    'kld': heatmap_kld,
    'sim': heatmap_sim,
    'nss': heatmap_nss,
    'auc_judd': heatmap_auc_judd,
}


# ----------------------------------------------------------------------------
# Heatmaps: aggregates.
# ----------------------------------------------------------------------------


def _mean_or_nan(values):
  return float(np.mean(values)) if values else float('nan')


class _HeatmapStats:
  """Per-example heatmap metric values of one heatmap type (scalars only)."""

  def __init__(self, name):
    self.name = name
    self.mse_all = []
    self.mse_gt0 = []
    self.saliency = {k: [] for k in SALIENCY_METRIC_NAMES}

  def add(self, preds, gts):
    """Adds a batch of maps [B, H, W]; keeps only per-example scalars."""
    preds = np.asarray(preds)
    gts = np.asarray(gts)
    if preds.ndim != 3 or preds.shape != gts.shape:
      raise ValueError(
          f'{self.name} heatmaps: preds and gts must both be [N, H, W] of one '
          f'shape, got {preds.shape} and {gts.shape}.')
    for pred, gt in zip(preds, gts):
      mse = heatmap_mse(pred, gt)
      self.mse_all.append(mse)
      if np.any(gt > 0):
        for key, fn in _SALIENCY_FNS.items():
          self.saliency[key].append(fn(pred, gt))
      else:
        self.mse_gt0.append(mse)

  def merge(self, other):
    """Appends the values of `other` after this object's values."""
    self.mse_all.extend(other.mse_all)
    self.mse_gt0.extend(other.mse_gt0)
    for key in SALIENCY_METRIC_NAMES:
      self.saliency[key].extend(other.saliency[key])

  def result(self):
    out = {'mse_all': _mean_or_nan(self.mse_all),
           'mse_gt0': _mean_or_nan(self.mse_gt0)}
    for key in SALIENCY_METRIC_NAMES:
      out[key] = _mean_or_nan(self.saliency[key])
    return out


def heatmap_metrics(preds, gts):
  """Table 2/3 metrics of one heatmap type over a set of maps.

  * `mse_all`: mean over all N examples of the per-example per-pixel MSE
    (equal to the per-pixel MSE over the whole set, all maps being H x W).
  * `mse_gt0`: the same mean over the examples whose gt is all zero
    (no pixel > 0).
  * `cc`, `kld`, `sim`, `nss`, `auc_judd`: means of `heatmap_cc`, ... over
    the examples whose gt has some pixel > 0.

  A mean over no example is float('nan') (e.g. `mse_gt0` when every gt has
  a positive pixel); JSON output turns it into null.

  Args:
    preds: predicted maps [N, H, W].
    gts: ground-truth maps [N, H, W].

  Returns:
    Dict with the keys of HEATMAP_METRIC_NAMES, python floats.

  Raises:
    ValueError: if the shapes differ or are not [N, H, W], or on non-finite
      or (for KLD / SIM) negative values.
  """
  stats = _HeatmapStats('heatmap_metrics')
  stats.add(preds, gts)
  return stats.result()


# ----------------------------------------------------------------------------
# Misaligned keywords.
# ----------------------------------------------------------------------------


def _as_str(text):
  return text.decode('utf-8') if isinstance(text, bytes) else str(text)


def parse_marked(text):
  """Splits a marked prompt into words and misaligned flags.

  Words are separated by whitespace; a word ending in MISALIGNED_SUFFIX
  (`_0`) is misaligned and the suffix is removed: `a yellow_0 cat` ->
  (['a', 'yellow', 'cat'], [False, True, False]).

  Args:
    text: the marked prompt (str or utf-8 bytes).

  Returns:
    (words, flags): list of str and list of bool of one length.
  """
  words, flags = [], []
  for token in _as_str(text).split():
    flagged = token.endswith(MISALIGNED_SUFFIX)
    words.append(token[:-len(MISALIGNED_SUFFIX)] if flagged else token)
    flags.append(flagged)
  return words, flags


def strip_markers(text):
  """The marked prompt with the `_0` markers removed, words joined by ' '."""
  return ' '.join(parse_marked(text)[0])


def keyword_counts(predicted_text, target_text):
  """True positives, false positives and false negatives of one example.

  The misaligned class is positive. The stripped word sequences are aligned
  with difflib.SequenceMatcher (autojunk off); on each matched word pair a
  flag in both is a TP, only in the prediction a FP, only in the target a
  FN. Flags on unmatched predicted words are FPs and flags on unmatched
  target words are FNs. Identical word sequences reduce to a plain
  position-by-position comparison.

  Args:
    predicted_text: the decoded marked prompt.
    target_text: the ground-truth marked prompt.

  Returns:
    (tp, fp, fn) as ints.
  """
  pred_words, pred_flags = parse_marked(predicted_text)
  true_words, true_flags = parse_marked(target_text)
  matcher = difflib.SequenceMatcher(None, pred_words, true_words,
                                    autojunk=False)
  tp = 0
  for block in matcher.get_matching_blocks():
    for k in range(block.size):
      tp += pred_flags[block.a + k] and true_flags[block.b + k]
  # Every other predicted flag is a FP (flag on a matched aligned word, or
  # on an unmatched word); every other target flag is a FN.
  fp = sum(pred_flags) - tp
  fn = sum(true_flags) - tp
  return int(tp), int(fp), int(fn)


def _prf(tp, fp, fn):
  """Precision, recall, F1 with 0.0 for each zero denominator."""
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = (2 * precision * recall / (precision + recall)
        if precision + recall else 0.0)
  return float(precision), float(recall), float(f1)


def keyword_prf(predicted_texts, target_texts):
  """Token-level precision, recall and F1 of the misaligned class (Table 4).

  TP, FP and FN (see `keyword_counts`) are summed over all examples, then
  P = TP / (TP + FP), R = TP / (TP + FN), F1 = 2 P R / (P + R).
  Zero-division convention: P = 0 when nothing is predicted misaligned,
  R = 0 when no target word is misaligned, F1 = 0 when P + R = 0 (so a split
  with no misaligned word anywhere scores 0 / 0 / 0).

  Args:
    predicted_texts: N decoded marked prompts.
    target_texts: N ground-truth marked prompts.

  Returns:
    (precision, recall, f1) as python floats in [0, 1].

  Raises:
    ValueError: if the two sequences have different lengths.
  """
  predicted_texts = list(predicted_texts)
  target_texts = list(target_texts)
  if len(predicted_texts) != len(target_texts):
    raise ValueError(
        f'keyword_prf: got {len(predicted_texts)} predicted texts and '
        f'{len(target_texts)} target texts; expected one per example.')
  tp = fp = fn = 0
  for pred, true in zip(predicted_texts, target_texts):
    counts = keyword_counts(pred, true)
    tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
  return _prf(tp, fp, fn)


# ----------------------------------------------------------------------------
# The whole evaluation.
# ----------------------------------------------------------------------------


def _check_batch(batch, what):
  """Validates one predictions / targets dict; returns its batch size."""
  missing = [k for k in PREDICTION_KEYS if k not in batch]
  if missing:
    raise ValueError(f'{what}: missing keys {missing}; expected '
                     f'{list(PREDICTION_KEYS)}.')
  scores = np.asarray(batch['scores'])
  if scores.ndim != 2 or scores.shape[1] != len(SCORE_NAMES):
    raise ValueError(
        f"{what}['scores']: expected shape [N, {len(SCORE_NAMES)}] "
        f'(order {SCORE_NAMES}), got {scores.shape}.')
  n = scores.shape[0]
  for key in ('implausibility_heatmap', 'misalignment_heatmap'):
    shape = np.shape(batch[key])
    if len(shape) != 3 or shape[0] != n:
      raise ValueError(f'{what}[{key!r}]: expected shape [{n}, H, W], got '
                       f'{shape}.')
  if isinstance(batch['texts'], (str, bytes)) or len(batch['texts']) != n:
    raise ValueError(f"{what}['texts']: expected a sequence of {n} marked "
                     'prompts.')
  return n


class MetricsAccumulator:
  """Streaming evaluation with bounded memory.

  `add` computes the per-example heatmap metrics at once and keeps only
  scalars; scores ([N, 4] floats) and keyword TP / FP / FN counts are kept
  for the split-level correlations and the pooled PRF. `result` averages the
  per-example values in example order, so any batching of the same examples
  gives the same numbers; `evaluate` is this class with a single batch.

  Attributes:
    num_examples: number of examples added so far.
  """

  def __init__(self):
    self.num_examples = 0
    self._pred_scores = []
    self._true_scores = []
    self._heatmaps = {name: _HeatmapStats(name) for name in HEATMAP_NAMES}
    self._keyword_counts = [0, 0, 0]

  def add(self, batch_predictions, batch_targets):
    """Adds a batch of predictions and their targets.

    Args:
      batch_predictions: dict with `scores` [B, 4] (order SCORE_NAMES),
        `implausibility_heatmap` and `misalignment_heatmap` [B, H, W] in
        [0, 1], `texts` (B marked prompts, str or utf-8 bytes).
      batch_targets: dict of the same keys and shapes.

    Raises:
      ValueError: if a key is missing, shapes disagree, or values are
        invalid (see the metric functions).
    """
    n_pred = _check_batch(batch_predictions, 'predictions')
    n_true = _check_batch(batch_targets, 'targets')
    if n_pred != n_true:
      raise ValueError(f'predictions hold {n_pred} examples but targets hold '
                       f'{n_true}.')
    pred_scores = np.asarray(batch_predictions['scores'], dtype=np.float64)
    true_scores = np.asarray(batch_targets['scores'], dtype=np.float64)
    for x, what in ((pred_scores, 'predictions'), (true_scores, 'targets')):
      if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}['scores'] contains NaN or inf values.")
    # Everything is computed before any state changes, so a batch that
    # raises leaves the accumulator as it was.
    batch_heatmaps = {}
    for name in HEATMAP_NAMES:
      key = f'{name}_heatmap'
      batch_heatmaps[name] = _HeatmapStats(name)
      batch_heatmaps[name].add(batch_predictions[key], batch_targets[key])
    counts = [keyword_counts(p, t) for p, t in
              zip(batch_predictions['texts'], batch_targets['texts'])]
    for name, stats in batch_heatmaps.items():
      self._heatmaps[name].merge(stats)
    for count in counts:
      for k in range(3):
        self._keyword_counts[k] += count[k]
    self._pred_scores.append(pred_scores)
    self._true_scores.append(true_scores)
    self.num_examples += n_pred

  def result(self):
    """Returns the metrics dict (module docstring) of everything added.

    Raises:
      ValueError: if no example was added.
    """
    if not self.num_examples:
      raise ValueError('MetricsAccumulator.result: no example was added.')
    pred_scores = np.concatenate(self._pred_scores)
    true_scores = np.concatenate(self._true_scores)
    scores = {name: score_metrics(pred_scores[:, k], true_scores[:, k])
              for k, name in enumerate(SCORE_NAMES)}
    heatmaps = {name: self._heatmaps[name].result() for name in HEATMAP_NAMES}
    precision, recall, f1 = _prf(*self._keyword_counts)
    return {'scores': scores,
            'heatmaps': heatmaps,
            'keywords': {'precision': precision, 'recall': recall, 'f1': f1}}


def evaluate(predictions, targets):
  """All metrics of the paper's Tables 1-4 on one split.

  Args:
    predictions: dict with `scores` [N, 4] (order SCORE_NAMES),
      `implausibility_heatmap` and `misalignment_heatmap` [N, H, W],
      `texts` (N marked prompts).
    targets: dict with the same keys and shapes.

  Returns:
    The metrics dict described in the module docstring.

  Raises:
    ValueError: on missing keys, inconsistent shapes or invalid values.
  """
  accumulator = MetricsAccumulator()
  accumulator.add(predictions, targets)
  return accumulator.result()


# ----------------------------------------------------------------------------
# Trivial baseline.
# ----------------------------------------------------------------------------


class TrainStatistics:
  """Streaming means of the training targets for the trivial baseline.

  Sums are float64 and of fixed size ([4] scores, [H, W] per heatmap type),
  so the whole training split can be streamed through `add`.
  """

  def __init__(self):
    self._count = 0
    self._sums = {}

  def add(self, batch_targets):
    """Adds a batch of targets (`scores` [B, 4] and both heatmaps [B, H, W]).

    Raises:
      ValueError: on missing keys or inconsistent shapes.
    """
    arrays = {}
    for key in ('scores', 'implausibility_heatmap', 'misalignment_heatmap'):
      if key not in batch_targets:
        raise ValueError(f'TrainStatistics.add: targets lack key {key!r}.')
      arrays[key] = np.asarray(batch_targets[key], dtype=np.float64)
    n = arrays['scores'].shape[0] if arrays['scores'].ndim == 2 else -1
    for key, x in arrays.items():
      want_ndim = 2 if key == 'scores' else 3
      if x.ndim != want_ndim or x.shape[0] != n:
        raise ValueError(f'TrainStatistics.add: {key} has shape {x.shape}; '
                         f'expected {want_ndim} dims with batch size {n}.')
      if key in self._sums and self._sums[key].shape != x.shape[1:]:
        raise ValueError(f'TrainStatistics.add: {key} per-example shape '
                         f'{x.shape[1:]} differs from earlier batches '
                         f'{self._sums[key].shape}.')
      self._sums[key] = self._sums.get(key, 0.0) + x.sum(axis=0)
    self._count += n

  def result(self):
    """Returns {'scores': [4], '<type>_heatmap': [H, W]} means (float64).

    Raises:
      ValueError: if nothing was added.
    """
    if not self._count:
      raise ValueError('TrainStatistics.result: no example was added.')
    return {k: v / self._count for k, v in self._sums.items()}


def train_statistics(targets):
  """Means of the training targets in one call; see `TrainStatistics`."""
  stats = TrainStatistics()
  stats.add(targets)
  return stats.result()


def trivial_baseline(targets, statistics):
  """Predictions of the trivial baseline for a set of targets.

  Every example gets the mean training score per type, the mean training
  heatmap per type, and its own target prompt with no word marked (markers
  stripped). Under the conventions above its PLCC and SRCC are 0.0 (constant
  predictor) and its keyword P / R / F1 are 0.0 (nothing predicted).

  Args:
    targets: dict with `scores` [N, 4], both heatmaps [N, H, W], `texts`.
    statistics: output of `train_statistics` / `TrainStatistics.result`.

  Returns:
    A predictions dict for `evaluate` / `MetricsAccumulator.add`. The heatmap
    arrays are read-only broadcasts of the mean maps (no N x H x W copy).

  Raises:
    ValueError: if the statistics do not match the targets' shapes.
  """
  n = _check_batch(targets, 'targets')
  mean_scores = np.asarray(statistics['scores'], dtype=np.float32)
  if mean_scores.shape != (len(SCORE_NAMES),):
    raise ValueError(f"trivial_baseline: statistics['scores'] has shape "
                     f'{mean_scores.shape}, expected ({len(SCORE_NAMES)},).')
  out = {'scores': np.tile(mean_scores, (n, 1))}
  for key in ('implausibility_heatmap', 'misalignment_heatmap'):
    mean_map = np.asarray(statistics[key], dtype=np.float32)
    map_shape = tuple(np.shape(targets[key])[1:])
    if mean_map.shape != map_shape:
      raise ValueError(f'trivial_baseline: statistics[{key!r}] has shape '
                       f'{mean_map.shape} but the targets are {map_shape}.')
    out[key] = np.broadcast_to(mean_map, (n,) + map_shape)
  out['texts'] = [strip_markers(t) for t in targets['texts']]
  return out


def empty_metrics(value: float = float('nan')) -> dict[str, Any]:
  """A metrics dict of the evaluate() shape with every value set to `value`."""
  return {
      'scores': {s: {'plcc': value, 'srcc': value} for s in SCORE_NAMES},
      'heatmaps': {h: {m: value for m in HEATMAP_METRIC_NAMES}
                   for h in HEATMAP_NAMES},
      'keywords': {k: value for k in KEYWORD_METRIC_NAMES},
  }


def check_metrics_structure(metrics: Mapping[str, Any],
                            what: str = 'metrics') -> None:
  """Raises ValueError unless `metrics` has exactly the evaluate() keys.

  Args:
    metrics: a metrics dict.
    what: name used in the error message.

  Raises:
    ValueError: naming the first missing or unexpected key path.
  """
  _check_keys(metrics, empty_metrics(), what)


def _check_keys(got, want, path):
  if not isinstance(got, Mapping):
    raise ValueError(f'{path}: expected a dict with keys {sorted(want)}, got '
                     f'{type(got).__name__}.')
  if set(got) != set(want):
    raise ValueError(f'{path}: expected keys {sorted(want)}, got '
                     f'{sorted(got)}.')
  for key, sub in want.items():
    if isinstance(sub, dict):
      _check_keys(got[key], sub, f'{path}[{key!r}]')

