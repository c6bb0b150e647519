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
"""Port-shaped vs cheaper heatmap heads, trained the same way.

A tiny RAHF (64 px images, 8x8 patch grid, tiny ViT and T5) is trained once
per head on the same synthetic examples, in the same order, with the same
optimizer (`richhf_jax.trainer.Trainer`: clip + AdamW, cosine schedule) and
seed; only the heatmap head differs. By default the heads output 128x128
heatmaps, 16x the grid, the paper configuration's geometry (24x24 grid ->
384x384), each with 1/8 of the channels of the preset it stands for:

  port       four transposed-conv blocks (96, 48, 48, 24) up to 128x128;
  efficient  two blocks (32, 16) up to 32x32, then a 4x bilinear resize of
             the logits;
  narrow     four blocks (32, 16, 8, 4) up to 128x128, no resize: `port`
             at 256, 128, 64 and 32 channels in the paper configuration,
             3.06x fewer forward FLOPs than `port` (the efficient head:
             3.22x); not a preset, as it trained worse than `efficient`
             (docs/performance.md);
  wide       the efficient shape with 1.5x the channels, (48, 24) up to
             32x32: (384, 192) in the paper configuration, 39 GFLOP per head
             against the efficient head's 23, 3.05x fewer forward FLOPs
             than `port` for the whole model; one run, worse than
             `efficient` on implausibility by less than the run-to-run
             spread (docs/performance.md);
  refined    the efficient head whose resize moves from the logits to its
             8-channel features, then a 4-channel 3x3 conv at the output
             resolution before the output conv (`refine_channels`; 32
             channels in the paper configuration, ~5.6 GFLOP more per head
             by hand count); on a frozen backbone no better than
             `efficient` (docs/performance.md), not a preset.

`--heatmap_size 64` (8x the grid) drops one block of `port` (96, 48, 24)
and `narrow` (32, 16, 8) and makes the efficient head's resize 2x: 4x
cheaper, for CPUs where the 128x128 port head trains too slowly. Either way
the efficient head predicts at 32x32, where a rater's disc (radius 1/20 of
the side) is 1.6 pixels wide; the paper configuration's efficient head
predicts at 96x96 (4.8 pixels), so this comparison is harder on it than
the real one.

For each seed in `--seeds` (which sets the data and the order, and by
default the initialisation) and each of `--init_seeds` (initialisation and
dropout seeds trained on that data; default: the seed itself) it prints the
test-set heatmap metrics of every head (CC, KLD, SIM, NSS, AUC-Judd, MSE,
per heatmap type) side by side with the relative gap to the first head, and
one JSON line per head. With several runs per head it then prints each
head's mean and standard deviation over its runs, the gap of the means with
twice its standard error, the mean, minimum and maximum of the per-run
gaps, and a summary JSON line. Runs of one head differ by several percent
from the initialisation alone (docs/performance.md), so a 2% criterion
needs several runs per head.

`--frozen_backbone HEAD` separates the heads from the training path of the
rest of the model: per data seed the whole model is trained once with HEAD,
its encoder's feature maps (the heads' input) are computed for the train and
test examples, and every head of `--heads` is then trained from each
initialisation on those fixed features (same loss, optimizer, schedule and
example order; the backbone's row is printed first). Runs then differ only
in the head, so the gaps have a far smaller spread than end to end.

Data: `richhf_jax.data.synthetic.make_example` in process (images resized
to 64 px, 512x512 maps resized with antialiasing); prompts and marked
targets are tokenized by a word-level vocabulary of the generated prompts
(the text only feeds the fusion encoder and the keyword loss).

  python benchmarks/heatmap_head_ablation.py [--num_train 512]
      [--num_test 128] [--steps 400] [--batch_size 16] [--heatmap_size 128]
      [--heads port,efficient,narrow] [--seeds 0,1] [--init_seeds 0,1,2]
      [--frozen_backbone port [--features_cache DIR]]
"""

import argparse
import functools
import io
import json
import os
import sys
import time

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from benchmarks import common
from richhf_jax import compile_options
from richhf_jax import metrics
from richhf_jax import model as model_lib
from richhf_jax import trainer as trainer_lib
from richhf_jax.data import release
from richhf_jax.data import synthetic
from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.models import score_head
# pylint: enable=g-import-not-at-top

IMAGE_SIZE = 64
HEATMAP_SIZES = (128, 64)
INPUT_LENGTH = 24
TARGET_LENGTH = 24
VOCAB_SIZE = 512
METRICS = ('cc', 'kld', 'sim', 'nss', 'auc_judd', 'mse_all')
# Lower is better for these; higher for the others.
LOWER_IS_BETTER = ('kld', 'mse_all')

HEADS = ('port', 'efficient', 'narrow', 'wide', 'refined')


def head_config(head: str, heatmap_size: int = 128):
  """The ablation's heatmap head `head` for `heatmap_size` outputs."""
  if heatmap_size not in HEATMAP_SIZES:
    raise ValueError(f'heatmap_size={heatmap_size}; expected one of '
                     f'{HEATMAP_SIZES}')
  if head == 'port':
    up = (96, 48, 48, 24) if heatmap_size == 128 else (96, 48, 24)
    return heatmap_head.get_heatmap_head_config(
        'port', conv_channels=(96, 48), upsample_channels=up,
        final_channels=(24,))
  if head == 'efficient':
    return heatmap_head.get_heatmap_head_config(
        'efficient', conv_channels=(96, 48), upsample_channels=(32, 16),
        final_channels=(8,), bilinear_upsample=heatmap_size // 32)
  if head == 'wide':
    return heatmap_head.get_heatmap_head_config(
        'efficient', conv_channels=(96, 48), upsample_channels=(48, 24),
        final_channels=(8,), bilinear_upsample=heatmap_size // 32)
  if head == 'refined':
    return heatmap_head.get_heatmap_head_config(
        'efficient', conv_channels=(96, 48), upsample_channels=(32, 16),
        final_channels=(8,), bilinear_upsample=heatmap_size // 32,
        refine_channels=(4,))
  if head == 'narrow':
    up = (32, 16, 8, 4) if heatmap_size == 128 else (32, 16, 8)
    return heatmap_head.get_heatmap_head_config(
        'port', conv_channels=(96, 48), upsample_channels=up,
        final_channels=(up[-1],))
  raise ValueError(f'unknown head {head!r}; expected one of {HEADS}')


def model_config(head: str, heatmap_size: int = 128) -> rahf.RAHFConfig:
  """The tiny RAHF with heatmap head `head` (one of HEADS)."""
  return rahf.RAHFConfig(
      vit=config_lib.vit_config('tiny', image_size=IMAGE_SIZE, patch_size=8),
      t5=config_lib.t5_config('tiny', vocab_size=VOCAB_SIZE),
      heatmap_head=head_config(head, heatmap_size),
      score_head=score_head.get_score_head_config('tiny'),
      heatmap_loss='bce')


class WordVocab:
  """Word -> id (0 pad, 1 EOS, 2 unknown), ids past the size map to 2."""

  def __init__(self, texts):
    words = sorted({w for t in texts for w in t.split()})
    self.ids = {w: i + 3 for i, w in enumerate(words)
                if i + 3 < VOCAB_SIZE}

  def encode(self, text: str, length: int) -> np.ndarray:
    ids = [self.ids.get(w, 2) for w in text.split()][:length - 1] + [1]
    return np.asarray(ids + [0] * (length - len(ids)), np.int32)


def make_data(num: int, split: str, seed: int,
              heatmap_size: int = 128) -> dict[str, np.ndarray]:
  """Synthetic examples as arrays (texts kept as lists)."""
  images, imp, mis, scores, prompts, targets = [], [], [], [], [], []
  for i in range(num):
    rng = np.random.default_rng([seed, synthetic.SPLITS.index(split), i])
    ex, _ = synthetic.make_example(rng, split)
    img = Image.open(io.BytesIO(ex.jpeg)).convert('RGB').resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    images.append(np.asarray(img, np.float32) / 127.5 - 1.0)
    imp.append(ex.artifact_map)
    mis.append(ex.misalignment_map)
    scores.append([ex.scores[k] for k in release.SCORE_FIELDS])
    words = release.prompt_words(ex.prompt)
    prompts.append(' '.join(words))
    targets.append(release.marked_target(words, ex.labels))
  maps = np.stack(imp + mis).astype(np.float32) / 255.0
  maps = np.clip(np.asarray(jax.image.resize(
      maps, (maps.shape[0], heatmap_size, heatmap_size), 'linear',
      antialias=True)), 0.0, 1.0)
  return dict(image=np.stack(images), implausibility_heatmap=maps[:num],
              misalignment_heatmap=maps[num:],
              scores=np.asarray(scores, np.float32), prompts=prompts,
              targets=targets)


def tokenize(data: dict, vocab: WordVocab) -> dict[str, np.ndarray]:
  """The model's batch keys (teacher-forced decoder inputs shifted right)."""
  enc = np.stack([vocab.encode(p, INPUT_LENGTH) for p in data['prompts']])
  tgt = np.stack([vocab.encode(t, TARGET_LENGTH) for t in data['targets']])
  dec_in = np.concatenate([np.zeros_like(tgt[:, :1]), tgt[:, :-1]], axis=1)
  out = {k: v for k, v in data.items() if k not in ('prompts', 'targets')}
  out.update(encoder_input_tokens=enc, decoder_input_tokens=dec_in,
             decoder_target_tokens=tgt,
             decoder_loss_weights=(tgt > 0).astype(np.float32))
  return out


def training_config(args: argparse.Namespace,
                    seed: int) -> trainer_lib.TrainConfig:
  """The optimizer and schedule every run of the ablation uses."""
  return trainer_lib.TrainConfig(
      num_steps=args.steps, batch_size=args.batch_size,
      learning_rate=args.learning_rate, warmup_steps=max(args.steps // 10, 1),
      seed=seed, log_every=max(args.steps // 4, 1),
      cpu_memory_scheduler=False)


def example_order(num: int, args: argparse.Namespace,
                  order_seed: int) -> np.ndarray:
  """Indices of the `args.steps * args.batch_size` training examples drawn."""
  return np.random.default_rng(order_seed).permutation(
      np.arange(args.steps * args.batch_size) % num)


def train_model(head: str, train: dict, args: argparse.Namespace, seed: int,
                order_seed: int | None = None):
  """Trains the whole tiny RAHF with heatmap head `head`.

  Returns:
    (model, params, train seconds, the last logged training metrics).
  """
  model = model_lib.RAHFModel(model_config(head, args.heatmap_size))
  trainer = trainer_lib.Trainer(model, training_config(args, seed),
                                INPUT_LENGTH, TARGET_LENGTH)
  trainer.init_state()
  order = example_order(train['image'].shape[0], args,
                        seed if order_seed is None else order_seed)

  def batches():
    for s in range(args.steps):
      idx = order[s * args.batch_size:(s + 1) * args.batch_size]
      yield {k: v[idx] for k, v in train.items()}

  t0 = time.perf_counter()
  last = trainer.train(batches(), log_fn=common.log)
  return model, trainer.state.params, time.perf_counter() - t0, last


def result_row(head: str, args: argparse.Namespace, num_train: int,
               test: dict, preds: dict[str, np.ndarray],
               train_sec: float, final_loss: float) -> dict:
  """One run's JSON row: the head's shape, timings and test metrics."""
  hc = head_config(head, args.heatmap_size)
  row = dict(benchmark='heatmap_head_ablation', head=head,
             conv_channels=hc.conv_channels,
             upsample_channels=hc.upsample_channels,
             final_channels=hc.final_channels,
             bilinear_upsample=hc.bilinear_upsample,
             heatmap_size=args.heatmap_size,
             steps=args.steps, batch_size=args.batch_size,
             num_train=num_train, num_test=int(test['image'].shape[0]),
             train_sec=round(train_sec, 1),
             final_train_loss=round(final_loss, 4))
  for k in rahf.HEATMAP_TYPES:
    m = metrics.heatmap_metrics(preds[k], test[f'{k}_heatmap'])
    row.update({f'{k}/{name}': round(m[name], 5) for name in METRICS})
  return row


def in_batches(fn, batch_size: int, *arrays: np.ndarray):
  """`fn` over consecutive slices of `arrays`; outputs joined on axis 0."""
  outs = [fn(*(jnp.asarray(a[s:s + batch_size]) for a in arrays))
          for s in range(0, arrays[0].shape[0], batch_size)]
  return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]),
                      *outs)


def train_and_eval(head: str, train: dict, test: dict,
                   args: argparse.Namespace, seed: int,
                   order_seed: int | None = None) -> dict:
  """Trains one model; returns its test heatmap metrics and timings.

  Args:
    head: one of HEADS.
    train: tokenized training arrays.
    test: tokenized test arrays.
    args: the parsed flags (steps, batch size, learning rate, map size).
    seed: the parameter initialisation and dropout seed.
    order_seed: seed of the order of the training examples (default:
      `seed`).
  """
  model, params, train_sec, last = train_model(head, train, args, seed,
                                               order_seed)
  predict = jax.jit(lambda p, img, tok: {
      k: model.module.apply({'params': p}, img, tok)[f'{k}_heatmap']
      for k in rahf.HEATMAP_TYPES})
  preds = in_batches(functools.partial(predict, params), args.batch_size,
                     test['image'], test['encoder_input_tokens'])
  return result_row(head, args, train['image'].shape[0], test, preds,
                    train_sec, last.get('loss/total', float('nan')))


# ----------------------------------------------------------------------------
# Heads trained on a frozen backbone's features.
# ----------------------------------------------------------------------------


def feature_maps(model: model_lib.RAHFModel, params, data: dict,
                 batch_size: int) -> np.ndarray:
  """The heads' input, [N, h, w, D], from a trained model's encoder."""
  fn = jax.jit(lambda p, img, tok: model.module.apply(
      {'params': p}, img, tok,
      method=lambda m, i, t: m.feature_map(m.encode(i, t)[0])))
  return in_batches(functools.partial(fn, params), batch_size,
                    data['image'], data['encoder_input_tokens'])


def backbone_features(args: argparse.Namespace, seed: int, train: dict,
                      test: dict) -> tuple[np.ndarray, np.ndarray, dict]:
  """Train and test feature maps of `args.frozen_backbone` trained on seed.

  With `args.features_cache` they are read from (or, after training, written
  to) an .npz there named after every flag that determines them.

  Returns:
    (train features, test features, a dict for the backbone's row).
  """
  path = None
  if args.features_cache:
    name = (f'{args.frozen_backbone}_seed{seed}_size{args.heatmap_size}_'
            f'n{args.num_train}-{args.num_test}_steps{args.steps}_'
            f'b{args.batch_size}_lr{args.learning_rate:g}.npz')
    path = os.path.join(args.features_cache, name)
    if os.path.exists(path):
      with np.load(path, allow_pickle=False) as z:
        feats, test_feats = z['train'], z['test']
      if (feats.shape[0] != train['image'].shape[0]
          or test_feats.shape[0] != test['image'].shape[0]):
        raise ValueError(f'{path} holds {feats.shape[0]} / '
                         f'{test_feats.shape[0]} feature maps; expected '
                         f'{train["image"].shape[0]} / '
                         f'{test["image"].shape[0]}')
      common.log(f'backbone features read from {path}')
      return feats, test_feats, dict(cached=path)
  model, params, sec, last = train_model(args.frozen_backbone, train, args,
                                         seed)
  feats = feature_maps(model, params, train, args.batch_size)
  test_feats = feature_maps(model, params, test, args.batch_size)
  info = dict(train_sec=round(sec, 1), final_train_loss=round(
      last.get('loss/total', float('nan')), 4))
  if path:
    os.makedirs(args.features_cache, exist_ok=True)
    tmp = path + '.tmp.npz'
    np.savez(tmp, train=feats, test=test_feats)
    os.replace(tmp, path)
    info['cached'] = path
  return feats, test_feats, info


def train_heads_on_features(head: str, features: np.ndarray, train: dict,
                            test_features: np.ndarray, test: dict,
                            args: argparse.Namespace, seed: int,
                            order_seed: int) -> dict:
  """Trains fresh heatmap heads `head` on fixed features; tests them.

  One head per heatmap type, initialised from `seed`, trained on the
  per-pixel loss of the whole model (`model_config`'s `heatmap_loss` and
  weight, summed over the types) with the whole model's optimizer and
  schedule (`training_config`) and example order (`example_order`); the
  backbone that produced `features` does not change, so the runs differ
  only in the head and its initialisation.

  Args:
    head: one of HEADS.
    features: [N, h, w, D] training features (`feature_maps`).
    train: the training arrays (the heatmaps are the targets).
    test_features: [M, h, w, D] test features.
    test: the test arrays.
    args: the parsed flags.
    seed: the heads' initialisation seed.
    order_seed: seed of the example order.

  Returns:
    The run's row (`result_row`).
  """
  config = model_config(head, args.heatmap_size)
  if features.shape[0] != train['image'].shape[0]:
    raise ValueError(f'{features.shape[0]} feature maps for '
                     f'{train["image"].shape[0]} training examples')
  module = heatmap_head.HeatmapHead(config.heatmap_head)
  key = jax.random.PRNGKey(seed)
  params = {k: model_lib.unbox(module.init(jax.random.fold_in(key, i),
                                            features[:1])['params'])
            for i, k in enumerate(rahf.HEATMAP_TYPES)}
  optimizer = trainer_lib.make_optimizer(training_config(args, seed))
  opt_state = optimizer.init(params)

  def loss_fn(p, f, targets):
    total = 0.0
    for k in rahf.HEATMAP_TYPES:
      logits = module.apply({'params': p[k]}, f, return_logits=True)
      total += config.heatmap_loss_weight * jnp.mean(
          model_lib.heatmap_pixel_loss(config, logits, targets[k]))
    return total

  # The trainer's XLA options (on CPU the convolutions stay out of YNNPACK
  # fusions): the same rounding as the whole model's heads, and ~1.5x
  # faster for the port head here.
  options = compile_options.defaults()

  @functools.partial(jax.jit, compiler_options=options)
  def step(p, state, f, targets):
    loss, grads = jax.value_and_grad(loss_fn)(p, f, targets)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  order = example_order(features.shape[0], args, order_seed)
  t0 = time.perf_counter()
  loss = float('nan')
  for s in range(args.steps):
    idx = order[s * args.batch_size:(s + 1) * args.batch_size]
    params, opt_state, loss = step(
        params, opt_state, jnp.asarray(features[idx]),
        {k: jnp.asarray(train[f'{k}_heatmap'][idx])
         for k in rahf.HEATMAP_TYPES})
    if (s + 1) % max(args.steps // 4, 1) == 0:
      common.log(f'{head} head on features: step {s + 1}/{args.steps} '
                 f'loss {float(loss):.4f}')
  train_sec = time.perf_counter() - t0
  predict = jax.jit(lambda p, f: {
      k: jax.nn.sigmoid(module.apply({'params': p[k]}, f, return_logits=True))
      for k in rahf.HEATMAP_TYPES}, compiler_options=options)
  preds = in_batches(functools.partial(predict, params), args.batch_size,
                     test_features)
  return result_row(head, args, features.shape[0], test, preds,
                    train_sec, float(loss))


def relative_gap(port: float, efficient: float, name: str) -> float:
  """Efficient's shortfall vs port as a fraction (positive = worse)."""
  if not port:
    return float('nan')
  gap = (efficient - port) / abs(port)
  return gap if name in LOWER_IS_BETTER else -gap


def summarize(rows: list[dict], reference: str,
              keys: list[str]) -> dict[str, dict[str, dict[str, float]]]:
  """Each head's figures over its runs, and its gap of the means.

  Args:
    rows: one dict per trained model, with 'head' and the metric keys.
    reference: the head the others are compared with.
    keys: the metric keys ('implausibility/cc', ...).

  Returns:
    {head: {key: {n, mean, sd, gap, gap_se}}}: the number of runs, the mean
    and sample standard deviation of the metric over them (sd is nan with
    one run), `relative_gap` of the head's mean to the reference's mean
    (positive = worse) and its standard error, sqrt(sd_ref^2 / n_ref +
    sd^2 / n) / |mean_ref| (nan when either has one run; both 0 for the
    reference).

  Raises:
    ValueError: if `reference` has no run.
  """
  by_head: dict[str, list[dict]] = {}
  for r in rows:
    by_head.setdefault(r['head'], []).append(r)
  if reference not in by_head:
    raise ValueError(f'no run of the reference head {reference!r}')
  stats = {}
  for h, runs in by_head.items():
    stats[h] = {}
    for key in keys:
      v = np.asarray([r[key] for r in runs], np.float64)
      sd = float(v.std(ddof=1)) if v.size > 1 else float('nan')
      stats[h][key] = dict(n=int(v.size), mean=float(v.mean()), sd=sd)
  for h in stats:
    for key in keys:
      ref, cur = stats[reference][key], stats[h][key]
      if h == reference:
        cur.update(gap=0.0, gap_se=0.0)
        continue
      cur['gap'] = relative_gap(ref['mean'], cur['mean'], key.split('/')[1])
      cur['gap_se'] = (
          float(np.sqrt(ref['sd'] ** 2 / ref['n'] + cur['sd'] ** 2 / cur['n'])
                / abs(ref['mean'])) if ref['mean'] else float('nan'))
  return stats


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--num_train', type=int, default=512)
  parser.add_argument('--num_test', type=int, default=128)
  parser.add_argument('--steps', type=int, default=400)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--learning_rate', type=float, default=2e-3)
  parser.add_argument('--seeds', type=common.csv_list(int), default=[0],
                      help='data seeds: each sets the examples and their '
                      'order, and the initialisation unless --init_seeds '
                      'is given; one run of every head per seed and '
                      'initialisation')
  parser.add_argument('--init_seeds', type=common.csv_list(int),
                      default=None,
                      help='initialisation (and dropout) seeds trained on '
                      'each seed\'s data and order (default: that seed); '
                      'several give the run-to-run spread of each head')
  parser.add_argument('--heatmap_size', type=int, default=128,
                      choices=HEATMAP_SIZES)
  parser.add_argument('--heads', type=common.csv_list(str),
                      default=list(HEADS))
  parser.add_argument('--frozen_backbone', default=None, choices=HEADS,
                      help='train the whole model once per data seed with '
                      'this head, then train every head of --heads from '
                      'each --init_seeds on its frozen feature maps (the '
                      'heads alone differ between runs)')
  parser.add_argument('--features_cache', default=None,
                      help='directory for the frozen backbone\'s feature '
                      'maps: reused by later runs with the same flags '
                      'instead of retraining it')
  args = parser.parse_args(argv)
  for name in ('num_train', 'num_test', 'steps', 'batch_size'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
  for h in args.heads:
    if h not in HEADS:
      parser.error(f'--heads {h!r}: expected some of {list(HEADS)}')
  if not args.seeds:
    parser.error('--seeds: expected at least one seed')
  if args.features_cache and not args.frozen_backbone:
    parser.error('--features_cache needs --frozen_backbone')
  if args.init_seeds is not None and not args.init_seeds:
    parser.error('--init_seeds: expected at least one seed')
  keys = [f'{k}/{m}' for k in rahf.HEATMAP_TYPES for m in METRICS]
  gaps = {h: {key: [] for key in keys} for h in args.heads[1:]}
  all_rows = []
  for seed in args.seeds:
    t0 = time.perf_counter()
    train_raw = make_data(args.num_train, 'train', seed, args.heatmap_size)
    test_raw = make_data(args.num_test, 'test', seed, args.heatmap_size)
    vocab = WordVocab(train_raw['prompts'] + train_raw['targets'])
    train, test = tokenize(train_raw, vocab), tokenize(test_raw, vocab)
    common.log(f'seed {seed}: data ready in {time.perf_counter() - t0:.1f}s')
    if args.frozen_backbone:
      feats, test_feats, info = backbone_features(args, seed, train, test)
      print(json.dumps(dict(
          benchmark='heatmap_head_ablation_backbone',
          head=args.frozen_backbone, seed=seed, steps=args.steps,
          feature_shape=list(feats.shape[1:]),
          feature_sum=float(np.sum(feats, dtype=np.float64)), **info),
                       sort_keys=True), flush=True)

    def run(head, init_seed):
      if args.frozen_backbone:
        return train_heads_on_features(head, feats, train, test_feats, test,
                                       args, init_seed, order_seed=seed)
      return train_and_eval(head, train, test, args, init_seed,
                            order_seed=seed)

    for init_seed in args.init_seeds or [seed]:
      rows = [run(h, init_seed) for h in args.heads]
      print(f'seed {seed}, init seed {init_seed}\n{"metric":>26} ' +
            ' '.join(f"{r['head']:>10}" for r in rows) +
            ''.join(f"  {r['head'] + ' gap':>14}" for r in rows[1:]))
      for key in keys:
        line = f'{key:>26} ' + ' '.join(f'{r[key]:>10.4f}' for r in rows)
        for r in rows[1:]:
          gap = relative_gap(rows[0][key], r[key], key.split('/')[1])
          gaps[r['head']][key].append(gap)
          line += f'  {100 * gap:>+13.2f}%'
        print(line)
      for r in rows:
        r.update(seed=seed, init_seed=init_seed,
                 frozen_backbone=args.frozen_backbone,
                 **common.machine_info())
        print(json.dumps(r, sort_keys=True), flush=True)
      all_rows += rows
  runs = len(all_rows) // len(args.heads)
  if runs > 1:
    # Per head: mean and spread over the runs; per other head: its gap to
    # the first head run by run (mean, min, max) and the gap of the means
    # with twice its standard error (about a 95% interval).
    stats = summarize(all_rows, args.heads[0], keys)
    print(f'\nover {runs} runs per head: mean (sd); gap to {args.heads[0]} '
          '(positive = worse): gap of the means +- 2 standard errors, '
          'then the per-run gaps: mean [min, max]')
    for key in keys:
      line = f'{key:>26} ' + ' '.join(
          f"{h:>9} {stats[h][key]['mean']:.4f} ({stats[h][key]['sd']:.4f})"
          for h in args.heads)
      for h, g in gaps.items():
        st = stats[h][key]
        line += (f"  {h} {100 * st['gap']:+6.2f}% +- "
                 f"{200 * st['gap_se']:.2f}; {100 * np.mean(g[key]):+6.2f}% "
                 f'[{100 * min(g[key]):+6.2f}, {100 * max(g[key]):+6.2f}]')
      print(line)
    print(json.dumps(dict(
        benchmark='heatmap_head_ablation_summary', reference=args.heads[0],
        frozen_backbone=args.frozen_backbone,
        seeds=args.seeds, init_seeds=args.init_seeds, runs_per_head=runs,
        mean_gap={
            h: {key: round(float(np.mean(g[key])), 5) for key in keys}
            for h, g in gaps.items()},
        stats={h: {key: {k: round(v, 6) if np.isfinite(v) else None
                         for k, v in st.items()}
                   for key, st in per_key.items()}
               for h, per_key in stats.items()}),
                     sort_keys=True))
  return 0


if __name__ == '__main__':
  sys.exit(main())
