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
"""Tests for the trainer and the orbax checkpoints."""

import dataclasses
import itertools
import json
import os
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import flax
import jax
import jax.numpy as jnp
import numpy as np

from richhf_jax import checkpoints
from richhf_jax import compile_options
from richhf_jax import model as model_lib
from richhf_jax import test_utils
from richhf_jax import trainer as trainer_lib


class TrainerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.cfg = test_utils.tiny_config()
    cls.tc = trainer_lib.TrainConfig(
        num_steps=12, batch_size=2, learning_rate=3e-3, warmup_steps=1,
        schedule='constant', log_every=4, checkpoint_every=6,
        keep_checkpoints=2, eval_every=4, best_metric='loss/total')
    cls.batch = test_utils.fake_batch(cls.cfg)
    cls.val_batch = test_utils.fake_batch(cls.cfg, seed=7)
    cls.trainer = trainer_lib.Trainer(model_lib.RAHFModel(cls.cfg), cls.tc,
                                      input_length=6, target_length=7)
    cls.trainer.init_state()
    cls.ckpt = checkpoints.Checkpointer(cls.tmp, max_to_keep=2)
    cls.best = checkpoints.Checkpointer(cls.tmp, 1, subdir='best',
                                        best_metric='loss/total')
    cls.history_path = os.path.join(cls.tmp, 'metrics.jsonl')
    cls.logs = []
    cls.history = []
    orig = cls.trainer._log_window

    def spy(*args, **kwargs):
      out = orig(*args, **kwargs)
      cls.history.append(out)
      return out

    cls.trainer._log_window = spy
    cls.trainer.train(itertools.repeat(cls.batch), cls.ckpt,
                      {'model_config': cls.cfg}, None, cls.logs.append,
                      eval_batches=lambda: [cls.val_batch],
                      best_ckpt=cls.best, history_path=cls.history_path)
    # Before test_non_finite_loss_names_the_term poisons the params.
    cls.final_val = cls.trainer.evaluate([cls.val_batch])

  def test_loss_goes_down_on_a_repeated_batch(self):
    self.assertLen(self.history, 3)
    self.assertLess(self.history[-1]['loss/total'],
                    self.history[0]['loss/total'])
    self.assertEqual(int(self.trainer.state.step), 12)
    self.assertTrue(any('eta' in line for line in self.logs), self.logs)

  def test_checkpoints_kept_and_restored_exactly(self):
    self.assertEqual(self.ckpt.manager.all_steps(), [6, 12])
    other = trainer_lib.Trainer(model_lib.RAHFModel(self.cfg), self.tc, 6, 7)
    meta = other.restore_state(checkpoints.Checkpointer(self.tmp))
    self.assertEqual(meta['step'], 12)
    self.assertEqual(int(other.state.step), 12)
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(self.trainer.state.params),
                 jax.device_get(other.state.params))
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(self.trainer.state.opt_state),
                 jax.device_get(other.state.opt_state))

  def test_validation_every_n_steps_and_keep_best(self):
    with open(self.history_path) as f:
      records = [json.loads(l) for l in f]
    val = {r['step']: r['val/loss/total'] for r in records
           if 'val/loss/total' in r}
    self.assertEqual(sorted(val), [4, 8, 12])
    train_steps = [r['step'] for r in records if 'loss/total' in r]
    self.assertEqual(train_steps, [4, 8, 12])
    for r in records:
      if 'loss/total' in r:
        for k in ('grad_norm', 'learning_rate', 'steps_per_sec',
                  'examples_per_sec', 'loss/text', 'text/accuracy'):
          self.assertIn(k, r)
    # The evaluation is deterministic: equal to a fresh one on the batch.
    self.assertAlmostEqual(self.final_val['loss/total'], val[12], places=5)
    best_step = min(val, key=val.get)
    self.assertEqual(self.best.manager.all_steps(), [best_step])
    meta = self.best.restore_meta()
    self.assertEqual(meta['best_metric'], 'loss/total')
    self.assertAlmostEqual(meta['best_value'], val[best_step], places=6)
    self.assertAlmostEqual(self.best.best_value(), val[best_step], places=6)
    self.assertTrue(any(l.startswith('validation at step 8') for l in
                        self.logs), self.logs)

  def test_mismatched_model_config_is_refused(self):
    meta = checkpoints.Checkpointer(self.tmp).manager.restore(
        12, args=checkpoints.ocp.args.Composite(
            meta=checkpoints.ocp.args.JsonRestore())).meta
    wider = dataclasses.replace(
        self.cfg, t5=dataclasses.replace(self.cfg.t5, emb_dim=96))
    with self.assertRaisesRegex(ValueError, r't5\.emb_dim: 64 vs 96'):
      checkpoints.check_model_config(meta, wider, self.tmp)
    checkpoints.check_model_config(meta, self.cfg, self.tmp)  # no error
    # Fields that change memory and speed only may differ, or be missing
    # from a checkpoint saved before they existed.
    lean = dataclasses.replace(
        self.cfg, vit=dataclasses.replace(self.cfg.vit, remat=True),
        heatmap_head=dataclasses.replace(self.cfg.heatmap_head, remat=True,
                                         batch_chunks=2))
    checkpoints.check_model_config(meta, lean, self.tmp)
    del meta['model_config']['heatmap_head']['batch_chunks']
    checkpoints.check_model_config(meta, self.cfg, self.tmp)
    with self.assertRaisesRegex(ValueError, r't5\.emb_dim: 64 vs 96'):
      checkpoints.check_model_config(meta, wider, self.tmp)

  def test_restore_into_a_different_shape_fails_clearly(self):
    wider = dataclasses.replace(
        self.cfg, t5=dataclasses.replace(self.cfg.t5, mlp_dim=96))
    other = trainer_lib.Trainer(model_lib.RAHFModel(wider), self.tc, 6, 7)
    with self.assertRaises(ValueError):
      other.restore_state(checkpoints.Checkpointer(self.tmp))

  def test_non_finite_loss_names_the_term(self):
    bad = dict(self.batch)
    bad['scores'] = np.full_like(self.batch['scores'], np.nan)
    tr = self.trainer
    tr.config = dataclasses.replace(self.tc, num_steps=16)
    with self.assertRaisesRegex(trainer_lib.NonFiniteLossError,
                                r'steps 13 and 16.*plausibility_score'):
      tr.train(itertools.repeat(bad), None, None, None, lambda s: None)

  def test_restoring_into_another_optimizer_fails_clearly(self):
    model_dir = os.path.join(self.tmp, 'adamw_run')
    ckpt = checkpoints.Checkpointer(model_dir, async_save=False)
    ckpt.save(1, self.trainer.state, {'train_config': self.tc})
    ckpt.wait()
    other = trainer_lib.Trainer(
        model_lib.RAHFModel(self.cfg),
        dataclasses.replace(self.tc, optimizer='adafactor'), 6, 7)
    with self.assertRaisesRegex(ValueError, "optimizer='adamw' but "
                                "TrainConfig.optimizer='adafactor'"):
      other.restore_state(checkpoints.Checkpointer(model_dir))

  def test_model_info_lists_every_param(self):
    path = os.path.join(self.tmp, 'model-info.txt')
    self.trainer.write_model_info(path)
    lines = open(path).read().splitlines()
    n = len(jax.tree.leaves(self.trainer.state.params))
    self.assertLen(lines, n + 2)  # + total, mesh
    query = [l for l in lines
             if l.startswith('encoder/layers_0/attention/query/kernel\t')]
    self.assertEqual(query, [
        "encoder/layers_0/attention/query/kernel\t(64, 64)\tfloat32\t"
        "P(None, 'model')"])
    self.assertIn('total parameters', lines[-2])
    self.assertIn("'fsdp': 1", lines[-1])


class OptimizerFeaturesTest(absltest.TestCase):
  """Gradient accumulation, freezing and per-module learning rates."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = test_utils.tiny_config()
    # No clipping (frozen grads would change the global norm). eps=1 keeps
    # Adam's first step proportional to the gradient: with a tiny eps it is
    # lr * sign(g), and rounding noise flips the sign of near-zero entries.
    cls.base = trainer_lib.TrainConfig(
        num_steps=1, batch_size=4, learning_rate=0.1, warmup_steps=0,
        schedule='constant', clip_norm=0.0, eps=1.0)
    cls.batch = test_utils.fake_batch(cls.cfg, batch_size=4, seed=3)
    cls.init, cls.ref, cls.ref_aux = cls._one_step(cls.base)

  @classmethod
  def _compiled(cls, tc):
    """(trainer with a compiled step, device batch, initial params)."""
    tr = trainer_lib.Trainer(model_lib.RAHFModel(cls.cfg), tc, 6, 7)
    tr.init_state()
    init = jax.device_get(tr.state.params)
    gb = tr.put_batch(cls.batch)
    tr.compile({k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                for k, v in gb.items()})
    return tr, gb, init

  @classmethod
  def _one_step(cls, tc):
    tr, gb, init = cls._compiled(tc)
    aux = jax.device_get(tr.step(gb))
    params = jax.device_get(tr.state.params)
    return (flax.traverse_util.flatten_dict(init, sep='/'),
            flax.traverse_util.flatten_dict(params, sep='/'), aux)

  def test_accumulation_freeze_and_lr_scales_against_one_big_batch(self):
    # One compiled step for three features: two micro-batches, a frozen ViT
    # and half the learning rate on the decoder, against the plain step.
    tc = dataclasses.replace(self.base, grad_accum_steps=2, freeze=('vit',),
                             lr_scales={'decoder': 0.5})
    init, params, aux = self._one_step(tc)
    # Every example has the same number of target tokens, so the mean of
    # the two micro-batch means is the big-batch mean.
    for k in ('loss/total', 'loss/text'):
      np.testing.assert_allclose(aux[k], self.ref_aux[k], rtol=1e-5,
                                 err_msg=k)
    # atol: one float32 ulp of a parameter near 1 (the deltas are ~1e-4 and
    # up; the micro-batch sums round differently).
    n_img = 0
    for k, v in params.items():
      delta = v - init[k]
      ref_delta = self.ref[k] - self.init[k]
      if k.startswith('img/'):
        n_img += 1
        np.testing.assert_array_equal(v, init[k], err_msg=k)
      elif k.startswith('decoder/'):
        np.testing.assert_allclose(delta, 0.5 * ref_delta, rtol=1e-4,
                                   atol=2.5e-7, err_msg=k)
      else:
        np.testing.assert_allclose(delta, ref_delta, rtol=1e-4, atol=2.5e-7,
                                   err_msg=k)
    self.assertGreater(n_img, 10)
    # The reference step moved every group, the frozen ViT included (the
    # comparisons have teeth).
    for prefix in ('img/', 'decoder/', 'encoder/'):
      self.assertGreater(
          max(np.abs(v - self.init[k]).max() for k, v in self.ref.items()
              if k.startswith(prefix)), 1e-4, prefix)

  def test_adafactor_trains_with_freeze_and_lr_scales(self):
    tc = dataclasses.replace(
        self.base, optimizer='adafactor', learning_rate=3e-3, clip_norm=1.0,
        num_steps=6, freeze=('vit',), lr_scales={'decoder': 0.5})
    tr, gb, init = self._compiled(tc)
    losses = [float(tr.step(gb)['loss/total']) for _ in range(6)]
    self.assertLess(losses[-1], losses[0] - 0.05, losses)
    params = jax.device_get(tr.state.params)
    for k, v in flax.traverse_util.flatten_dict(init['img'], sep='/').items():
      np.testing.assert_array_equal(
          v, flax.traverse_util.flatten_dict(params['img'], sep='/')[k],
          err_msg=k)

  def test_compiler_options_reach_the_compiler(self):
    tc = dataclasses.replace(self.base,
                             compiler_options={'xla_no_such_option': True})
    tr = trainer_lib.Trainer(model_lib.RAHFModel(self.cfg), tc, 6, 7)
    tr.use_abstract_state()
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
            for k, v in self.batch.items()}
    with self.assertRaisesRegex(Exception, 'xla_no_such_option'):
      tr.compile(spec)

  def test_default_compiler_options(self):
    model = model_lib.RAHFModel(self.cfg)
    defaults = compile_options.defaults('cpu')
    tr = trainer_lib.Trainer(model, self.base, 6, 7)
    self.assertEqual(tr.compiler_options or {}, defaults)
    # Explicit options go on top of the defaults; the defaults can be off.
    tc = dataclasses.replace(self.base,
                             compiler_options={'xla_cpu_enable_fast_math':
                                               False})
    self.assertEqual(trainer_lib.Trainer(model, tc, 6, 7).compiler_options,
                     dict(defaults, xla_cpu_enable_fast_math=False))
    tc = dataclasses.replace(self.base, default_compiler_options=False)
    self.assertIsNone(trainer_lib.Trainer(model, tc, 6, 7).compiler_options)

  def test_init_compiler_options_reach_the_compiler(self):
    self.assertEqual(trainer_lib.init_compiler_options(10**6, 'cpu'),
                     {'xla_backend_optimization_level': 0})
    self.assertIsNone(trainer_lib.init_compiler_options(10**8, 'cpu'))
    self.assertIsNone(trainer_lib.init_compiler_options(10**6, 'gpu'))
    tr = trainer_lib.Trainer(model_lib.RAHFModel(self.cfg), self.base, 6, 7)
    with mock.patch.object(trainer_lib, 'init_compiler_options',
                           lambda n, b: {'xla_no_such_option': True}):
      with self.assertRaisesRegex(Exception, 'xla_no_such_option'):
        tr.init_state()

  def test_unknown_module_name_lists_the_modules(self):
    tc = dataclasses.replace(self.base, freeze=('vitt',))
    with self.assertRaisesRegex(ValueError, r"'vitt' matches no parameter.*"
                                r"'decoder'"):
      trainer_lib.param_groups(tc, {'decoder': {'k': np.zeros(2)},
                                    'img': {'k': np.zeros(2)}})

  def test_accumulation_must_divide_the_batch(self):
    with self.assertRaisesRegex(ValueError, 'not divisible by '
                                'grad_accum_steps=3'):
      dataclasses.replace(self.base, grad_accum_steps=3)


class ConfigTest(absltest.TestCase):

  def test_bad_schedule_lists_choices(self):
    with self.assertRaisesRegex(ValueError, "'cosine', 'rsqrt', 'constant'"):
      trainer_lib.TrainConfig(schedule='linear')

  def test_schedules_warm_up(self):
    for name in ('cosine', 'rsqrt', 'constant'):
      cfg = trainer_lib.TrainConfig(num_steps=100, warmup_steps=10,
                                    learning_rate=1.0, schedule=name)
      lr = trainer_lib.learning_rate_schedule(cfg)
      self.assertLess(float(lr(1)), float(lr(10)))
      self.assertAlmostEqual(float(lr(10)), 1.0, places=5)

  def test_mesh_sizes_resolve(self):
    tc = trainer_lib.TrainConfig(model_parallel=2)
    self.assertEqual(tc.mesh_sizes(), {'data': -1, 'fsdp': 1, 'model': 2})
    self.assertEqual(trainer_lib.partitioning.mesh_shape(8, **tc.mesh_sizes()),
                     (4, 1, 2))
    legacy = trainer_lib.TrainConfig(fsdp=True)
    self.assertEqual(trainer_lib.partitioning.mesh_shape(
        8, **legacy.mesh_sizes()), (1, 8, 1))
    with self.assertRaisesRegex(ValueError, 'multiply to 6, but there are 8'):
      trainer_lib.partitioning.mesh_shape(8, data=3, fsdp=1, model=2)
    with self.assertRaisesRegex(ValueError, 'at most one may be -1'):
      trainer_lib.partitioning.mesh_shape(8, data=-1, fsdp=-1)

  def test_no_warmup_starts_at_the_full_rate(self):
    for name in ('cosine', 'rsqrt', 'constant'):
      cfg = trainer_lib.TrainConfig(num_steps=100, warmup_steps=0,
                                    learning_rate=0.5, schedule=name)
      self.assertAlmostEqual(
          float(trainer_lib.learning_rate_schedule(cfg)(0)), 0.5, places=6)

  def test_config_for_restore_keeps_the_optimizer_and_drops_the_mesh(self):
    saved = checkpoints._to_json(trainer_lib.TrainConfig(
        model_parallel=4, freeze=('vit',), lr_scales={'decoder': 0.1}))
    saved['unknown_future_field'] = 1
    tc = trainer_lib.config_for_restore(saved)
    self.assertEqual(tc.freeze, ('vit',))
    self.assertEqual(dict(tc.lr_scales), {'decoder': 0.1})
    self.assertEqual(tc.mesh_sizes(), {'data': -1, 'fsdp': 1, 'model': 1})

  def test_new_options_are_validated(self):
    bad = [({'optimizer': 'sgd'}, r"optimizer='sgd'.*'adamw', 'adafactor'"),
           ({'mu_dtype': 'int8'}, r"mu_dtype='int8'.*float dtype"),
           ({'mu_dtype': 'bfloat17'}, r"mu_dtype='bfloat17'"),
           ({'optimizer': 'adafactor', 'mu_dtype': 'bfloat16'},
            r"mu_dtype='bfloat16' applies to optimizer='adamw' only"),
           ({'cpu_memory_scheduler': 'yes'},
            r"cpu_memory_scheduler='yes'; expected a bool"),
           ({'default_compiler_options': 1},
            r'default_compiler_options=1; expected a bool'),
           ({'compiler_options': ['a']}, r'compiler_options=.*expected a dict'),
           ({'compiler_options': {1: True}}, r'compiler_options=')]
    for kwargs, pattern in bad:
      with self.assertRaisesRegex(ValueError, pattern, msg=str(kwargs)):
        trainer_lib.TrainConfig(**kwargs)

  def test_cpu_memory_scheduler_flag(self):
    on, off = trainer_lib.TrainConfig(), trainer_lib.TrainConfig(
        cpu_memory_scheduler=False)
    flag = trainer_lib.CPU_SCHEDULER_FLAG
    self.assertEqual(trainer_lib.xla_flags_for(on, '--a=1'),
                     f'--a=1 {flag}=false')
    self.assertEqual(trainer_lib.xla_flags_for(off, '--a=1'), '--a=1')
    # A value already in the environment wins.
    self.assertEqual(trainer_lib.xla_flags_for(on, f'{flag}=true'),
                     f'{flag}=true')
    jax.devices()  # The backend is up: too late to change XLA_FLAGS.
    with mock.patch.dict(os.environ, {'XLA_FLAGS': '--a=1'}):
      self.assertFalse(trainer_lib.set_process_xla_flags(on))
      self.assertEqual(os.environ['XLA_FLAGS'], '--a=1')
      self.assertTrue(trainer_lib.set_process_xla_flags(off))
      with mock.patch.object(trainer_lib.xla_bridge,
                             'backends_are_initialized', lambda: False):
        self.assertTrue(trainer_lib.set_process_xla_flags(on))
      self.assertEqual(os.environ['XLA_FLAGS'], f'--a=1 {flag}=false')

  def test_release_free_host_memory(self):
    # glibc's malloc_trim on Linux; a no-op that says so elsewhere.
    self.assertEqual(trainer_lib.release_free_host_memory(),
                     sys.platform.startswith('linux'))
    with mock.patch.object(trainer_lib.ctypes.util, 'find_library',
                           lambda name: None):
      self.assertFalse(trainer_lib.release_free_host_memory())

  def test_adafactor_state_is_factored(self):
    params = {'w': jnp.zeros((256, 384)), 'b': jnp.zeros((384,))}
    adam = trainer_lib.make_optimizer(trainer_lib.TrainConfig())
    ada = trainer_lib.make_optimizer(
        trainer_lib.TrainConfig(optimizer='adafactor'))
    size = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
    self.assertGreaterEqual(size(adam.init(params)), 2 * size(params))
    # Row and column statistics of w, a full second moment of b.
    self.assertLess(size(ada.init(params)), 256 + 384 + 384 + 10)

  def test_adafactor_decays_weights_like_adamw(self):
    params = {'w': jnp.ones((4, 4)), 'b': jnp.ones((4,))}
    grads = jax.tree.map(jnp.zeros_like, params)
    tc = trainer_lib.TrainConfig(optimizer='adafactor', learning_rate=0.1,
                                 weight_decay=0.5, warmup_steps=0,
                                 schedule='constant', clip_norm=0.0)
    tx = trainer_lib.make_optimizer(tc)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Zero gradients: only the decoupled decay -lr * wd * w, on matrices.
    np.testing.assert_allclose(updates['w'], -0.05, rtol=1e-6)
    np.testing.assert_array_equal(updates['b'], 0.0)

  def test_adamw_first_moment_dtype(self):
    tx = trainer_lib.make_optimizer(
        trainer_lib.TrainConfig(mu_dtype='bfloat16'))
    state = tx.init({'w': jnp.zeros((3, 3))})
    adam = [s for s in jax.tree.leaves(
        state, is_leaf=lambda x: hasattr(x, 'mu')) if hasattr(s, 'mu')]
    self.assertLen(adam, 1)
    self.assertEqual(adam[0].mu['w'].dtype, jnp.bfloat16)
    self.assertEqual(adam[0].nu['w'].dtype, jnp.float32)

  def test_no_decay_on_vectors(self):
    mask = trainer_lib._decay_mask({'k': np.zeros((2, 2)), 'b': np.zeros(2)})
    self.assertEqual(mask, {'k': True, 'b': False})


if __name__ == '__main__':
  absltest.main()
