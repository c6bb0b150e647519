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
"""Exact resume, preemption and half-written checkpoints.

`python -m richhf_jax.train` runs as a subprocess on tiny synthetic data (with
dropout on, so the RNG matters): a run is stopped with SIGTERM, restarted,
killed with SIGKILL, and restarted again. The steps between the last complete
checkpoint and the kill are logged twice, once by the killed run (which went
on from its own restart) and once by the run that resumed from that
checkpoint: the two must log the same losses.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from richhf_jax import checkpoints
from richhf_jax.data import join
from richhf_jax.data import synthetic

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEPS = 30
_CKPT_EVERY = 5


def _env() -> dict[str, str]:
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_COMPILATION_CACHE_DIR'] = os.environ.get(
      'RICHHF_JAX_TEST_CACHE', os.path.join(_ROOT, '.cache', 'jax'))
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  return env


def _read_history(model_dir: str) -> list[dict]:
  """The per-step records; a line cut by SIGKILL is skipped."""
  out = []
  with open(os.path.join(model_dir, 'train', 'metrics.jsonl')) as f:
    for line in f:
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue
      if 'loss/total' in rec:
        out.append(rec)
  return out


class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    data = os.path.join(cls.tmp, 'data')
    synthetic.generate(data, num_train=16, num_dev=4, num_test=2, seed=5,
                       image_sizes=(96,))
    cls.joined = os.path.join(cls.tmp, 'joined')
    join.run_join(os.path.join(data, 'richhf18k'),
                  os.path.join(data, 'pickapic', '*.parquet'), cls.joined,
                  progress=False)
    cls.vocab = os.path.join(data, 'vocab', 'spm.model')
    cls.run_dir = os.path.join(cls.tmp, 'run')
    # 1. SIGTERM once step 3 is logged: a checkpoint at the next boundary.
    cls.term = cls._run_until(cls.run_dir, 3, signal.SIGTERM)
    # 2. Restart; SIGKILL once step 13 is logged (saves at 5 and 10 done,
    #    maybe one in flight).
    cls.kill = cls._run_until(cls.run_dir, 13, signal.SIGKILL)
    # 3. Restart and finish.
    cls.last = cls._run_until(cls.run_dir, None, None)

  @classmethod
  def _start(cls, model_dir):
    t5 = "{'vocab_size': 512, 'dropout_rate': 0.1}"
    cmd = [sys.executable, '-m', 'richhf_jax.train',
           '--gin_file=gin/runs/finetune_richhf.gin',
           '--gin_file=gin/local_tiny.gin',
           f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{cls.joined}'",
           f"--gin.VOCAB_PATH='{cls.vocab}'", f'--gin.TRAIN_STEPS={_STEPS}',
           '--gin.BATCH_SIZE=4', '--gin.INPUT_LENGTH=24',
           '--gin.TARGET_LENGTH=32',
           '--gin.richhf_jax.TrainConfig.log_every=1',
           '--gin.EVAL_EVERY=0',  # No validation pipeline: not under test.
           f'--gin.richhf_jax.TrainConfig.checkpoint_every={_CKPT_EVERY}',
           f'--gin.richhf_jax.rahf_config.t5_overrides={t5}']
    return subprocess.Popen(cmd, cwd=_ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

  @classmethod
  def _run_until(cls, model_dir, step, sig):
    """Runs; sends `sig` once `step` is logged. Returns (output, status)."""
    proc = cls._start(model_dir)
    lines = []
    for line in proc.stdout:
      lines.append(line)
      if sig is not None and line.startswith(f'step {step}/'):
        proc.send_signal(sig)
        break
    rest = proc.communicate(timeout=600)[0]
    return ''.join(lines) + rest, proc.returncode

  def test_the_last_run_finished_every_step(self):
    out, status = self.last
    self.assertEqual(status, 0, out[-3000:])
    steps = {r['step'] for r in _read_history(self.run_dir)}
    self.assertEqual(steps, set(range(1, _STEPS + 1)))

  def test_sigterm_saved_a_checkpoint_and_exited_143(self):
    out, status = self.term
    self.assertEqual(status, 143, out[-3000:])
    saved = [l for l in out.splitlines()
             if l.startswith('stop requested: saving a checkpoint at step')]
    self.assertLen(saved, 1, out[-3000:])
    step = int(saved[0].rsplit(' ', 1)[1])
    self.assertGreaterEqual(step, 3)
    # The resumed run started from exactly that step.
    self.assertIn(f'resumed from {self.run_dir}/checkpoints step {step}',
                  self.kill[0])

  def test_sigkill_then_restart_resumed_from_a_complete_checkpoint(self):
    self.assertEqual(self.kill[1], -signal.SIGKILL, self.kill[0][-3000:])
    out, status = self.last
    self.assertEqual(status, 0, out[-3000:])
    resumed = [l for l in out.splitlines() if l.startswith('resumed from')]
    self.assertLen(resumed, 1, out[-3000:])
    step = int(resumed[0].rsplit(' ', 1)[1])
    # A complete checkpoint from before the kill: 10, or 5 when the async
    # write of 10 had not finished by the time step 13 was logged.
    self.assertBetween(step, 3, 13)

  def test_steps_logged_twice_have_the_same_losses(self):
    by_step = {}
    for r in _read_history(self.run_dir):
      by_step.setdefault(r['step'], []).append(r)
    # The steps after the checkpoint the last run resumed from (10, or 5),
    # up to the kill at 13 (whose own record may be cut): at least 11, 12.
    repeated = sorted(s for s, recs in by_step.items() if len(recs) > 1)
    self.assertContainsSubset({11, 12}, repeated)
    for step in repeated:
      first, second = by_step[step][:2]
      for key in ('loss/total', 'loss/text', 'loss/implausibility_heatmap',
                  'grad_norm'):
        self.assertEqual(first[key], second[key], (step, key))
    # The losses do change from step to step (the comparison has teeth).
    self.assertGreater(
        np.ptp([recs[0]['loss/total'] for recs in by_step.values()]), 1e-3)


class HalfWrittenCheckpointTest(absltest.TestCase):

  def test_restore_ignores_a_partial_write(self):
    tmp = tempfile.mkdtemp()
    state = {'w': np.arange(6, dtype=np.float32).reshape(2, 3)}
    ckpt = checkpoints.Checkpointer(tmp, max_to_keep=5, async_save=False)
    ckpt.save(1, state, {'step': 1})
    ckpt.save(2, {'w': state['w'] + 1}, {'step': 2})
    ckpt.close()
    # A write killed half way: orbax writes `<step>.orbax-checkpoint-tmp`
    # and renames it only when complete. Make step 2 look like that.
    d = ckpt.directory
    partial = os.path.join(d, '2.orbax-checkpoint-tmp')
    os.rename(os.path.join(d, '2'), partial)
    for root, _, files in os.walk(partial):
      for name in files:
        with open(os.path.join(root, name), 'r+b') as f:
          f.truncate(max(os.path.getsize(f.name) // 2, 0))
    reopened = checkpoints.Checkpointer(tmp, async_save=False)
    self.assertEqual(reopened.latest_step(), 1)
    target = checkpoints.abstract_like(
        state, {'w': checkpoints.jax.sharding.SingleDeviceSharding(
            checkpoints.jax.devices()[0])})
    restored, meta = reopened.restore(target)
    np.testing.assert_array_equal(restored['w'], state['w'])
    self.assertEqual(meta['step'], 1)
    # The run goes on: step 2 is written again over the leftover.
    reopened.save(2, {'w': state['w'] + 2}, {'step': 2})
    self.assertEqual(reopened.manager.all_steps(), [1, 2])
    restored, _ = reopened.restore(target)
    np.testing.assert_array_equal(restored['w'], state['w'] + 2)
    reopened.close()
    self.assertFalse(os.path.exists(partial))
    shutil.rmtree(tmp)


if __name__ == '__main__':
  absltest.main()
